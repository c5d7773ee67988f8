#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { NotifyClient } from './client.js';
import { EX_CONFIG } from './core/config.js';
import { toErrorData } from './core/errors.js';
import { loadConfigOrExit, runMaster } from './supervisor/master.js';

const USAGE = `notifyd — tiered HTTP notification delivery on RabbitMQ

  notifyd start [--config FILE]                 run the daemon (master + workers)
  notifyd publish --url URL --body JSON [--id ID] [--config FILE]
                                                publish one notification (waits for the broker's confirm)
  notifyd ctl status|pause N|resume N|reload|redrive [--limit N] [--force]
              [--admin URL] [--token TOKEN]     talk to a running daemon's admin API

Configuration: config/default.json, --config FILE / NOTIFY_CONFIG, NOTIFY_* variables (see README).`;

type Values = Record<string, string | boolean | undefined>;

function str(v: Values, k: string): string | undefined {
  const x = v[k];
  return typeof x === 'string' ? x : undefined;
}

async function publish(values: Values): Promise<number> {
  const config = loadConfigOrExit(str(values, 'config') ?? null);
  const url = str(values, 'url');
  const bodyText = str(values, 'body');
  if (!url || bodyText === undefined) {
    process.stderr.write('notifyd publish: --url and --body are required\n');
    return 64;
  }
  let body: unknown = bodyText;
  try {
    body = JSON.parse(bodyText);
  } catch {
    /* not JSON: sent as the raw string */
  }
  const client = new NotifyClient({ amqpUrl: config.amqpUrl, prefix: config.prefix, initialDelayMs: config.scheduleMs[0] ?? 0, limits: config.limits });
  try {
    const r = await client.publish({ url, body, ...(str(values, 'id') ? { id: str(values, 'id') } : {}) });
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`notifyd publish: ${JSON.stringify({ error: toErrorData(err) })}\n`);
    return 1;
  } finally {
    await client.close();
  }
}

function table(rows: (string | number)[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => String(c).padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

interface StatusShape {
  prefix: string;
  tiers: { index: number; delayMs: number; state: string; pid: number | null; restarts: number; inflight: number; brokerNode?: string | null }[];
  ingress: { pid: number | null; state: string; restarts: number; port: number | null; brokerNode?: string | null };
  broker: { connected: boolean; url: string; node?: string | null };
}

async function ctl(args: string[], values: Values): Promise<number> {
  const [cmd, arg] = args;
  let base = str(values, 'admin');
  let token = str(values, 'token') ?? process.env.NOTIFY_ADMIN_TOKEN;
  if (!base) {
    const config = loadConfigOrExit(str(values, 'config') ?? null);
    const host = config.admin.host === '0.0.0.0' ? '127.0.0.1' : config.admin.host.includes(':') ? `[${config.admin.host}]` : config.admin.host;
    base = `http://${host}:${config.admin.port}`;
    token ??= config.admin.token ?? undefined;
  }
  const call = async (method: string, path: string): Promise<{ status: number; body: unknown }> => {
    const res = await fetch(new URL(path, base), { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* keep text */
    }
    return { status: res.status, body };
  };
  let r: { status: number; body: unknown };
  switch (cmd) {
    case 'status': {
      r = await call('GET', '/admin/status');
      if (r.status === 200 && !values.json) {
        const s = r.body as StatusShape;
        const rows: (string | number)[][] = [['TIER', 'DELAY', 'STATE', 'PID', 'RESTARTS', 'INFLIGHT', 'BROKER NODE']];
        for (const t of s.tiers) rows.push([t.index, `${t.delayMs}ms`, t.state, t.pid ?? '-', t.restarts, t.inflight, t.brokerNode ?? '-']);
        rows.push(['ingress', `:${s.ingress.port ?? '-'}`, s.ingress.state, s.ingress.pid ?? '-', s.ingress.restarts, '-', s.ingress.brokerNode ?? '-']);
        const master = s.broker.connected ? `connected, master on ${s.broker.node ?? '?'}` : 'DISCONNECTED';
        process.stdout.write(`prefix ${s.prefix}  broker ${master} (${s.broker.url})\n${table(rows)}\n`);
        return 0;
      }
      break;
    }
    case 'pause':
    case 'resume':
      if (!arg || !/^\d+$/.test(arg)) {
        process.stderr.write(`notifyd ctl ${cmd} N: tier index required\n`);
        return 64;
      }
      r = await call('POST', `/admin/tiers/${arg}/${cmd}`);
      break;
    case 'reload':
      r = await call('POST', '/admin/reload');
      break;
    case 'redrive': {
      const q = new URLSearchParams({ limit: str(values, 'limit') ?? '100' });
      if (values.force) q.set('force', '1');
      r = await call('POST', `/admin/dead/redrive?${q}`);
      break;
    }
    default:
      process.stderr.write(`${USAGE}\n`);
      return 64;
  }
  process.stdout.write(`${JSON.stringify(r.body, null, 2)}\n`);
  return r.status < 400 ? 0 : 1;
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      url: { type: 'string' },
      body: { type: 'string' },
      id: { type: 'string' },
      admin: { type: 'string' },
      token: { type: 'string' },
      limit: { type: 'string' },
      force: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    process.stdout.write(`${USAGE}\n`);
    return values.help ? 0 : 64;
  }
  switch (command) {
    case 'start':
      await runMaster(str(values, 'config') ?? null);
      return -1;
    case 'publish':
      return publish(values);
    case 'ctl':
      return ctl(rest, values);
    default:
      process.stderr.write(`unknown command ${command}\n${USAGE}\n`);
      return 64;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    const data = toErrorData(err);
    process.stderr.write(`notifyd: ${data.message}\n`);
    process.exit(data.code === 'CONFIG_INVALID' ? EX_CONFIG : 1);
  },
);

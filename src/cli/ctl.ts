/** `notifyd ctl …`: a running daemon's admin API from a terminal. */
import { adminClient, printAnswer } from './admin-client.js';
import { str, table, usage, type Values } from './args.js';
import { merchantsCommand } from './ctl-merchants.js';
import { HISTORY_USAGE, historyCommand } from './ctl-history.js';

interface OriginsShape {
  origins: { tier: number; origin: string; state: string; limit: number; inflight: number; waiting: number; deferred: number; skipped: number; lastError: string | null; lastErrorAt: number | null }[];
  counts: { failing: number; limited: number };
}

interface StatusShape {
  prefix: string;
  tiers: { index: number; delayMs: number; state: string; pid: number | null; restarts: number; inflight: number; brokerNode?: string | null }[];
  ingress: { pid: number | null; state: string; restarts: number; port: number | null; brokerNode?: string | null };
  broker: { connected: boolean; url: string; node?: string | null };
  recorder?: { pid: number | null; state: string; restarts: number; brokerNode?: string | null } | null;
}

export const CTL_USAGE = `notifyd ctl status|origins|pause N|resume N|reload|redrive [--limit N] [--force]
notifyd ctl merchants list|add|show|rotate|enable|disable …   (notifyd ctl merchants for its usage)
${HISTORY_USAGE}
            [--admin URL] [--token TOKEN] [--json]`;

export async function ctl(args: string[], values: Values): Promise<number> {
  const [cmd, arg] = args;
  const call = adminClient(values);
  switch (cmd) {
    case 'status': {
      const r = await call('GET', '/admin/status');
      if (r.status !== 200 || values.json) return printAnswer(r);
      const s = r.body as StatusShape;
      const rows: (string | number)[][] = [['TIER', 'DELAY', 'STATE', 'PID', 'RESTARTS', 'INFLIGHT', 'BROKER NODE']];
      for (const t of s.tiers) rows.push([t.index, `${t.delayMs}ms`, t.state, t.pid ?? '-', t.restarts, t.inflight, t.brokerNode ?? '-']);
      rows.push(['ingress', `:${s.ingress.port ?? '-'}`, s.ingress.state, s.ingress.pid ?? '-', s.ingress.restarts, '-', s.ingress.brokerNode ?? '-']);
      if (s.recorder) rows.push(['recorder', '-', s.recorder.state, s.recorder.pid ?? '-', s.recorder.restarts, '-', s.recorder.brokerNode ?? '-']);
      const master = s.broker.connected ? `connected, master on ${s.broker.node ?? '?'}` : 'DISCONNECTED';
      process.stdout.write(`prefix ${s.prefix}  broker ${master} (${s.broker.url})\n${table(rows)}\n`);
      return 0;
    }
    case 'pause':
    case 'resume':
      if (!arg || !/^\d+$/.test(arg)) return usage(`notifyd ctl ${cmd} N: tier index required`);
      return printAnswer(await call('POST', `/admin/tiers/${arg}/${cmd}`));
    case 'reload':
      return printAnswer(await call('POST', '/admin/reload'));
    case 'origins': {
      const r = await call('GET', `/admin/origins?${new URLSearchParams({ limit: str(values, 'limit') ?? '20' })}`);
      if (r.status !== 200 || values.json) return printAnswer(r);
      const o = r.body as OriginsShape;
      const ago = (at: number | null): string => (at === null ? '-' : `${Math.round((Date.now() - at) / 1000)}s ago`);
      const rows: (string | number)[][] = [['TIER', 'ORIGIN', 'STATE', 'LIMIT', 'INFLIGHT', 'WAITING', 'DEFERRED', 'SKIPPED', 'LAST ERROR']];
      for (const x of o.origins) rows.push([x.tier, x.origin, x.state, x.limit, x.inflight, x.waiting, x.deferred, x.skipped, x.lastError ? `${x.lastError} (${ago(x.lastErrorAt)})` : '-']);
      process.stdout.write(`origins failing ${o.counts.failing}, limited ${o.counts.limited}\n${o.origins.length ? table(rows) : '(none limited, failing or with errors)'}\n`);
      return 0;
    }
    case 'redrive': {
      const q = new URLSearchParams({ limit: str(values, 'limit') ?? '100' });
      if (values.force) q.set('force', '1');
      return printAnswer(await call('POST', `/admin/dead/redrive?${q}`));
    }
    case 'merchants':
      return merchantsCommand(args.slice(1), values, call);
    case 'show':
    case 'find':
    case 'resend':
    case 'recover':
      return historyCommand(cmd, arg, values, call);
    default:
      return usage(CTL_USAGE);
  }
}

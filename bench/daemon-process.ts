import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { buildTopology, deleteTopology } from '../src/broker/topology.js';
import { parseSchedule } from '../src/core/schedule.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The compiled CLI, found from `bench/` (tsx) and `dist/bench/` (built) alike. */
export const CLI_PATH = here.endsWith('/dist/bench') ? resolve(here, '..', 'src', 'cli.js') : resolve(here, '..', 'dist', 'src', 'cli.js');

export const AMQP_URL = process.env.NOTIFY_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** A prefix no other run uses, so tests and benches never share queues. */
export function uniquePrefix(label: string): string {
  return `t-${label}-${randomBytes(4).toString('hex')}`;
}

export interface DaemonOptions {
  readonly prefix: string;
  readonly schedule: string;
  /** Extra NOTIFY_* variables. */
  readonly env?: Record<string, string>;
  /** Echo the daemon's output (debugging). */
  readonly echo?: boolean;
  /** Run in its own process group, as systemd does, so `signalGroup` reaches every process of it. */
  readonly detached?: boolean;
  /** Another build's `dist/src/cli.js` (the bench's baselines); this one's by default. */
  readonly cliPath?: string;
}

export interface LogLine {
  readonly msg?: string;
  readonly [k: string]: unknown;
}

/**
 * The real daemon (`node dist/src/cli.js start`) as a child process on random
 * ports, with its JSON log lines parsed.
 */
export class DaemonProcess {
  readonly proc: ChildProcess;
  readonly lines: LogLine[] = [];
  readonly stderr: string[] = [];
  adminPort = 0;
  ingressPort = 0;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  /** Set by `keepOnly`: only lines holding it are parsed and kept. */
  private needle: string | null = null;
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(readonly opts: DaemonOptions) {
    this.proc = spawn(process.execPath, [opts.cliPath ?? CLI_PATH, 'start'], {
      env: {
        PATH: process.env.PATH,
        NOTIFY_AMQP_URL: AMQP_URL,
        NOTIFY_PREFIX: opts.prefix,
        NOTIFY_SCHEDULE: opts.schedule,
        NOTIFY_INGRESS_PORT: '0',
        NOTIFY_ADMIN_PORT: '0',
        NOTIFY_INGRESS_HOST: '127.0.0.1',
        NOTIFY_ALLOW_CIDRS: '127.0.0.0/8',
        NOTIFY_LOG_LEVEL: 'info',
        ...opts.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: opts.detached ?? false,
    });
    let buf = '';
    this.proc.stdout!.on('data', (c: Buffer) => {
      buf += c.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (opts.echo) process.stdout.write(`[daemon] ${line}\n`);
        if (this.needle !== null && !line.includes(this.needle)) continue;
        try {
          const parsed = JSON.parse(line) as LogLine;
          this.lines.push(parsed);
          if (parsed.msg === 'listening') {
            this.adminPort = Number(parsed.admin);
            this.ingressPort = Number(parsed.ingress);
          }
        } catch {
          /* not JSON: ignore */
        }
      }
    });
    this.proc.stderr!.on('data', (c: Buffer) => {
      this.stderr.push(c.toString());
      if (opts.echo) process.stderr.write(`[daemon:err] ${c}`);
    });
    this.exited = new Promise((r) =>
      this.proc.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        r(this.exitInfo);
      }),
    );
  }

  get adminUrl(): string {
    return `http://127.0.0.1:${this.adminPort}`;
  }

  get ingressUrl(): string {
    return `http://127.0.0.1:${this.ingressPort}`;
  }

  get hasExited(): boolean {
    return this.exitInfo !== null;
  }

  /** Waits for the `listening` line and `/readyz` 200. */
  async ready(timeoutMs = 20_000): Promise<this> {
    await waitFor(async () => {
      if (this.exitInfo) throw new Error(`daemon exited early: ${JSON.stringify(this.exitInfo)} ${this.stderr.join('')}`);
      if (!this.adminPort) return false;
      return (await this.readyz()) === 200;
    }, timeoutMs, 'daemon ready');
    return this;
  }

  /**
   * `/readyz`'s status, or 0 when the request itself fails (not listening yet,
   * or a poll landed on a keep-alive socket the server was closing): for
   * polls, that means "ask again", not "not ready".
   */
  async readyz(): Promise<number> {
    try {
      return (await fetch(`${this.adminUrl}/readyz`)).status;
    } catch {
      return 0;
    }
  }

  /** GET/POST on the admin port, parsed JSON. */
  async admin<T = unknown>(method: 'GET' | 'POST', path: string): Promise<{ status: number; body: T }> {
    const r = await fetchFresh(`${this.adminUrl}${path}`, { method });
    const text = await r.text();
    return { status: r.status, body: (text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : text) as T };
  }

  /** POST a notification (or batch) to the ingress. */
  async post(body: unknown, path = '/v1/notifications'): Promise<{ status: number; body: any }> {
    const r = await fetchFresh(`${this.ingressUrl}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
    const text = await r.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* keep text */
    }
    return { status: r.status, body: parsed };
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.exitInfo) this.proc.kill(sig);
  }

  /** Signals the whole process group (master and workers), as `systemctl kill` does; needs `detached`. */
  signalGroup(sig: NodeJS.Signals): void {
    if (!this.opts.detached) throw new Error('signalGroup needs a detached daemon');
    if (!this.exitInfo) process.kill(-this.proc.pid!, sig);
  }

  waitExit(timeoutMs = 40_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return Promise.race([
      this.exited,
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`daemon did not exit within ${timeoutMs}ms`)), timeoutMs).unref()),
    ]);
  }

  /** SIGTERM and wait; SIGKILL the whole tree if it hangs. Safe to call twice. */
  async stop(timeoutMs = 40_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.exitInfo) return this.exitInfo;
    this.signal('SIGTERM');
    try {
      return await this.waitExit(timeoutMs);
    } catch (err) {
      this.proc.kill('SIGKILL');
      throw err;
    }
  }

  /**
   * From now on, parse and keep only the log lines holding `needle`. For a
   * bench: parsing every per-attempt line would put the bench's own CPU into
   * what it measures, and dropping them all would lose a worker's line that
   * comes after it reports running (its logger flushes on a timer). Call it
   * after `ready()`: the `listening` line that gives the ports is not kept.
   */
  keepOnly(needle: string): void {
    // An empty needle would keep every line, and one with a newline none.
    if (needle === '' || needle.includes('\n')) throw new Error(`keepOnly: needle must be non-empty text on one line, not ${JSON.stringify(needle)}`);
    this.needle = needle;
  }

  /**
   * What the daemon said went wrong: its error and fatal lines and workers
   * that exited (of the lines kept: see `keepOnly`), and its stderr. For a
   * failing test's message, so a failure that does not reproduce still says
   * what the daemon saw.
   */
  troubles(): string {
    const said = this.lines.filter((l) => l.level === 'error' || l.level === 'fatal' || /exited/.test(String(l.msg ?? '')));
    return [...said.map((l) => JSON.stringify(l)), this.stderr.join('')].join('\n');
  }

  /** Log lines with `msg === m`. */
  find(m: string): LogLine[] {
    return this.lines.filter((l) => l.msg === m);
  }
}

/**
 * `fetch`, asked again once when it went out on a keep-alive socket the server
 * had already closed as idle ("other side closed" before any answer). That
 * happens when the caller's event loop was blocked (e.g. by a synchronous
 * `rabbitmqctl`) past the server's keep-alive timeout; the server never read
 * the request, so sending it again duplicates nothing.
 */
async function fetchFresh(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    if (cause?.code !== 'UND_ERR_SOCKET' || !/other side closed/.test(cause.message ?? '')) throw err;
    return fetch(url, init);
  }
}

/** Polls `fn` until it returns true. */
export async function waitFor(fn: () => boolean | Promise<boolean>, timeoutMs: number, what = 'condition', everyMs = 50): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Deletes every queue and exchange of a prefix (after a test or bench run). */
export async function deletePrefix(prefix: string, schedule: string, queueType: 'quorum' | 'classic' = 'quorum', amqpUrl = AMQP_URL): Promise<void> {
  const conn = await amqp.connect(amqpUrl);
  try {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    await deleteTopology(ch, buildTopology(prefix, parseSchedule(schedule), queueType, { history: true }));
    await ch.close().catch(() => undefined);
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** Parked notifications of a prefix, read without consuming them (they go back unacked). */
export async function parkedMessages(prefix: string): Promise<{ id: string; headers: Record<string, unknown> }[]> {
  const conn = await amqp.connect(AMQP_URL);
  try {
    const ch = await conn.createChannel();
    const out: { id: string; headers: Record<string, unknown> }[] = [];
    for (;;) {
      const m = await ch.get(`${prefix}.dead`, { noAck: false });
      if (!m) break;
      out.push({ id: String(m.properties.messageId), headers: m.properties.headers ?? {} });
    }
    await ch.close(); // unacked: back to the queue
    // A quorum queue takes them back a moment after the close: wait, so a scan right after this sees them ready.
    const check = await conn.createChannel();
    for (let i = 0; i < 100 && (await check.checkQueue(`${prefix}.dead`)).messageCount < out.length; i++) await new Promise((r) => setTimeout(r, 20));
    await check.close();
    return out;
  } finally {
    await conn.close();
  }
}

/** Messages currently in a queue (ready + unacked), or -1 if it does not exist. */
export async function queueDepths(prefix: string, schedule: string): Promise<Record<string, number>> {
  const conn = await amqp.connect(AMQP_URL);
  const out: Record<string, number> = {};
  try {
    for (const q of buildTopology(prefix, parseSchedule(schedule), 'quorum').queues) {
      const ch = await conn.createChannel();
      ch.on('error', () => undefined);
      try {
        out[q.name] = (await ch.checkQueue(q.name)).messageCount;
        await ch.close();
      } catch {
        out[q.name] = -1;
      }
    }
  } finally {
    await conn.close().catch(() => undefined);
  }
  return out;
}

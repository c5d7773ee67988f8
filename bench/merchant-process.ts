/**
 * The merchant stub in a process of its own (so its HTTP work does not share
 * an event loop with the bench or the daemon). Parent side: `MerchantProcess`.
 * Child side: this file run with `--child <json>`.
 *
 * IPC: child → `ready {base}`; parent → `watch {target}` and the child answers
 * `reached {at, total}` (ms epoch) as soon as its request count reaches
 * `target`; `count` → `count {total}`; `gaps {prefix}` → `gaps {gapsMs,
 * arrivals, keys, paths, single}`: for each recorded path starting with
 * `prefix`, the time between its first and second request (needs `record:
 * true`); `latencies {group}` → `latencies {count, p50, p99, max}`: for the
 * requests to `/lat/<group>/<sent ms epoch>/…`, arrival minus sent; `clear`;
 * `quit`.
 *
 * With `blackhole`, the child also listens on a second port that accepts TCP
 * connections and never reads from them (a merchant whose server is wedged).
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { MerchantStub } from './merchant-stub.js';
import { Child, childArgs, toParent } from './bench-util.js';

export interface MerchantProcessOptions {
  readonly failureRatio?: number;
  readonly latencyMs?: number;
  /** Keep every request (needed for `gaps`). */
  readonly record?: boolean;
  /** Also open a port that accepts connections and never reads (`blackholePort`). */
  readonly blackhole?: boolean;
  /** Listen on 0.0.0.0 rather than 127.0.0.1, to be reached on any loopback address (127.0.0.0/8). */
  readonly anyAddress?: boolean;
}

export class MerchantProcess {
  private constructor(
    private readonly child: Child,
    readonly base: string,
    /** The port that accepts and never reads, with `blackhole`. */
    readonly blackholePort: number | null,
  ) {}

  static async start(opts: MerchantProcessOptions = {}): Promise<MerchantProcess> {
    const child = Child.fork(fileURLToPath(import.meta.url), 'merchant', opts);
    const { base, blackholePort } = await child.waitFor<{ base: string; blackholePort: number | null }>('ready', 15_000);
    return new MerchantProcess(child, base, blackholePort);
  }

  /** Arrival minus sending time of the requests to `/lat/<group>/<sent>/…` (ms). */
  async latencies(group: string): Promise<{ count: number; p50: number; p99: number; max: number }> {
    return this.child.request({ type: 'latencies', group }, 'latencies', 30_000);
  }

  get pid(): number | undefined {
    return this.child.proc.pid;
  }

  async count(): Promise<number> {
    return (await this.child.request<{ total: number }>({ type: 'count' }, 'count')).total;
  }

  /** Resolves with the merchant's clock when its request count reaches `target`. */
  async reached(target: number, timeoutMs: number): Promise<{ at: number; total: number }> {
    return this.child.request({ type: 'watch', target }, 'reached', timeoutMs);
  }

  /** Arms a watch now and returns its promise (so the clock can start after). */
  watch(target: number, timeoutMs: number): Promise<{ at: number; total: number }> {
    return this.reached(target, timeoutMs);
  }

  /** Per path under `prefix` requested at least twice: gap between the first two requests, first arrival, and the rest of the path. */
  async gaps(prefix: string): Promise<{ gapsMs: number[]; arrivals: number[]; keys: string[]; paths: number; single: number }> {
    return this.child.request({ type: 'gaps', prefix }, 'gaps', 60_000);
  }

  async clear(): Promise<void> {
    await this.child.request({ type: 'clear' }, 'cleared');
  }

  stop(): Promise<void> {
    return this.child.stop();
  }
}

async function childMain(opts: MerchantProcessOptions): Promise<void> {
  const stub = new MerchantStub({ failureRatio: opts.failureRatio ?? 0, latencyMs: opts.latencyMs ?? 0, record: opts.record ?? false });
  const base = await stub.start(0, opts.anyAddress ? '0.0.0.0' : '127.0.0.1');
  let blackholePort: number | null = null;
  const held: Socket[] = [];
  if (opts.blackhole) {
    // Accepted, never read: the request sits in the socket buffers until the client gives up.
    const hole = createNetServer({ pauseOnConnect: true }, (socket) => {
      held.push(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => hole.listen(0, '127.0.0.1', r));
    blackholePort = (hole.address() as AddressInfo).port;
  }
  const lat = new Map<string, number[]>();
  let watch: number | null = null;
  const check = (): void => {
    if (watch !== null && stub.total >= watch) {
      watch = null;
      toParent({ type: 'reached', at: Date.now(), total: stub.total });
    }
  };
  // The stub counts a request when its body has been read; look right after
  // each answer so the clock stops at the N-th request, not at a poll tick.
  const server = (stub as unknown as { server?: Server }).server;
  if (server && typeof server.on === 'function') {
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      res.once('finish', check);
      const parts = (req.url ?? '').split('/');
      if (parts[1] === 'lat') {
        const sent = Number(parts[3]);
        let a = lat.get(parts[2]!);
        if (!a) lat.set(parts[2]!, (a = []));
        if (Number.isFinite(sent)) a.push(Date.now() - sent);
      }
    });
  } else {
    setInterval(check, 1).unref();
  }
  process.on('message', (m: any) => {
    switch (m?.type) {
      case 'watch':
        watch = Number(m.target);
        check();
        return;
      case 'count':
        toParent({ type: 'count', total: stub.total });
        return;
      case 'gaps': {
        const byPath = new Map<string, number[]>();
        for (const r of stub.requests) {
          if (!r.path.startsWith(String(m.prefix))) continue;
          let a = byPath.get(r.path);
          if (!a) byPath.set(r.path, (a = []));
          a.push(r.at);
        }
        const gapsMs: number[] = [];
        const arrivals: number[] = [];
        const keys: string[] = [];
        let single = 0;
        for (const [path, a] of byPath) {
          if (a.length >= 2) {
            gapsMs.push(a[1]! - a[0]!);
            arrivals.push(a[0]!);
            keys.push(path.slice(String(m.prefix).length));
          } else single++;
        }
        toParent({ type: 'gaps', gapsMs, arrivals, keys, paths: byPath.size, single });
        return;
      }
      case 'latencies': {
        const a = [...(lat.get(String(m.group)) ?? [])].sort((x, y) => x - y);
        const pick = (p: number): number => (a.length ? a[Math.min(a.length - 1, Math.ceil((p / 100) * a.length) - 1)]! : NaN);
        toParent({ type: 'latencies', count: a.length, p50: pick(50), p99: pick(99), max: a.length ? a[a.length - 1]! : NaN });
        return;
      }
      case 'clear':
        stub.requests.length = 0;
        toParent({ type: 'cleared' });
        return;
      case 'quit':
        void stub.close().finally(() => process.exit(0));
        return;
    }
  });
  process.on('disconnect', () => void stub.close().finally(() => process.exit(0)));
  toParent({ type: 'ready', base, blackholePort });
}

const args = childArgs<MerchantProcessOptions>();
if (args) {
  childMain(args).catch((err: unknown) => {
    toParent({ type: 'error', message: String((err as Error)?.stack ?? err) });
    process.exit(1);
  });
}

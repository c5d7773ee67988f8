import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { closeServerNow } from '../src/core/http-util.js';

/** One request as the merchant saw it. */
export interface SeenRequest {
  readonly path: string;
  readonly method: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: Buffer;
  readonly at: number;
}

export interface MerchantOptions {
  /** Fraction (0..1) of requests to `/` that answer 500 (bench mode). */
  readonly failureRatio?: number;
  /** Added latency in ms for `/` (bench mode). */
  readonly latencyMs?: number;
  /** Keep every request (tests) or only count them (bench). */
  readonly record?: boolean;
}

/**
 * A scriptable merchant endpoint. The path says how to answer, so one stub
 * serves every test case at once:
 * - `/fail/<k>/<key>`: 500 for the first k requests to this path, then 200 `success`
 * - `/status/<code>/<key>`: always `<code>`
 * - `/body/<text>/<key>`: 200 with body `<text>` (e.g. `ok` when `success` is required)
 * - `/bodythen/<text>/<k>/<key>`: 200 `<text>` for the first k requests, then 200 `success`
 * - `/slow/<ms>/<k>/<key>`: the first k requests take `<ms>` before answering, then 200 at once
 * - `/redirect/<key>`: 302 to `/fail/0/<key>` (must not be followed)
 * - `/hang/<key>`: reads the request and never answers
 * - `/delay/<ms>/<key>`: 200 `success` after `<ms>`, every time
 * - `/mode/<key>/…`: as `setMode(key, …)` says: `ok` (200), `fail` (500) or `hang`
 * - anything else: 200 `success`, or per `failureRatio`/`latencyMs`
 *
 * Requests under way are counted per path, so tests can check how many
 * concurrent requests one merchant got at most (`maxConcurrent`).
 */
export class MerchantStub {
  private server: Server | null = null;
  readonly requests: SeenRequest[] = [];
  private readonly counts = new Map<string, number>();
  private readonly modes = new Map<string, 'ok' | 'fail' | 'hang'>();
  private readonly open = new Map<string, number>();
  private readonly peak = new Map<string, number>();
  total = 0;
  port = 0;

  constructor(private readonly opts: MerchantOptions = {}) {}

  async start(port = 0, host = '127.0.0.1'): Promise<string> {
    const server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => this.onRequest(req, res));
    server.maxHeadersCount = 200;
    this.server = server;
    await new Promise<void>((resolve) => server.listen(port, host, resolve));
    this.port = (server.address() as AddressInfo).port;
    return this.base;
  }

  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Requests seen for an exact path. */
  seen(path: string): SeenRequest[] {
    return this.requests.filter((r) => r.path === path);
  }

  count(path: string): number {
    return this.counts.get(path) ?? 0;
  }

  /** Requests to paths starting with `prefix`, all together. */
  countPrefix(prefix: string): number {
    let n = 0;
    for (const [p, c] of this.counts) if (p.startsWith(prefix)) n += c;
    return n;
  }

  /** How `/mode/<key>/…` answers from now on. */
  setMode(key: string, mode: 'ok' | 'fail' | 'hang'): void {
    this.modes.set(key, mode);
  }

  /** The most requests under way at once to paths under `/<kind>/<key>` (e.g. `/mode/bad`). */
  maxConcurrent(prefix: string): number {
    return this.peak.get(prefix) ?? 0;
  }

  /** Resets the concurrency peak of a prefix (to measure a phase). */
  resetPeak(prefix: string): void {
    this.peak.set(prefix, this.open.get(prefix) ?? 0);
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const group = (req.url ?? '/').split('/').slice(0, 3).join('/');
    const open = (this.open.get(group) ?? 0) + 1;
    this.open.set(group, open);
    if (open > (this.peak.get(group) ?? 0)) this.peak.set(group, open);
    res.on('close', () => this.open.set(group, (this.open.get(group) ?? 1) - 1));
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url ?? '/').split('?')[0]!;
      const n = (this.counts.get(path) ?? 0) + 1;
      this.counts.set(path, n);
      this.total++;
      if (this.opts.record !== false) {
        this.requests.push({ path, method: req.method ?? '', headers: req.headers, body: Buffer.concat(chunks), at: Date.now() });
      }
      this.answer(path, n, res);
    });
  }

  private answer(path: string, n: number, res: ServerResponse): void {
    const send = (status: number, body: string, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), ...headers });
      res.end(body);
    };
    const parts = path.split('/').filter(Boolean);
    switch (parts[0]) {
      case 'fail':
        return n <= Number(parts[1]) ? send(500, 'try later') : send(200, 'success');
      case 'status':
        return send(Number(parts[1]), `status ${parts[1]}`);
      case 'body':
        return send(200, decodeURIComponent(parts[1] ?? ''));
      case 'bodythen':
        return send(200, n <= Number(parts[2]) ? decodeURIComponent(parts[1] ?? '') : 'success');
      case 'slow':
      case 'slowfail': {
        // /slow/<ms>/<k>/…: the first k requests answered 200 after ms; /slowfail/…: 500 after ms. The rest 200 at once.
        if (n <= Number(parts[2])) {
          const fail = parts[0] === 'slowfail';
          setTimeout(() => (fail ? send(500, 'try later') : send(200, 'success')), Number(parts[1])).unref();
          return;
        }
        return send(200, 'success');
      }
      case 'redirect':
        return send(302, '', { location: `/fail/0/${parts[1] ?? ''}` });
      case 'hang':
        return;
      case 'delay':
        setTimeout(() => send(200, 'success'), Number(parts[1])).unref();
        return;
      case 'mode': {
        const mode = this.modes.get(parts[1] ?? '') ?? 'ok';
        if (mode === 'hang') return;
        return mode === 'fail' ? send(500, 'fail') : send(200, 'success');
      }
      default: {
        const fail = (this.opts.failureRatio ?? 0) > 0 && Math.random() < this.opts.failureRatio!;
        const latency = this.opts.latencyMs ?? 0;
        if (latency > 0) {
          setTimeout(() => (fail ? send(500, 'fail') : send(200, 'success')), latency).unref();
          return;
        }
        return fail ? send(500, 'fail') : send(200, 'success');
      }
    }
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    await closeServerNow(s);
  }
}

import { Agent } from 'undici';
import type { DeliveryConfig } from './config.js';
import type { AddressGuard } from './address-guard.js';
import type { AttemptResult } from './outcome.js';

/** One HTTP request to make. */
export interface OutgoingRequest {
  readonly url: string;
  readonly method: 'POST' | 'PUT';
  /** Sent as they are (the caller includes content-type and user-agent). */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** An attempt's result and its round-trip time. */
export type TimedResult = AttemptResult & { readonly durationMs: number };

/** Maps transport errors to short stable codes for logs and `notify-last-error`. */
function errorCode(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown; cause?: { code?: unknown } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'TIMEOUT';
  const code = typeof e?.code === 'string' ? e.code : typeof e?.cause?.code === 'string' ? e.cause.code : 'NETWORK';
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'CONNECT_TIMEOUT';
    case 'UND_ERR_HEADERS_TIMEOUT':
      return 'HEADERS_TIMEOUT';
    case 'UND_ERR_BODY_TIMEOUT':
      return 'BODY_TIMEOUT';
    case 'UND_ERR_ABORTED':
      return 'TIMEOUT';
    default:
      return code;
  }
}

/**
 * Makes the HTTP attempts of one process: keep-alive pools per origin,
 * connect/headers/whole-response deadlines, a cap on the body read, no
 * redirects (undici's `request` follows none), and the SSRF guard applied at
 * connect time through the socket's `lookup`.
 */
export class HttpDeliverer {
  private readonly agent: Agent;
  private readonly cfg: DeliveryConfig;
  private readonly verdicts = new Map<string, string | null>();

  constructor(
    cfg: DeliveryConfig,
    private readonly guard: AddressGuard | null,
  ) {
    this.cfg = cfg;
    this.agent = this.makeAgent(cfg);
  }

  private makeAgent(cfg: DeliveryConfig): Agent {
    return new Agent({
      connections: cfg.connectionsPerOrigin,
      keepAliveTimeout: 10_000,
      headersTimeout: cfg.headersTimeoutMs,
      bodyTimeout: cfg.timeoutMs,
      connect: this.guard ? { timeout: cfg.connectTimeoutMs, lookup: this.guard.lookup } : { timeout: cfg.connectTimeoutMs },
    });
  }

  /**
   * The guard's verdict on a URL host, cached: hosts repeat (one merchant
   * endpoint serves many notifications) and the literal-IP check is not free.
   * Only literal addresses are decided here; names are checked at connect time.
   */
  private hostVerdict(hostname: string): string | null {
    let v = this.verdicts.get(hostname);
    if (v === undefined) {
      try {
        this.guard!.assertHostAllowed(hostname);
        v = null;
      } catch (err) {
        v = (err as Error).message;
      }
      if (this.verdicts.size >= 4096) this.verdicts.clear();
      this.verdicts.set(hostname, v);
    }
    return v;
  }

  /**
   * Makes one attempt; never throws (failures come back as `kind: 'error'`).
   * `needBody: false` lets a 2xx answer be discarded unread (nothing will look
   * at it); otherwise up to `maxResponseBytes` is read.
   */
  async attempt(req: OutgoingRequest, needBody = true): Promise<TimedResult> {
    const started = performance.now();
    const done = (r: AttemptResult): TimedResult => ({ ...r, durationMs: performance.now() - started });
    let url: URL;
    try {
      url = new URL(req.url);
    } catch {
      return done({ kind: 'error', code: 'INVALID_URL', message: 'unparsable URL' });
    }
    if (this.guard) {
      const refused = this.hostVerdict(url.hostname);
      if (refused !== null) return done({ kind: 'error', code: 'DESTINATION_BLOCKED', message: refused });
    }
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), this.cfg.timeoutMs);
    try {
      const res = await this.agent.request({
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: req.method,
        headers: req.headers,
        body: req.body,
        signal: ac.signal,
      });
      if (!needBody && res.statusCode >= 200 && res.statusCode < 300) {
        await res.body.dump();
        return done({ kind: 'response', status: res.statusCode, body: '' });
      }
      const cap = this.cfg.maxResponseBytes;
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        const room = cap - size;
        if (room <= 0) break;
        const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
        chunks.push(part);
        size += part.length;
        if (size >= cap) break;
      }
      // Leaving the loop early destroys the stream: the socket is dropped rather
      // than reused, which is right for a merchant sending more than we read.
      return done({ kind: 'response', status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') });
    } catch (err) {
      const code = ac.signal.aborted ? 'TIMEOUT' : errorCode(err);
      const message = code === 'TIMEOUT' ? `no complete response within ${this.cfg.timeoutMs}ms` : String((err as Error)?.message ?? err);
      return done({ kind: 'error', code, message });
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes the pools; idempotent. */
  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }
}

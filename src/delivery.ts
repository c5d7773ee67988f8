import { Agent, request } from 'undici';
import type { DeliveryConfig } from './config.js';
import type { AddressGuard } from './address-guard.js';
import type { AttemptResult } from './outcome.js';

/** One HTTP request to make. */
export interface OutgoingRequest {
  readonly url: string;
  readonly method: 'POST' | 'PUT';
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

  constructor(
    cfg: DeliveryConfig,
    private readonly guard: AddressGuard | null,
    private readonly userAgent: string,
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

  /** Makes one attempt; never throws (failures come back as `kind: 'error'`). */
  async attempt(req: OutgoingRequest): Promise<TimedResult> {
    const started = performance.now();
    const done = (r: AttemptResult): TimedResult => ({ ...r, durationMs: performance.now() - started });
    let hostname: string;
    try {
      hostname = new URL(req.url).hostname;
    } catch {
      return done({ kind: 'error', code: 'INVALID_URL', message: 'unparsable URL' });
    }
    if (this.guard) {
      try {
        this.guard.assertHostAllowed(hostname);
      } catch (err) {
        return done({ kind: 'error', code: 'DESTINATION_BLOCKED', message: (err as Error).message });
      }
    }
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), this.cfg.timeoutMs);
    try {
      const res = await request(req.url, {
        dispatcher: this.agent,
        method: req.method,
        headers: { ...req.headers, 'user-agent': this.userAgent },
        body: req.body,
        signal: ac.signal,
      });
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

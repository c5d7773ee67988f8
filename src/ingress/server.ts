import { STATUS_CODES, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Config } from '../core/config.js';
import { ErrorCodes, NotifyError, toErrorData, type ErrorData } from '../core/errors.js';
import { foreignBrowserRequest } from '../core/browser-guard.js';
import { BearerTokens, allowHeaderOf, methodNotAllowed, readBody, statusForError } from '../core/http-util.js';
import type { Logger } from '../core/logger.js';
import { encodeNotification, mediaTypeOf, validateNotification, type Notification } from '../core/message.js';
import type { WorkerMetrics } from '../core/metrics.js';
import type { NotificationPublisher } from '../broker/publisher.js';
import { unsignableReason } from '../delivery/signing.js';
import { checkBatchShape } from '../contract/notification-check.js';
import type { MerchantLookup } from '../tier/merchant-check.js';
import { merchantRules } from './merchant-rules.js';
import { newRunId, type RunVia } from '../history/records.js';
import type { HistorySink } from '../history/sink.js';
import { admission } from '../history/admission.js';
import { IngressHistoryRoutes, type HistoryDb } from './history-routes.js';

type BatchItem = { id: string; status: 202 } | { status: number; error: ErrorData; index: number; id?: string };

/** Largest over-limit request body read and dropped so that its client gets the 413 (see BODY_TOO_LARGE). */
const DISCARD_MAX_BYTES = 64 * 1024 * 1024;

/** The HTTP server's clocks: a whole request, its headers, and how often Node checks them (tests shorten them). */
export interface IngressHttpTimeouts {
  readonly requestMs: number;
  readonly headersMs: number;
  readonly checkIntervalMs: number;
}

const HTTP_TIMEOUTS: IngressHttpTimeouts = { requestMs: 30_000, headersMs: 10_000, checkIntervalMs: 30_000 };

/** The status Node itself answers a client error with (its own handling is off once a listener is set). */
export function clientErrorStatus(code: string | undefined): number {
  switch (code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return 408;
    case 'HPE_HEADER_OVERFLOW':
      return 431;
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return 413;
    default:
      return 400;
  }
}

/**
 * The ingress API (DESIGN §5): validates, publishes with confirm, answers 202
 * only after the broker confirmed. Every refusal is a 4xx with a code; 503 means
 * nothing was accepted and the caller should retry.
 */
export class IngressServer {
  private server: Server | null = null;
  /** Sockets a client error ended and counted: the handler reading their request does not count them again. */
  private readonly counted = new WeakSet<Socket>();
  private draining = false;
  private config: Config;
  private tokens: BearerTokens;
  private readonly active = new Set<Promise<unknown>>();
  private readonly historyRoutes: IngressHistoryRoutes;

  constructor(
    config: Config,
    private readonly publisher: NotificationPublisher,
    private readonly log: Logger,
    private readonly metrics: WorkerMetrics | null,
    /** The merchant registry's copy in this process; null without a database. */
    private readonly merchants: MerchantLookup | null = null,
    /** Where accepted notifications are recorded (DESIGN §11); null without history. */
    private readonly history: HistorySink | null = null,
    /** Reads the history for its API and claims resends (DESIGN §11); null without history (the API then answers 501). */
    historyDb: HistoryDb | null = null,
    private readonly timeouts: IngressHttpTimeouts = HTTP_TIMEOUTS,
  ) {
    this.config = config;
    this.tokens = new BearerTokens(config.ingress.tokens);
    const admit = admission({ draining: () => this.draining, blocked: () => this.publisher.blocked, config: () => this.config, merchants: this.merchants });
    this.historyRoutes = new IngressHistoryRoutes(historyDb, (n, producer, via, at) => this.accept(n, producer, via, at), () => this.config, admit);
  }

  reload(config: Config): void {
    this.config = config;
    this.tokens = new BearerTokens(config.ingress.tokens);
  }

  /**
   * Whether this ingress can take a notification now: broker link up, not
   * blocked by a broker alarm, not draining. It depends on nothing else (not
   * on the tiers), so a load balancer keeps an ingress in rotation while a
   * tier elsewhere in the daemon restarts.
   */
  readiness(): { ready: boolean; reasons: string[] } {
    const reasons: string[] = [];
    if (!this.publisher.connected) reasons.push('broker not connected');
    const blocked = this.publisher.blocked;
    if (blocked !== null) reasons.push(`broker blocks publishing (${blocked})`);
    if (this.draining) reasons.push('draining');
    return { ready: reasons.length === 0, reasons };
  }

  /** Listens; resolves with the bound port. */
  listen(port: number, host: string): Promise<number> {
    const t = this.timeouts;
    const server = createServer({ requestTimeout: t.requestMs, headersTimeout: t.headersMs, connectionsCheckingInterval: t.checkIntervalMs, keepAliveTimeout: 5_000 }, (req, res) => {
      const path = (req.url ?? '/').split('?')[0]!;
      // Probes first: a busy ingress is alive, and says why it is not ready, instead of an OVERLOADED a liveness check would restart it for.
      if (this.probe(path, req, res)) return;
      if (this.active.size >= this.config.ingress.maxConcurrentRequests) {
        // Refused before a byte of the body is read: memory stays bounded by the cap times the body limit.
        req.resume();
        res.setHeader('connection', 'close');
        return this.sendError(res, new NotifyError(ErrorCodes.OVERLOADED, `${this.active.size} requests under way; retry later`));
      }
      const p = this.route(path, req, res).catch((err: unknown) => {
        this.log.error({ err: toErrorData(err) }, 'ingress handler failed');
        if (!res.headersSent) this.sendError(res, new NotifyError(ErrorCodes.INTERNAL, 'internal error'));
      });
      this.active.add(p);
      void p.finally(() => this.active.delete(p));
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      // As Node answers by itself: a timed-out request is 408, not a 400 that tells a producer its notification is
      // invalid (it would drop it); nothing is written over a response already started or to a peer gone; and the
      // socket is destroyed, not half-closed, so the handler reading a stalled body ends and frees its slot.
      const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
      if (err.code !== 'ECONNRESET' && socket.writable && !inFlight?.headersSent) {
        const status = clientErrorStatus(err.code);
        socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
        this.metrics?.ingressRequests.inc({ status: String(status) });
        this.counted.add(socket);
      }
      socket.destroy();
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      // exclusive: under cluster, the master would otherwise accept every connection (round-robin) and pass it
      // down the IPC pipe, so a master busy with an admin request, a metrics scrape or a collection would hold
      // up producers. The ingress is the one process listening on its port, so it binds the port itself.
      server.listen({ port, host, exclusive: true }, () => resolve((server.address() as AddressInfo).port));
    });
  }

  private send(res: ServerResponse, status: number, body: unknown): void {
    // A client error answered and counted this request already (and destroyed its socket): not counted twice.
    // A peer gone otherwise is still counted: its notification may have been accepted.
    if (res.socket !== null && this.counted.has(res.socket)) return;
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...(this.draining ? { connection: 'close' } : {}) });
    res.end(text);
    this.metrics?.ingressRequests.inc({ status: String(status) });
  }

  /** A JSON text as it is (the OpenAPI document, serialised once). */
  private sendText(res: ServerResponse, text: string): void {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
    this.metrics?.ingressRequests.inc({ status: '200' });
  }

  /** `id`: the notification's, once it was validated (a producer that sent none learns the one to retry with). */
  private sendError(res: ServerResponse, err: unknown, id?: string): void {
    const data = toErrorData(err);
    const allow = allowHeaderOf(err);
    if (allow !== undefined) res.setHeader('allow', allow);
    this.send(res, statusForError(data.code), id === undefined ? { error: data } : { error: data, id });
  }

  /** Answers `/healthz` and `/readyz` (GET, HEAD); false for any other request. */
  private probe(path: string, req: IncomingMessage, res: ServerResponse): boolean {
    if (!((path === '/readyz' || path === '/healthz') && (req.method === 'GET' || req.method === 'HEAD'))) return false;
    req.resume();
    if (path === '/healthz') this.send(res, 200, { ok: true });
    else {
      const r = this.readiness();
      this.send(res, r.ready ? 200 : 503, r);
    }
    return true;
  }

  private async route(path: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (path === '/openapi.json' && (req.method === 'GET' || req.method === 'HEAD')) {
      req.resume();
      // Loaded when asked for: the document's builders (TypeBox) would cost every ingress process ~14 MB.
      const { openApiText } = await import('../contract/openapi.js');
      return this.sendText(res, openApiText('ingress', { limits: this.config.limits, maxBatch: this.config.ingress.maxBatch }));
    }
    if (path === '/readyz' || path === '/healthz' || path === '/openapi.json') {
      req.resume();
      return this.sendError(res, methodNotAllowed(['GET', 'HEAD']));
    }
    const single = path === '/v1/notifications';
    const batch = path === '/v1/notifications:batch';
    // Without tokens the ingress is loopback only, where any web page could make a browser post to it (or, on a
    // name rebound to 127.0.0.1, read the history): refused as on the admin port (src/core/browser-guard.ts).
    const foreign = this.tokens.size > 0 ? null : foreignBrowserRequest(req.headers);
    if (foreign !== null) {
      req.resume();
      return this.sendError(res, new NotifyError(ErrorCodes.FORBIDDEN, `refused ${foreign}: a browser may call the ingress only with ingress.tokens set`));
    }
    // A notification's POST goes straight on: no history route takes one, and it is nearly every request.
    if (!((single || batch) && req.method === 'POST')) {
      const history = await this.historyRoutes.serve(req, path ?? '/', this.tokens);
      if (history) return 'error' in history ? this.sendError(res, history.error) : this.send(res, history.status, history.body);
    }
    if (!single && !batch) {
      req.resume();
      return this.sendError(res, new NotifyError(ErrorCodes.NOT_FOUND, `no route ${path}`));
    }
    if (req.method !== 'POST') {
      req.resume();
      // The one notification's path is also the history's list (GET, HEAD).
      return this.sendError(res, methodNotAllowed(single ? ['GET', 'HEAD', 'POST'] : ['POST']));
    }
    const producer = this.tokens.match(req.headers.authorization);
    if (this.tokens.size > 0 && producer === null) {
      req.resume();
      return this.sendError(res, new NotifyError(ErrorCodes.UNAUTHORIZED, 'missing or wrong bearer token'));
    }
    if (this.draining) {
      req.resume();
      return this.sendError(res, new NotifyError(ErrorCodes.DRAINING, 'notifyd is shutting down; retry on another instance'));
    }
    const blocked = this.publisher.blocked;
    if (blocked !== null) {
      // Answered before the body is read: nothing is buffered while the broker cannot take it.
      req.resume();
      return this.sendError(res, new NotifyError(ErrorCodes.BROKER_BLOCKED, `the broker blocks publishing (${blocked}); retry later`));
    }
    const ct = mediaTypeOf(req.headers['content-type'] ?? 'application/json');
    if (ct !== 'application/json') {
      req.resume();
      return this.sendError(res, new NotifyError(ErrorCodes.UNSUPPORTED_MEDIA_TYPE, 'send application/json'));
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse((await readBody(req, this.config.ingress.maxBodyBytes)).toString('utf8'));
    } catch (err) {
      if ((err as NotifyError).code === ErrorCodes.BODY_TOO_LARGE) {
        // Closing at once cuts a client still sending its body: it sees EPIPE, not the 413. A body of a
        // declared size up to DISCARD_MAX_BYTES is read to its end and dropped (Node does so after the
        // answer), so the client reads the 413; a larger or undeclared one is cut.
        const declared = Number(req.headers['content-length']);
        if (!(Number.isFinite(declared) && declared <= DISCARD_MAX_BYTES)) res.setHeader('connection', 'close');
        return this.sendError(res, err);
      }
      return this.sendError(res, new NotifyError(ErrorCodes.BAD_JSON, `body is not valid JSON: ${(err as Error).message}`.slice(0, 200)));
    }
    if (single) return this.handleOne(res, parsed, producer);
    return this.handleBatch(res, parsed, producer);
  }

  /** Validation plus what the configured signing scheme needs (rsa2 signs form bodies only). */
  private async validate(input: unknown): Promise<Notification> {
    const n = validateNotification(input, this.config.limits);
    const scheme = await merchantRules(n, this.config, this.merchants);
    const unsignable = unsignableReason(scheme, n);
    if (unsignable) throw new NotifyError(ErrorCodes.VALIDATION, `${unsignable.field}: ${unsignable.problem}`, unsignable.field);
    return n;
  }

  /**
   * Publishes a validated notification on a new ladder and, once the broker
   * has it, records it in the history (before the 202, so an accepted
   * notification is always in the history). A record the broker refuses
   * does not undo the acceptance: it is counted and logged.
   */
  async accept(n: Notification, producer: string | null, via: RunVia = 'ingress', at = Date.now()): Promise<{ run: string }> {
    // Stamped before the publish (a resend's claim time, given): a tier may deliver it before this line
    // runs again, and the history orders events by time (the ladder's start must come first).
    const run = newRunId(at);
    if (this.history === null) {
      await this.publisher.publish(n, { producer, run });
      return { run };
    }
    const body = encodeNotification(n);
    await this.publisher.publish(n, { producer, run, recorded: true, body });
    try {
      await this.history.record({ t: 'run', id: n.id, createdAt: n.createdAt, run, at, via, merchant: n.merchant ?? null, producer, url: n.url, content: body.toString('utf8') });
    } catch (err) {
      this.metrics?.historyLost.inc();
      this.log.warn({ id: n.id, err: toErrorData(err) }, 'accepted, but its history record was not taken by the broker');
    }
    return { run };
  }

  private async handleOne(res: ServerResponse, parsed: unknown, producer: string | null): Promise<void> {
    let n: Notification;
    try {
      n = await this.validate(parsed);
    } catch (err) {
      return this.sendError(res, err);
    }
    try {
      await this.accept(n, producer);
    } catch (err) {
      this.log.warn({ id: n.id, err: toErrorData(err) }, 'publish failed; answered 503');
      return this.sendError(res, err, n.id);
    }
    this.send(res, 202, { id: n.id });
  }

  private async handleBatch(res: ServerResponse, parsed: unknown, producer: string | null): Promise<void> {
    try {
      checkBatchShape(parsed, this.config.ingress.maxBatch);
    } catch (err) {
      return this.sendError(res, err);
    }
    const list = (parsed as { notifications: unknown[] }).notifications;
    const results: BatchItem[] = await Promise.all(
      list.map(async (item, index): Promise<BatchItem> => {
        let id: string | undefined;
        try {
          const n = await this.validate(item);
          id = n.id;
          await this.accept(n, producer);
          return { id: n.id, status: 202 };
        } catch (err) {
          const error = toErrorData(err);
          return id === undefined ? { index, status: statusForError(error.code), error } : { index, status: statusForError(error.code), error, id };
        }
      }),
    );
    const accepted = results.filter((r) => r.status === 202).length;
    // 202 when everything was taken, 207 when only part of it was.
    this.send(res, accepted === results.length ? 202 : accepted === 0 && results.every((r) => r.status === 503) ? 503 : 207, { accepted, results });
  }

  /** Stops accepting (503 from now on), waits for in-flight requests, closes the listener. Idempotent. */
  async drain(deadlineMs: number): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    const server = this.server;
    const closed = server ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    server?.closeIdleConnections();
    const wait = Math.max(0, deadlineMs - Date.now());
    await Promise.race([Promise.allSettled([...this.active]), new Promise((r) => setTimeout(r, wait).unref())]);
    server?.closeAllConnections();
    await closed;
  }
}

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AdminConfig } from '../core/config.js';
import { ErrorCodes, NotifyError, toErrorData } from '../core/errors.js';
import { allowHeaderOf, closeServerNow, methodNotAllowed, statusForError, tokenMatches } from '../core/http-util.js';
import type { Logger } from '../core/logger.js';
import { EXPOSITION_CONTENT_TYPE } from '../core/metrics.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import { foreignBrowserRequest } from '../core/browser-guard.js';
import { ConsoleFiles, isConsolePath } from './console-files.js';
import { merchantRoute } from './merchant-routes.js';
import { answerHistory, matchHistoryRoute } from '../history/routes.js';
import { databaseAway } from '../history/database-away.js';
import { forceParam } from '../history/query-params.js';

/** The admin API needs these of the master (an interface so tests can fake it). */
export type AdminTarget = Pick<
  Supervisor,
  'status' | 'pause' | 'resume' | 'reload' | 'redrive' | 'listDead' | 'metricsText' | 'readiness' | 'origins' | 'merchants' | 'currentConfig' | 'history'
>;

/** `GET /admin/dead` lists this many by default, and at most this many. */
const DEAD_LIST_DEFAULT = 50;
const DEAD_LIST_MAX = 1000;

/** The admin routes that only read: answered on GET and HEAD (RFC 9110: HEAD wherever GET is; node sends no body for it). */
const GET_ROUTES = new Set(['/metrics', '/admin/status', '/admin/origins', '/admin/dead', '/admin/notifications']);
const READ_METHODS = ['GET', 'HEAD'] as const;
/** A tier's pause or resume, answered on POST only as are the two below. */
const TIER_ROUTE = /^\/admin\/tiers\/(\d{1,3})\/(pause|resume)$/;
const postRoute = (path: string): boolean => path === '/admin/reload' || path === '/admin/dead/redrive' || TIER_ROUTE.test(path);

/**
 * The master's admin port: `/healthz`, `/readyz`, `/metrics` and `/admin/*`
 * (DESIGN §7–8), and the operator console's files (`/`, `/console/*`, DESIGN
 * §12). Loopback by default; when a token is configured every route but the
 * probes (`/healthz`, `/readyz`) and the console's files requires it.
 */
export class AdminServer {
  private server: Server | null = null;

  /** `current` is read per request, so a reloaded token applies at once (host and port need a restart). */
  constructor(
    private readonly cfg: AdminConfig,
    private readonly current: () => AdminConfig,
    private readonly target: AdminTarget,
    private readonly log: Logger,
    private readonly console: ConsoleFiles = new ConsoleFiles(),
  ) {}

  listen(): Promise<number> {
    const server = createServer((req, res) => {
      this.route(req, res).catch((err: unknown) => {
        req.resume();
        const data = toErrorData(err);
        if (data.code === ErrorCodes.INTERNAL) this.log.error({ err: data }, 'admin request failed');
        if (res.headersSent) return;
        const allow = allowHeaderOf(err);
        if (allow !== undefined) res.setHeader('allow', allow);
        this.json(res, statusForError(data.code), { error: data });
      });
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.cfg.port, this.cfg.host, () => resolve((server.address() as AddressInfo).port));
    });
  }

  private json(res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    // Answers carry one-time secrets (create, rotate) and state that changes by the second: never stored by a
    // cache or browser, never read as anything but JSON.
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    res.end(text);
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const reads = method === 'GET' || method === 'HEAD';
    // Probes stay open (load balancers and systemd health checks carry no token); they reveal no secret.
    if ((path === '/healthz' || path === '/readyz') && !reads) {
      req.resume();
      throw methodNotAllowed(READ_METHODS);
    }
    if (path === '/healthz') {
      req.resume();
      return this.json(res, 200, { ok: true });
    }
    if (path === '/readyz') {
      req.resume();
      const r = this.target.readiness();
      return this.json(res, r.ready ? 200 : 503, r);
    }
    // The document says what the API is, nothing of this daemon's state: open, like the probes.
    if (path === '/openapi.json' && !reads) {
      req.resume();
      throw methodNotAllowed(READ_METHODS);
    }
    if (path === '/openapi.json') {
      req.resume();
      const c = this.target.currentConfig;
      // Loaded when asked for: the document's builders (TypeBox) would cost the master ~14 MB.
      const { openApiText } = await import('../contract/openapi.js');
      const text = openApiText('admin', { limits: c.limits, maxBatch: c.ingress.maxBatch });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
      return;
    }
    // The console's files hold no secret (the API calls it makes carry the token), so a browser can load the page that asks for it.
    if (isConsolePath(path)) return this.console.serve(req, res, path);
    const token = this.current().token;
    if (token && !tokenMatches(req.headers.authorization, token)) {
      req.resume();
      throw new NotifyError(ErrorCodes.UNAUTHORIZED, 'missing or wrong bearer token');
    }
    const foreign = token ? null : foreignBrowserRequest(req.headers);
    if (foreign) {
      req.resume();
      throw new NotifyError(ErrorCodes.FORBIDDEN, `refused ${foreign}: open the console at http://127.0.0.1:<admin port>/, or set admin.token`);
    }
    const merchants = path === '/admin/merchants' || path.startsWith('/admin/merchants/')
      ? await merchantRoute(this.target.merchants, req, url, this.target.currentConfig.merchants.rotationGraceMs).catch((err: unknown) => Promise.reject(databaseAway(err) ? registryAway(err, reads) : err))
      : null;
    if (merchants !== null) {
      if (merchants.status === 204) {
        res.writeHead(204).end();
        return;
      }
      return this.json(res, merchants.status, merchants.body);
    }
    const history = matchHistoryRoute('/admin', method, path);
    if (history !== null) {
      const a = await answerHistory(this.target.history, history, req, url, null);
      return this.json(res, a.status, a.body);
    }
    req.resume();
    if (path === '/metrics' && reads) {
      const text = await this.target.metricsText();
      res.writeHead(200, { 'content-type': EXPOSITION_CONTENT_TYPE });
      res.end(text);
      return;
    }
    if (path === '/admin/status' && reads) return this.json(res, 200, await this.target.status());
    if (path === '/admin/origins' && reads) {
      const limitRaw = url.searchParams.get('limit') ?? '20';
      if (!/^\d{1,4}$/.test(limitRaw) || Number(limitRaw) < 1) throw new NotifyError(ErrorCodes.VALIDATION, 'limit: must be a positive integer', 'limit');
      return this.json(res, 200, await this.target.origins(Number(limitRaw)));
    }
    if (path === '/admin/dead' && reads) {
      const raw = url.searchParams.get('limit') ?? String(DEAD_LIST_DEFAULT);
      if (!/^\d{1,7}$/.test(raw) || Number(raw) < 1 || Number(raw) > DEAD_LIST_MAX) {
        throw new NotifyError(ErrorCodes.VALIDATION, `limit: must be an integer from 1 to ${DEAD_LIST_MAX}`, 'limit');
      }
      return this.json(res, 200, await this.target.listDead(Number(raw)));
    }
    // A route that exists with another method is 405, any other path 404 (the console tells an older daemon by those).
    if (GET_ROUTES.has(path)) throw methodNotAllowed(READ_METHODS);
    if (method !== 'POST') {
      if (postRoute(path)) throw methodNotAllowed(['POST']);
      throw new NotifyError(ErrorCodes.NOT_FOUND, `no route ${path}`);
    }
    const tier = TIER_ROUTE.exec(path);
    if (tier) {
      const index = Number(tier[1]);
      return this.json(res, 200, tier[2] === 'pause' ? this.target.pause(index) : this.target.resume(index));
    }
    if (path === '/admin/reload') return this.json(res, 200, this.target.reload()); // CONFIG_INVALID → 400, old config kept
    if (path === '/admin/dead/redrive') {
      const limitRaw = url.searchParams.get('limit') ?? '100';
      if (!/^\d{1,7}$/.test(limitRaw) || Number(limitRaw) < 1) throw new NotifyError(ErrorCodes.VALIDATION, 'limit: must be a positive integer', 'limit');
      const force = forceParam(url.searchParams);
      return this.json(res, 200, await this.target.redrive(Number(limitRaw), force));
    }
    throw new NotifyError(ErrorCodes.NOT_FOUND, `no route ${path}`);
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    await closeServerNow(s);
  }
}

/**
 * The coded error for a merchant call the database could not answer: a 503
 * to retry. A change's COMMIT whose answer was lost may have been applied
 * (a secret made and never shown), so a write says to read the merchant
 * before retrying it.
 */
function registryAway(err: unknown, read: boolean): NotifyError {
  const then = read ? 'retry later' : 'the change may have been applied: read the merchant (its secret fingerprints) before retrying';
  return new NotifyError(ErrorCodes.REGISTRY_UNAVAILABLE, `the merchant registry's database cannot be reached or answer in time; ${then}`, undefined, { cause: err });
}

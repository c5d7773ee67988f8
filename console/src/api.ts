// Every call the console makes, one small function each, all through
// `request` (relative URLs: same origin, so CSP connect-src 'self' holds; the
// token in a header, never a cookie). Endpoints that a later version adds
// (origins, history, merchants) are here too, so wiring them is a matter of
// the daemon answering.
import { storedToken, unauthorized } from './auth';

/** An answer other than 2xx, or no answer. `code` is the daemon's stable error code when it sent one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

interface RequestOptions {
  readonly method?: 'GET' | 'POST';
  readonly query?: Readonly<Record<string, string | number | boolean | undefined>>;
  readonly json?: unknown;
  /** Send this token instead of the stored one, and do not treat a 401 as "log in again" (the token form). */
  readonly token?: string | null;
  readonly as?: 'json' | 'text';
  /**
   * How long to wait for the answer: by default READ_TIMEOUT_MS for a GET,
   * ACTION_TIMEOUT_MS otherwise. A GET that changes state (the dead queue's
   * listing) sets the action's.
   */
  readonly timeoutMs?: number;
}

/**
 * How long a read waits for the admin port (the daemon bounds its history
 * queries at 15 s), and an action (a redrive or a recover of thousands may
 * take a while).
 */
const READ_TIMEOUT_MS = 30_000;
const ACTION_TIMEOUT_MS = 120_000;

/** One call to the admin port. Throws `ApiError`; a 401 also sends the page back to the token form. */

export async function request<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const probe = opts.token !== undefined;
  const token = probe ? opts.token : storedToken();
  const headers: Record<string, string> = { accept: opts.as === 'text' ? 'text/plain' : 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (opts.json !== undefined) headers['content-type'] = 'application/json';
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined && v !== false) params.set(k, v === true ? '1' : String(v));
  const qs = params.toString();
  // A stalled admin port must show as an error, not as a page quietly kept on old data (the poller waits for each call).
  const method = opts.method ?? 'GET';
  const limitMs = opts.timeoutMs ?? (method === 'GET' ? READ_TIMEOUT_MS : ACTION_TIMEOUT_MS);
  const signal = AbortSignal.timeout(limitMs);
  let res: Response;
  let text: string;
  try {
    res = await fetch(qs ? `${path}?${qs}` : path, {
      method,
      headers,
      body: opts.json === undefined ? undefined : JSON.stringify(opts.json),
      cache: 'no-store',
      credentials: 'omit',
      signal,
    });
    text = await res.text();
  } catch (err) {
    // The signal, not the error's name: browsers have named a timed-out fetch differently.
    if (signal.aborted) {
      throw new ApiError(0, 'TIMEOUT', `the admin port did not answer within ${limitMs / 1000} s${method === 'GET' && opts.timeoutMs === undefined ? '' : '; what was asked may have happened: look before trying again'}`);
    }
    throw new ApiError(0, 'NETWORK', `the admin port did not answer (${(err as Error).message})`);
  }
  if (!res.ok) {
    if (res.status === 401 && !probe) unauthorized(token ?? null);
    let code = `HTTP_${res.status}`;
    let message = text.slice(0, 300) || res.statusText;
    try {
      const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
      if (typeof body.error?.code === 'string') code = body.error.code;
      if (typeof body.error?.message === 'string') message = body.error.message;
    } catch {
      /* not JSON: keep the text */
    }
    throw new ApiError(res.status, code, message);
  }
  if (opts.as === 'text') return text as T;
  return (text ? JSON.parse(text) : null) as T;
}

/**
 * True when the daemon has no such endpoint (an older or smaller version): a
 * 404 "no route", or the 405 that admin ports before stop 44 gave a GET on an
 * unknown `/admin/` path. A feature that exists but is switched off answers 501 with
 * its own code instead (see `isDisabled`).
 */
export function isMissingEndpoint(err: unknown): boolean {
  if (!(err instanceof ApiError)) return false;
  if (err.status === 405 && err.code === 'METHOD_NOT_ALLOWED') return true;
  return err.status === 404 && err.code === 'NOT_FOUND' && /^no route/.test(err.message);
}

/** True for a 501 with the given code (e.g. `HISTORY_DISABLED`: no database configured). */
export function isDisabled(err: unknown, code: string): boolean {
  return err instanceof ApiError && err.status === 501 && err.code === code;
}

// ---- status, metrics, tiers ------------------------------------------------

export type WorkerState = 'starting' | 'running' | 'paused' | 'backoff' | 'crashloop' | 'draining' | 'stopped';

export interface TierStatus {
  readonly index: number;
  readonly delayMs: number;
  readonly state: WorkerState;
  readonly pid: number | null;
  readonly restarts: number;
  readonly inflight: number;
  /** The RabbitMQ node (`host:port`) its connection is on. */
  readonly brokerNode?: string | null;
  /** Paused by an operator, whatever its worker's state (absent from a daemon before it: then the state says). */
  readonly paused?: boolean;
}

/** Whether a tier is paused: a paused tier whose worker restarts is in `backoff` or `starting`, and still paused. */
export function isPaused(t: TierStatus): boolean {
  return t.paused ?? t.state === 'paused';
}

/** A supervised process other than a tier (ingress, recorder). */
export interface ProcessStatus {
  readonly pid: number | null;
  readonly state: WorkerState;
  readonly restarts: number;
  readonly brokerNode?: string | null;
}

export interface DaemonStatus {
  readonly prefix?: string;
  readonly tiers: readonly TierStatus[];
  readonly ingress: ProcessStatus & { readonly port?: number | null };
  /** `node`: the master's own node. */
  readonly broker: { readonly connected: boolean; readonly url?: string; readonly node?: string | null };
  /** The history recorder; null (or absent) when history is off. */
  readonly recorder?: ProcessStatus | null;
}

/** `GET /admin/status`. */
export function getStatus(token?: string | null): Promise<DaemonStatus> {
  return request<DaemonStatus>('admin/status', token === undefined ? {} : { token });
}

/** `GET /metrics` (Prometheus text). */
export function getMetricsText(): Promise<string> {
  return request<string>('metrics', { as: 'text' });
}

/** `POST /admin/tiers/<i>/pause|resume`; answers the tier's new status. */
export function setTierPaused(index: number, paused: boolean): Promise<TierStatus> {
  return request<TierStatus>(`admin/tiers/${index}/${paused ? 'pause' : 'resume'}`, { method: 'POST' });
}

// ---- parked (P.dead) -------------------------------------------------------

export interface ParkedMessage {
  readonly id: string;
  readonly reason: string;
  readonly tier: number | null;
  readonly attempts: number | null;
  readonly lastError: string | null;
  readonly deadAt: number | null;
  readonly url: string | null;
  readonly merchant?: string | null;
  readonly redriven?: number;
}

export interface DeadListing {
  readonly total: number;
  readonly byReason: Readonly<Record<string, number>>;
  /** Counts by merchant over the listed ones (`-`: no merchant). */
  readonly byMerchant?: Readonly<Record<string, number>>;
  readonly messages: readonly ParkedMessage[];
}

export interface RedriveResult {
  readonly moved: number;
  readonly skipped: number;
  /** Dropped, not moved: copies of notifications resent or recovered since they were parked (history on). */
  readonly superseded?: number;
  readonly remaining: number;
}

/** `GET /admin/dead?limit=N`: the first N parked notifications, read without consuming them. */
export function listDead(limit: number): Promise<DeadListing> {
  // Listing moves each listed message to the back of P.dead, a round trip each: as long as an action may take.
  return request<DeadListing>('admin/dead', { query: { limit }, timeoutMs: ACTION_TIMEOUT_MS });
}

/** `POST /admin/dead/redrive?limit=N&force=1`. */
export function redrive(limit: number, force: boolean): Promise<RedriveResult> {
  return request<RedriveResult>('admin/dead/redrive', { method: 'POST', query: { limit, force } });
}

// ---- origins (origin isolation) --------------------------------------------

export type OriginState = 'failing' | 'limited' | 'ok';

export interface OriginRow {
  readonly tier: number;
  readonly origin: string;
  readonly state: OriginState;
  readonly limit: number;
  readonly inflight: number;
  readonly waiting: number;
  readonly deferred: number;
  readonly skipped: number;
  readonly consecutiveFailures: number;
  readonly lastError: string | null;
  readonly lastErrorAt: number | null;
  readonly nextProbeInMs: number | null;
}

export interface OriginsAnswer {
  readonly origins: readonly OriginRow[];
  readonly counts: { readonly failing: number; readonly limited: number };
}

/** `GET /admin/origins`: the limited and failing origins per tier. */
/** The worst `limit` origins of all tiers, and the counts of all. */
export function getOrigins(limit: number): Promise<OriginsAnswer> {
  return request<OriginsAnswer>('admin/origins', { query: { limit } });
}

// ---- history (needs NOTIFY_DATABASE_URL) -----------------------------------

export interface NotificationRecord {
  readonly id: string;
  readonly merchant?: string | null;
  readonly url: string;
  readonly status: string;
  readonly attempts: number;
  readonly createdAt: number | string;
  readonly [more: string]: unknown;
}

export interface AttemptRecord {
  /** The ladder it belongs to (a resend, recover or redrive starts a new one; '' when its start was not recorded). */
  readonly run?: string;
  /** 0-based within its ladder. */
  readonly attempt: number;
  readonly tier: number;
  readonly startedAt: number | string;
  readonly durationMs: number | null;
  readonly status: number | string | null;
  readonly outcome: string;
  readonly skipped: boolean;
  readonly reason: string | null;
  readonly error: string | null;
  /** The first KiB of the merchant's answer. */
  readonly answer?: string | null;
}

/** One ladder from tier 0: accepted (`ingress`, `client`, `direct`), `resend`, `recover` or `redrive`. */
export interface RunRecord {
  readonly run: string;
  readonly startedAt: number;
  readonly via: string;
  readonly producer: string | null;
}

export interface NotificationTimeline {
  readonly notification: NotificationRecord;
  readonly runs?: readonly RunRecord[];
  readonly attempts: readonly AttemptRecord[];
}

/** `GET /admin/notifications/<id>`: a notification and its attempts. */
export function getNotification(id: string): Promise<NotificationTimeline> {
  return request<NotificationTimeline>(`admin/notifications/${encodeURIComponent(id)}`);
}

/** `POST /admin/notifications/<id>/resend[?force=1]`: 409 `NOTIFICATION_PENDING` while it is under way, unless forced. */
export function resendNotification(id: string, force = false): Promise<unknown> {
  return request<unknown>(`admin/notifications/${encodeURIComponent(id)}/resend`, { method: 'POST', query: { force } });
}

// ---- merchants (needs NOTIFY_DATABASE_URL) ---------------------------------

/** One signing secret as the admin API shows it: never the secret, only its fingerprint. */
export interface MerchantSecret {
  readonly fingerprint: string;
  readonly createdAt: string;
  /** Set on an older secret still valid for the rotation grace. */
  readonly expiresAt: string | null;
}

/** A merchant as `GET /admin/merchants` answers it (src/merchants/merchant.ts MerchantView). */
export interface Merchant {
  readonly id: string;
  readonly name: string;
  readonly enabled: boolean;
  readonly disabledReason: string | null;
  readonly failingSince: string | null;
  readonly signing: string;
  readonly secrets: readonly MerchantSecret[];
  readonly allowedOrigins: readonly string[];
  readonly maxConcurrency: number | null;
  readonly maxAttempts: number | null;
  readonly createdAt: string;
}

export interface NewMerchant {
  readonly id: string;
  readonly name: string;
  readonly allowedOrigins: readonly string[];
}

/** What create and rotate answer: the merchant, and the new secret, shown this once. */
export interface MerchantWithSecret {
  readonly merchant: Merchant;
  readonly secret: string;
}

/** Most merchants the merchants page lists (read in pages of 1,000). */
export const MERCHANTS_LISTED = 5000;

/**
 * `GET /admin/merchants`, page after page up to `MERCHANTS_LISTED`; `more`
 * says there are others after them. One page (the API's default 50) left
 * every merchant after the 50th out of sight, and out of reach of the page.
 */
export async function listMerchants(): Promise<{ merchants: readonly Merchant[]; more: boolean }> {
  const merchants: Merchant[] = [];
  let cursor: string | null = null;
  do {
    const q: string = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
    const page: { merchants: readonly Merchant[]; nextCursor: string | null } = await request(`admin/merchants?limit=1000${q}`);
    merchants.push(...page.merchants);
    cursor = page.nextCursor;
  } while (cursor !== null && merchants.length < MERCHANTS_LISTED);
  return { merchants, more: cursor !== null };
}

/** `POST /admin/merchants`. */
export function createMerchant(m: NewMerchant): Promise<MerchantWithSecret> {
  return request<MerchantWithSecret>('admin/merchants', { method: 'POST', json: m });
}

/** `POST /admin/merchants/<id>/rotate-secret`. */
export function rotateMerchantSecret(id: string): Promise<MerchantWithSecret> {
  return request<MerchantWithSecret>(`admin/merchants/${encodeURIComponent(id)}/rotate-secret`, { method: 'POST' });
}

/** `POST /admin/merchants/<id>/enable|disable`. */
export function setMerchantEnabled(id: string, enabled: boolean): Promise<{ merchant: Merchant }> {
  const json = enabled ? {} : { reason: 'disabled from the console' };
  return request<{ merchant: Merchant }>(`admin/merchants/${encodeURIComponent(id)}/${enabled ? 'enable' : 'disable'}`, { method: 'POST', json });
}

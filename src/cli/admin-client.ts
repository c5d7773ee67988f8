import { loadConfigOrExit } from '../supervisor/master.js';
import { str, type Values } from './args.js';
import { ErrorCodes, NotifyError } from '../core/errors.js';

/**
 * How long ctl waits for the admin API's answer. Long enough for a recover
 * of thousands (each resend waits for the broker's confirm, at most 10 s);
 * without a bound a daemon that never answers kept ctl waiting for ever.
 */
export const ADMIN_REQUEST_TIMEOUT_MS = 120_000;
/** A read (status, origins, show, list) has nothing long to do: a health script learns of a stuck daemon sooner. */
export const ADMIN_READ_TIMEOUT_MS = 30_000;

/** An answer of the admin API, parsed when it is JSON. */
export interface AdminAnswer {
  readonly status: number;
  readonly body: unknown;
}

/**
 * Calls a running daemon's admin API: `--admin URL` or the configured
 * address; `--token`, `NOTIFY_ADMIN_TOKEN`, or `admin.token` when the
 * address is the configured one (the configuration's token is its daemon's).
 */
export type AdminCall = (method: string, path: string, body?: unknown) => Promise<AdminAnswer>;

/** Errors of a connection that was never made: the request was not sent. */
const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT', 'bad port']);

export function adminClient(values: Values, timeoutMs = ADMIN_REQUEST_TIMEOUT_MS, readTimeoutMs = Math.min(timeoutMs, ADMIN_READ_TIMEOUT_MS)): AdminCall {
  let base = str(values, 'admin');
  let token = str(values, 'token') ?? process.env.NOTIFY_ADMIN_TOKEN;
  if (!base) {
    // ctl never signs: an operator's shell needs neither the service's signing secrets nor its key file.
    const config = loadConfigOrExit(str(values, 'config') ?? null, { checkSigning: false });
    const host = config.admin.host === '0.0.0.0' ? '127.0.0.1' : config.admin.host.includes(':') ? `[${config.admin.host}]` : config.admin.host;
    base = `http://${host}:${config.admin.port}`;
    token ??= config.admin.token ?? undefined;
  }
  // Relative to the base, path included: an admin API behind a proxy at http://proxy/notifyd/ keeps its prefix.
  const root = base.endsWith('/') ? base : `${base}/`;
  return async (method, path, body) => {
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    const url = new URL(path.replace(/^\/+/, ''), root);
    const limitMs = method === 'GET' ? readTimeoutMs : timeoutMs;
    let res: Response;
    let text: string;
    try {
      res = await fetch(url, { method, headers, signal: AbortSignal.timeout(limitMs), ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
      text = await res.text();
    } catch (err) {
      if ((err as Error)?.name === 'TimeoutError') {
        throw new NotifyError(ErrorCodes.REQUEST_TIMEOUT, `no answer from the admin API at ${url.origin} within ${limitMs / 1000} s (${method} ${url.pathname}); what it was doing may have happened`);
      }
      // fetch says only "fetch failed": say where, and why. Only a failure to connect means nothing was sent; a
      // connection that broke later may have carried the request (a rotation made, a redrive run).
      const cause = (err as { cause?: { code?: unknown; message?: unknown } })?.cause;
      // fetch refuses some ports before it connects ("bad port"): a cause without a code, and nothing sent.
      const code = typeof cause?.code === 'string' ? cause.code : cause?.message === 'bad port' ? 'bad port' : 'no code';
      if (CONNECT_FAILURES.has(code)) {
        throw new NotifyError(ErrorCodes.ADMIN_UNREACHABLE, `cannot reach the admin API at ${url.origin} (${code}); is the daemon running there (--admin, or admin.host/port in the config)?`, undefined, { cause: err });
      }
      throw new NotifyError(ErrorCodes.ADMIN_CONNECTION_LOST, `the connection to the admin API at ${url.origin} broke during ${method} ${url.pathname} (${code}); what it was doing may have happened`, undefined, { cause: err });
    }
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* keep text */
    }
    return { status: res.status, body: parsed };
  };
}

/**
 * Prints an answer as JSON, an error answer on stderr (so `--json | jq` never
 * reads one); the exit status says whether it was a success.
 */
export function printAnswer(r: AdminAnswer): number {
  const ok = r.status < 400;
  (ok ? process.stdout : process.stderr).write(`${JSON.stringify(r.body, null, 2)}\n`);
  return ok ? 0 : 1;
}

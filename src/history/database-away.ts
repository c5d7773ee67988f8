/**
 * Which database failures of the history API are the database's absence
 * (a 503 `HISTORY_UNAVAILABLE` to retry), not a bug (a 500).
 */
import { ErrorCodes, NotifyError, toErrorData, type ErrorData } from '../core/errors.js';
import { isQueryTimeout } from '../db/pool.js';

/**
 * A database that cannot answer now is a 503 to retry, not a 500: pg's
 * connection errors, SQLSTATE classes 08 (connection) and 57P (shutdown),
 * 57014 (the statement timeout cancelled a slow query), 53300 (too many
 * connections), 42P01 (the history tables are not there yet: the database
 * was away when the daemon started, so its migration has not run), DNS
 * failures of the database host, and a query the pool gave up on (no
 * answer within its `queryTimeoutMs`: a host gone without a reset).
 */
export function databaseAway(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown };
  if (typeof e?.code === 'string' && (/^(08|57P)/.test(e.code) || /^(57014|53300|42P01)$/.test(e.code) || /^E(CONNREFUSED|CONNRESET|HOSTUNREACH|NETUNREACH|TIMEDOUT|PIPE|NOTFOUND|AI_AGAIN)$/.test(e.code))) return true;
  return isQueryTimeout(err) || (typeof e?.message === 'string' && /timeout exceeded when trying to connect|Connection terminated/i.test(e.message));
}

/** The coded error a caller gets for `err` when `databaseAway(err)`. */
export function historyUnavailable(err: unknown): NotifyError {
  return new NotifyError(ErrorCodes.HISTORY_UNAVAILABLE, 'the history database cannot be reached or answer in time; retry later', undefined, { cause: err });
}

/** `err` as plain data, a database failure as `HISTORY_UNAVAILABLE` (pg's own codes are not notifyd's). */
export function historyErrorData(err: unknown): ErrorData {
  return toErrorData(databaseAway(err) ? historyUnavailable(err) : err);
}

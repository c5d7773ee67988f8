/**
 * The history API's HTTP routes (DESIGN §11), mounted twice: under `/v1` on
 * the ingress port (producer tokens) and under `/admin` on the admin port
 * (the admin token, the console). Matching is pure and separate from
 * answering so the ingress can authenticate between the two.
 */
import type { IncomingMessage } from 'node:http';
import { ErrorCodes, NotifyError } from '../core/errors.js';
import { methodNotAllowed, readBody, statusForError } from '../core/http-util.js';
import { databaseAway, historyUnavailable } from './database-away.js';
import { forceParam, parseListQuery, parseRecoverBody } from './query-params.js';
import type { HistoryService } from './service.js';

/** Largest recover body: three short fields. */
const MAX_BODY = 16 * 1024;

/** Which history call a request is. */
export type HistoryRoute = { readonly kind: 'list' } | { readonly kind: 'recover' } | { readonly kind: 'get'; readonly id: string } | { readonly kind: 'resend'; readonly id: string };

/**
 * The history call of `method path` under `base` (`/v1` or `/admin`), or
 * null when it is none. A wrong method on a history path is a 405, thrown.
 * `POST <base>/notifications` is not history (it submits, on the ingress).
 */
export function matchHistoryRoute(base: string, method: string, path: string): HistoryRoute | null {
  const root = `${base}/notifications`;
  if (path === root) {
    if (method === 'GET' || method === 'HEAD') return { kind: 'list' };
    return null;
  }
  if (path === `${root}:recover`) {
    if (method !== 'POST') throw methodNotAllowed(['POST']);
    return { kind: 'recover' };
  }
  if (!path.startsWith(`${root}/`)) return null;
  const m = /^([^/]+)(\/resend)?$/.exec(path.slice(root.length + 1));
  if (!m) return null;
  let id: string;
  try {
    id = decodeURIComponent(m[1]!);
  } catch {
    throw new NotifyError(ErrorCodes.VALIDATION, 'id: not a valid URL-encoded id', 'id');
  }
  if (m[2]) {
    if (method !== 'POST') throw methodNotAllowed(['POST']);
    return { kind: 'resend', id };
  }
  if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed(['GET', 'HEAD']);
  return { kind: 'get', id };
}

async function jsonBody(req: IncomingMessage): Promise<unknown> {
  const text = (await readBody(req, MAX_BODY)).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new NotifyError(ErrorCodes.BAD_JSON, `body is not valid JSON: ${(err as Error).message}`.slice(0, 200));
  }
}


/**
 * Answers a matched history call; `HISTORY_DISABLED` (501) without a
 * database. `producer` is the ingress token that asks (null on the admin
 * port): the ladders it starts carry it.
 */
export async function answerHistory(
  service: HistoryService | null,
  route: HistoryRoute,
  req: IncomingMessage,
  url: URL,
  producer: string | null,
  now = Date.now(),
): Promise<{ status: number; body: unknown }> {
  if (route.kind !== 'recover') req.resume();
  if (!service) {
    req.resume();
    throw new NotifyError(ErrorCodes.HISTORY_DISABLED, 'delivery history needs a database: set NOTIFY_DATABASE_URL');
  }
  try {
    return await answer(service, route, req, url, producer, now);
  } catch (err) {
    if (databaseAway(err)) throw historyUnavailable(err);
    throw err;
  }
}

async function answer(service: HistoryService, route: HistoryRoute, req: IncomingMessage, url: URL, producer: string | null, now: number): Promise<{ status: number; body: unknown }> {
  switch (route.kind) {
    case 'get':
      return { status: 200, body: await service.get(route.id) };
    case 'list':
      return { status: 200, body: await service.list(parseListQuery(url.searchParams, now)) };
    case 'resend':
      return { status: 202, body: await service.resend(route.id, forceParam(url.searchParams), producer) };
    case 'recover': {
      const r = await service.recover(parseRecoverBody(await jsonBody(req), now), producer);
      if (r.stopped === null) return { status: 202, body: r };
      // Stopped part-way: the error's status (503: retry), with what was done so a retry is informed.
      return { status: statusForError(r.stopped.error.code), body: { error: r.stopped.error, ...r } };
    }
  }
}

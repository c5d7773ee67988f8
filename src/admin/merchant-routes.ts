/**
 * The merchant API on the admin port (DESIGN §10): create, list, show,
 * change, delete, rotate the secret, enable and disable. A new secret is in
 * the answer of the call that made it and nowhere else, ever.
 */
import type { IncomingMessage } from 'node:http';
import { parseDuration } from '../core/schedule.js';
import { ErrorCodes, NotifyError } from '../core/errors.js';
import { methodNotAllowed, readBody } from '../core/http-util.js';
import { isMerchantId } from '../merchants/merchant.js';
import type { MerchantStore } from '../merchants/store.js';

/** Largest merchant request body. */
const MAX_BODY = 64 * 1024;
/** Longest rotation grace: the bound on `merchants.rotationGrace`. */
const MAX_GRACE_MS = 30 * 86_400_000;

async function json(req: IncomingMessage): Promise<unknown> {
  const text = (await readBody(req, MAX_BODY)).toString('utf8');
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new NotifyError(ErrorCodes.BAD_JSON, `body is not valid JSON: ${(err as Error).message}`.slice(0, 200));
  }
}

/** The body of an action (rotate, enable, disable): an object, or nothing at all. */
async function actionBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const body = await json(req);
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new NotifyError(ErrorCodes.VALIDATION, 'body: must be a JSON object (or empty)', 'body');
  return body as Record<string, unknown>;
}

/**
 * Answers `/admin/merchants…`, or null when the path is not one of them.
 * `graceMs` is the default rotation grace (`merchants.rotationGrace`).
 */
export async function merchantRoute(
  store: MerchantStore | null,
  req: IncomingMessage,
  url: URL,
  graceMs: number,
): Promise<{ status: number; body: unknown } | null> {
  const m = /^\/admin\/merchants(?:\/([^/]+))?(?:\/(rotate-secret|enable|disable))?$/.exec(url.pathname);
  if (!m) return null;
  if (store === null) throw new NotifyError(ErrorCodes.MERCHANTS_DISABLED, 'merchants need a database: set NOTIFY_DATABASE_URL');
  const method = req.method ?? 'GET';
  let id: string | undefined;
  try {
    id = m[1] === undefined ? undefined : decodeURIComponent(m[1]);
  } catch {
    throw new NotifyError(ErrorCodes.VALIDATION, 'id: not a valid URL-encoded id', 'id');
  }
  // No merchant has another id; one with a NUL, which PostgreSQL refuses in text, was a 500.
  if (id !== undefined && !isMerchantId(id)) throw new NotifyError(ErrorCodes.MERCHANT_NOT_FOUND, `no merchant ${JSON.stringify(String(id).slice(0, 200))}`);
  const action = m[2];
  if (id === undefined) {
    if (method === 'GET' || method === 'HEAD') {
      const limitRaw = url.searchParams.get('limit') ?? '50';
      if (!/^\d{1,4}$/.test(limitRaw) || Number(limitRaw) < 1 || Number(limitRaw) > 1000) throw new NotifyError(ErrorCodes.VALIDATION, 'limit: 1 to 1000', 'limit');
      // The cursor is the last merchant id of the page before (an empty one: from the start, as before).
      const cursor = url.searchParams.get('cursor') || null;
      if (cursor !== null && !isMerchantId(cursor)) throw new NotifyError(ErrorCodes.VALIDATION, 'cursor: is not a cursor this API returned', 'cursor');
      return { status: 200, body: await store.list(cursor, Number(limitRaw)) };
    }
    if (method === 'POST') return { status: 201, body: await store.create(await json(req)) };
    throw methodNotAllowed(['GET', 'HEAD', 'POST']);
  }
  if (action !== undefined) {
    if (method !== 'POST') throw methodNotAllowed(['POST']);
    if (action === 'rotate-secret') {
      const body = await actionBody(req);
      let grace = graceMs;
      if (body.grace !== undefined) {
        const bad = (): NotifyError => new NotifyError(ErrorCodes.VALIDATION, 'grace: must be a duration such as 24h, at most 30d', 'grace');
        if (typeof body.grace !== 'string') throw bad();
        try {
          grace = parseDuration(body.grace, 'grace');
        } catch {
          throw bad();
        }
        if (grace > MAX_GRACE_MS) throw bad();
      }
      return { status: 200, body: await store.rotate(id, grace) };
    }
    const body = await actionBody(req);
    // Text PostgreSQL can store: a NUL is replaced, as the history does with an answer's.
    const reason = typeof body.reason === 'string' ? body.reason.slice(0, 500).replace(/\u0000/g, '\uFFFD') : 'disabled by an operator';
    return { status: 200, body: { merchant: await store.setEnabled(id, action === 'enable', reason) } };
  }
  switch (method) {
    case 'GET':
    case 'HEAD':
      return { status: 200, body: { merchant: await store.get(id) } };
    case 'PATCH': {
      const patch = await json(req);
      // The id is the path's: a body naming another merchant is a mistake to report, not a change to make to this one.
      const named = typeof patch === 'object' && patch !== null ? (patch as { id?: unknown }).id : undefined;
      if (named !== undefined && named !== id) throw new NotifyError(ErrorCodes.VALIDATION, `id: the body names ${JSON.stringify(named).slice(0, 200)}, the path ${JSON.stringify(id)} (an id cannot be changed)`, 'id');
      return { status: 200, body: await store.update(id, patch) };
    }
    case 'DELETE':
      await store.remove(id);
      return { status: 204, body: null };
    default:
      throw methodNotAllowed(['GET', 'HEAD', 'PATCH', 'DELETE']);
  }
}

/**
 * The history API on the ingress port (DESIGN §11): `GET /v1/notifications/<id>`,
 * `GET /v1/notifications?…`, `POST /v1/notifications/<id>/resend`,
 * `POST /v1/notifications:recover`. Kept apart from the submit routes of
 * `server.ts`, which only asks `match` and hands over.
 *
 * Visibility: any valid producer token reads and resends every notification
 * (producers of one daemon are one organisation's services; the token names
 * who started a ladder, it does not partition the history). With no token
 * configured the ingress is open, for reads as for submits.
 */
import type { IncomingMessage } from 'node:http';
import type { Config } from '../core/config.js';
import { ErrorCodes, NotifyError, toErrorData } from '../core/errors.js';
import type { BearerTokens } from '../core/http-util.js';
import type { Notification } from '../core/message.js';
import type { RunVia } from '../history/records.js';
import type { HistoryClaims } from '../history/claims.js';
import type { HistoryReader } from '../history/reader.js';
import { answerHistory, matchHistoryRoute } from '../history/routes.js';
import { HistoryService, type AdmitLadder } from '../history/service.js';

/** The history database as the API uses it: reads, and the claims of resends. */
export interface HistoryDb {
  readonly reader: HistoryReader;
  readonly claims: HistoryClaims;
}

export class IngressHistoryRoutes {
  private readonly service: HistoryService | null;

  constructor(
    db: HistoryDb | null,
    /** The ingress's own publish-and-record (`IngressServer.accept`), the ladder starting at `at`. */
    accept: (n: Notification, producer: string | null, via: RunVia, at: number) => Promise<{ run: string }>,
    config: () => Config,
    /** The ingress's refusals of a new notification (draining, blocked broker, merchant rules). */
    admit: AdmitLadder,
  ) {
    this.service = db === null ? null : new HistoryService(db.reader, db.claims, (n, via, producer, at) => accept(n, producer, via, at), () => config().limits, admit);
  }

  /**
   * Answers the request when it is a history call (after the same token
   * check as a submit), or null when it is not one. Refusals come back as
   * `{error}` for the server to send with its coded status.
   */
  async serve(req: IncomingMessage, path: string, tokens: BearerTokens): Promise<{ status: number; body: unknown } | { error: unknown } | null> {
    try {
      const route = matchHistoryRoute('/v1', req.method ?? 'GET', path);
      if (route === null) return null;
      const producer = tokens.match(req.headers.authorization);
      if (tokens.size > 0 && producer === null) throw new NotifyError(ErrorCodes.UNAUTHORIZED, 'missing or wrong bearer token');
      return await answerHistory(this.service, route, req, new URL(req.url ?? '/', 'http://ingress'), producer);
    } catch (error) {
      req.resume();
      // Something unexpected (a bug, not a refusal) goes up to the server's handler, which logs it and answers 500.
      if (toErrorData(error).code === ErrorCodes.INTERNAL) throw error;
      return { error };
    }
  }
}

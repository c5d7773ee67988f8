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
import type { Notification } from '../core/message.js';
import type { RunVia } from '../history/records.js';
import type { HistoryReader } from '../history/reader.js';
import { answerHistory, matchHistoryRoute, type HistoryRoute } from '../history/routes.js';
import { HistoryService } from '../history/service.js';

export class IngressHistoryRoutes {
  private readonly service: HistoryService | null;

  constructor(
    reader: HistoryReader | null,
    /** The ingress's own publish-and-record (`IngressServer.accept`). */
    accept: (n: Notification, producer: string | null, via: RunVia) => Promise<{ run: string }>,
    config: () => Config,
  ) {
    this.service = reader === null ? null : new HistoryService(reader, (n, via, producer) => accept(n, producer, via), () => config().limits);
  }

  /** The history call of this request, or null (throws a coded 405 for a wrong method on a history path). */
  match(method: string, path: string): HistoryRoute | null {
    return matchHistoryRoute('/v1', method, path);
  }

  /** Answers it, for `producer` (already authenticated). */
  answer(route: HistoryRoute, req: IncomingMessage, producer: string | null): Promise<{ status: number; body: unknown }> {
    return answerHistory(this.service, route, req, new URL(req.url ?? '/', 'http://ingress'), producer);
  }
}

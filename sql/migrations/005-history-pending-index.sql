-- Listing the pending notifications (GET /v1/notifications?status=pending,
-- `ctl find --status pending`) had no index to use: `pending` rows are few
-- among many delivered, so the planner read every row of every day's
-- partition, and each next page scanned back to the oldest day kept, until
-- the statement timeout answered 503. Partial indexes, as the dead ones have
-- (002), stay as small as what is under way.
--
-- Built in this migration's transaction: writes to the table wait while it
-- scans the days kept. The recorder's batches wait in P.history (nothing is
-- lost); a resend, recover or redrive meanwhile waits too, and answers 503
-- HISTORY_UNAVAILABLE past the history's statement timeout (10 s). On a
-- large history, expect it to take a while: migrate (`notifyd migrate`)
-- before a quiet hour's restart.

CREATE INDEX notify_notifications_pending_idx ON notify_notifications (created_at DESC, id DESC) WHERE status = 'pending';
CREATE INDEX notify_notifications_pending_merchant_idx ON notify_notifications (merchant, created_at DESC, id DESC) WHERE status = 'pending';

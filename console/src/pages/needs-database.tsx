// What the history and merchant pages say when the daemon cannot serve them:
// an older version without the endpoint, or no database configured.
import { ApiError } from '../api';
import { Unavailable } from '../components';

/**
 * The "how to enable" note. `err` is what the API answered: a 501 with the
 * feature's `*_DISABLED` code (no database) or a missing endpoint.
 */
export function NeedsDatabase({ feature, err, what }: { feature: string; err: unknown; what: string }) {
  const disabled = err instanceof ApiError && err.status === 501;
  return (
    <Unavailable title={`${feature} is not enabled`}>
      {disabled ? (
        <p>
          This daemon runs without a database (<code>{(err as ApiError).code}</code>). {what}
        </p>
      ) : (
        <p>This version of notifyd does not serve it yet (the admin API has no such endpoint). {what}</p>
      )}
      <p>To enable it, give notifyd a PostgreSQL database and restart it:</p>
      <pre>
        <code>NOTIFY_DATABASE_URL=postgres://notifyd:…@db.example:5432/notifyd notifyd start</code>
      </pre>
      <p class="muted small">Merchants and delivery history share that database (DESIGN §10–11).</p>
    </Unavailable>
  );
}

// The token form: shown when the admin port answers 401. The token is tried
// before it is kept, so a wrong one is refused here, with a clear message.
import { useState } from 'preact/hooks';
import { ApiError, getStatus } from '../api';
import { acceptToken } from '../auth';
import { ErrorNotice } from '../components';

export function Login({ note }: { note: string | null }) {
  const [token, setToken] = useState('');
  const [refused, setRefused] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [trying, setTrying] = useState(false);

  async function onSubmit(e: Event): Promise<void> {
    e.preventDefault();
    const t = token.trim();
    if (!t) return;
    setTrying(true);
    setRefused(false);
    setError(null);
    try {
      await getStatus(t);
      acceptToken(t);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) setRefused(true);
      else setError(err);
    } finally {
      setTrying(false);
    }
  }

  return (
    <section class="card login" aria-labelledby="login-title">
      <h1 id="login-title">Admin token</h1>
      <p>
        This daemon's admin port needs its bearer token (<code>NOTIFY_ADMIN_TOKEN</code> or <code>admin.token</code>). It is kept in this tab only
        (sessionStorage) and sent with every request.
      </p>
      {note ? <p class="notice notice-info">{note}</p> : null}
      {refused ? (
        <p class="notice notice-bad" role="alert" id="login-refused">
          <strong>The daemon refused this token.</strong> Check it against the daemon's admin token and try again.
        </p>
      ) : null}
      <ErrorNotice error={error} what="reach the daemon" />
      <form class="stack-form" onSubmit={(e) => void onSubmit(e)}>
        <label for="token">Token</label>
        <input
          id="token"
          type="password"
          autocomplete="off"
          spellcheck={false}
          required
          value={token}
          aria-invalid={refused}
          aria-describedby={refused ? 'login-refused' : undefined}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
        />
        <div>
          <button type="submit" class="btn btn-primary" disabled={trying}>
            {trying ? 'Checking…' : 'Continue'}
          </button>
        </div>
      </form>
    </section>
  );
}

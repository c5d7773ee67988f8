// The frame: header and navigation, the token gate, and the page for the hash.
import { useEffect, useRef, useState } from 'preact/hooks';
import { getStatus } from './api';
import { acceptToken, authState, forgetToken, onAuthChange, storedToken, type AuthState } from './auth';
import { Merchants } from './pages/merchants';
import { Notification } from './pages/notification';
import { Login } from './pages/login';
import { Origins } from './pages/origins';
import { Overview } from './pages/overview';
import { Parked } from './pages/parked';
import { href, useRoute } from './router';

const PAGES = [
  { page: 'overview', label: 'Overview' },
  { page: 'origins', label: 'Origins' },
  { page: 'parked', label: 'Parked' },
  { page: 'notifications', label: 'Notification' },
  { page: 'merchants', label: 'Merchants' },
] as const;

function useAuth(): AuthState {
  const [s, setS] = useState(authState());
  useEffect(() => onAuthChange(setS), []);
  return s;
}

export function App() {
  const auth = useAuth();
  const route = useRoute();
  const main = useRef<HTMLElement>(null);
  const known = PAGES.find((p) => p.page === route.page);

  // First call without asking: a loopback daemon without a token just answers.
  useEffect(() => {
    if (auth.phase !== 'checking') return;
    getStatus().then(
      () => acceptToken(storedToken()),
      () => {
        // A 401 has already switched to the form; anything else is for the pages to show.
        if (authState().phase === 'checking') acceptToken(storedToken());
      },
    );
  }, [auth.phase]);

  useEffect(() => {
    document.title = `${known?.label ?? 'Not found'} · notifyd console`;
  }, [known]);

  // After a navigation, keyboard and screen-reader users start at the new page, not at the link they left.
  const first = useRef(true);
  useEffect(() => {
    if (first.current) first.current = false;
    else main.current?.focus();
  }, [route.page]);

  return (
    <>
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), main.current?.focus())}>
        Skip to content
      </a>
      <header class="top">
        <p class="brand">
          <span class="brand-mark" aria-hidden="true">
            n
          </span>
          notifyd <span class="muted">console</span>
        </p>
        {auth.phase === 'ready' ? (
          <nav aria-label="Pages">
            <ul>
              {PAGES.map((p) => (
                <li key={p.page}>
                  <a href={href(p.page)} aria-current={route.page === p.page ? 'page' : undefined}>
                    {p.label}
                  </a>
                </li>
              ))}
            </ul>
          </nav>
        ) : null}
        {auth.phase === 'ready' && storedToken() ? (
          <button type="button" class="btn btn-quiet forget" onClick={forgetToken}>
            Forget token
          </button>
        ) : null}
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        {auth.phase === 'checking' ? <p class="muted">Connecting…</p> : null}
        {auth.phase === 'login' ? <Login note={auth.note} /> : null}
        {auth.phase === 'ready' ? <Page page={route.page} rest={route.rest} /> : null}
      </main>
    </>
  );
}

function Page({ page, rest }: { page: string; rest: string | null }) {
  switch (page) {
    case 'overview':
      return <Overview />;
    case 'origins':
      return <Origins />;
    case 'parked':
      return <Parked />;
    case 'notifications':
      return <Notification id={rest} />;
    case 'merchants':
      return <Merchants />;
    default:
      return (
        <p class="notice notice-info">
          No page <code>{page}</code>. <a href={href('overview')}>Go to the overview</a>.
        </p>
      );
  }
}

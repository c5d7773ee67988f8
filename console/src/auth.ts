// The admin bearer token: asked once, kept in sessionStorage (gone when the
// tab closes, never in a cookie), sent on every API call. A 401 anywhere
// sends the whole page back to the token form.

const KEY = 'notifyd.admin-token';

export type AuthPhase = 'checking' | 'ready' | 'login';

export interface AuthState {
  readonly phase: AuthPhase;
  /** Why the token form is shown (a refused or changed token), for the form to say. */
  readonly note: string | null;
}

let state: AuthState = { phase: 'checking', note: null };
const listeners = new Set<(s: AuthState) => void>();

function set(next: AuthState): void {
  state = next;
  for (const l of listeners) l(state);
}

/** The stored token, or null (the daemon may need none: loopback without `admin.token`). */
export function storedToken(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

/** Keeps a token the daemon accepted and lets the pages run. */
export function acceptToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(KEY);
  else sessionStorage.setItem(KEY, token);
  set({ phase: 'ready', note: null });
}

/** Forgets the token and shows the form. */
export function forgetToken(): void {
  sessionStorage.removeItem(KEY);
  set({ phase: 'login', note: null });
}

/** An API call got 401: the daemon wants a token, or no longer takes the stored one (a reload may have changed it). */
export function unauthorized(sentToken: string | null): void {
  // A refusal of a token replaced since (a request still under way when the operator entered the new one, or sent
  // with none before one was needed) says nothing of the one stored now.
  if (storedToken() !== sentToken) return;
  if (sentToken !== null) sessionStorage.removeItem(KEY);
  if (state.phase === 'login') return;
  set({ phase: 'login', note: sentToken === null ? null : 'The daemon no longer accepts the stored token (it may have been changed). Enter the current one.' });
}

export function authState(): AuthState {
  return state;
}

/** Calls `fn` on every change; returns the unsubscribe function. */
export function onAuthChange(fn: (s: AuthState) => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

// Small pieces the pages share. State is always written out in words; the
// colour only repeats it.
import type { ComponentChildren } from 'preact';
import { ApiError } from './api';

const TONE: Readonly<Record<string, string>> = {
  running: 'good',
  ok: 'good',
  connected: 'good',
  delivered: 'good',
  success: 'good',
  enabled: 'good',
  paused: 'warn',
  limited: 'warn',
  starting: 'info',
  draining: 'info',
  retry: 'warn',
  skipped: 'warn',
  backoff: 'bad',
  crashloop: 'bad',
  stopped: 'bad',
  failing: 'bad',
  disconnected: 'bad',
  dead: 'bad',
  disabled: 'bad',
};

/** A state as a labelled badge: the word, with a colour and a shape that repeat it. */
export function StateBadge({ state }: { state: string }) {
  const tone = TONE[state] ?? 'info';
  return <span class={`badge badge-${tone} state-${state.replace(/[^a-z0-9-]/gi, '')}`}>{state}</span>;
}

/** An API error, worded for an operator. */
export function ErrorNotice({ error, what }: { error: unknown; what: string }) {
  if (!error) return null;
  const e = error instanceof ApiError ? error : null;
  return (
    <div class="notice notice-bad" role="alert">
      <strong>Could not {what}.</strong>{' '}
      {e ? (
        <>
          {e.status ? `HTTP ${e.status}` : ''} <code>{e.code}</code>: {e.message}
        </>
      ) : (
        String((error as Error)?.message ?? error)
      )}
    </div>
  );
}

/** A page whose feature this daemon does not have, or has switched off. */
export function Unavailable({ title, children }: { title: string; children: ComponentChildren }) {
  return (
    <section class="notice notice-info unavailable" aria-labelledby="unavailable-title">
      <h2 id="unavailable-title">{title}</h2>
      {children}
    </section>
  );
}

/** A heading and its content. */
export function Section({ title, id, children, actions }: { title: string; id: string; children: ComponentChildren; actions?: ComponentChildren }) {
  return (
    <section class="card" aria-labelledby={id}>
      <div class="card-head">
        <h2 id={id}>{title}</h2>
        {actions ? <div class="card-actions">{actions}</div> : null}
      </div>
      {children}
    </section>
  );
}

/** Where results of actions are announced (screen readers read it; everyone sees it). */
export function Live({ message, tone = 'info' }: { message: string | null; tone?: 'info' | 'good' | 'bad' }) {
  return (
    <p class={message ? `live notice notice-${tone}` : 'live'} role="status" aria-live="polite">
      {message ?? ''}
    </p>
  );
}

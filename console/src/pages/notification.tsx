// Look up one notification by id: its status and the timeline of its
// attempts, from the delivery history (PostgreSQL); resend it.
import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, getNotification, isDisabled, isMissingEndpoint, resendNotification, type NotificationTimeline } from '../api';
import { ErrorNotice, Live, Section, StateBadge } from '../components';
import * as f from '../format';
import { href } from '../router';
import { NeedsDatabase } from './needs-database';

type Lookup = { state: 'idle' } | { state: 'loading'; id: string } | { state: 'done'; id: string; data: NotificationTimeline } | { state: 'failed'; id: string; error: unknown };

export function Notification({ id }: { id: string | null }) {
  const [draft, setDraft] = useState(id ?? '');
  const [lookup, setLookup] = useState<Lookup>({ state: 'idle' });
  // `target`: the notification the answer is about. A resend answered after the page moved on to another id must
  // neither show there nor turn its "Resend anyway" into a forced resend of the other one.
  const [resend, setResend] = useState<{ target: string; text: string; tone: 'good' | 'bad'; pending?: boolean } | null>(null);
  /** The notification a resend is under way for, if any (the page may have moved on to another meanwhile). */
  const [resending, setResending] = useState<string | null>(null);
  const [again, setAgain] = useState(0);

  useEffect(() => {
    // Follow the address (a link from the Parked page, back/forward); never wipe what is being typed.
    // A resend's answer is kept across lookups: it shows again when the page comes back to its notification.
    if (id) setDraft(id);
    if (!id) {
      setLookup({ state: 'idle' });
      return;
    }
    let current = true;
    setLookup({ state: 'loading', id });
    getNotification(id).then(
      (data) => current && setLookup({ state: 'done', id, data }),
      (error: unknown) => current && setLookup({ state: 'failed', id, error }),
    );
    return () => {
      current = false;
    };
  }, [id, again]);

  function onSearch(e: Event): void {
    e.preventDefault();
    const wanted = draft.trim();
    if (!wanted) return;
    // The id goes into the address, so a lookup can be linked and reloaded.
    if (wanted === id) setAgain((n) => n + 1);
    else location.hash = href('notifications', wanted);
  }

  async function onResend(target: string, force = false): Promise<void> {
    setResending(target);
    setResend(null);
    try {
      await resendNotification(target, force);
      setResend({ target, text: `Notification ${target} was sent again (a new attempt at tier 0).`, tone: 'good' });
    } catch (err) {
      // Still under way: sending it again now means the merchant may get it twice at once; the operator decides.
      if (err instanceof ApiError && err.code === 'NOTIFICATION_PENDING') setResend({ target, text: `${target} is still pending (its attempts are under way).`, tone: 'bad', pending: true });
      else setResend({ target, text: `Resend failed: ${(err as Error).message}`, tone: 'bad' });
    } finally {
      // Another notification's resend may have started meanwhile: only this one's ends here.
      setResending((current) => (current === target ? null : current));
    }
  }

  const shown = lookup.state === 'done' && resend?.target === lookup.id ? resend : null;

  return (
    <>
      <div class="page-head">
        <h1>Notification</h1>
        <p class="muted">What happened to one notification: every attempt, when, and what the merchant answered.</p>
      </div>
      <Section title="Look up" id="lookup-title">
        <form class="inline-form" role="search" onSubmit={onSearch}>
          <label for="lookup-id">Notification id</label>
          <input id="lookup-id" type="search" value={draft} placeholder="e.g. order-20240001" autocomplete="off" spellcheck={false} required onInput={(e) => setDraft((e.target as HTMLInputElement).value)} />
          <button type="submit" class="btn btn-primary">
            Look up
          </button>
        </form>
      </Section>
      {lookup.state === 'loading' ? <p class="muted">Looking up {lookup.id}…</p> : null}
      {lookup.state === 'failed' ? <LookupFailed id={lookup.id} error={lookup.error} /> : null}
      {lookup.state === 'done' ? (
        <Timeline
          data={lookup.data}
          resend={
            <>
              <button type="button" class="btn" disabled={resending === lookup.id} onClick={() => void onResend(lookup.id)}>
                {resending === lookup.id ? 'Resending…' : 'Resend'}
              </button>
              {shown?.pending ? (
                <button type="button" class="btn" disabled={resending === lookup.id} onClick={() => void onResend(shown.target, true)}>
                  Resend anyway
                </button>
              ) : null}
            </>
          }
          message={<Live message={shown?.text ?? null} tone={shown?.tone} />}
        />
      ) : null}
    </>
  );
}

function LookupFailed({ id, error }: { id: string; error: unknown }) {
  if (isMissingEndpoint(error) || isDisabled(error, 'HISTORY_DISABLED')) {
    return <NeedsDatabase feature="Delivery history" err={error} what={`With it, this page shows every attempt of ${id} and can resend it.`} />;
  }
  if (error instanceof ApiError && error.status === 404) {
    return (
      <div class="notice notice-info" role="status">
        No notification <code>{id}</code> in the history (it may be older than the retention, or the id is mistyped).
      </div>
    );
  }
  return <ErrorNotice error={error} what={`look up ${id}`} />;
}

/** Which ladder an attempt is on, when there was more than one (a resend, recover or redrive numbers its attempts from 1 again). */
function runLabel(data: NotificationTimeline, run: string | undefined): string {
  const runs = data.runs ?? [];
  if (runs.length < 2 || run === undefined) return '';
  const i = runs.findIndex((r) => r.run === run);
  return i < 0 ? ' · run ?' : ` · run ${i + 1} (${runs[i]!.via})`;
}

function Timeline({ data, resend, message }: { data: NotificationTimeline; resend: ComponentChildren; message: ComponentChildren }) {
  const n = data.notification;
  return (
    <Section title={`Notification ${n.id}`} id="timeline-title" actions={resend}>
      {message}
      <dl class="facts">
        <dt>Status</dt>
        <dd>
          <StateBadge state={n.status} />
        </dd>
        <dt>Merchant</dt>
        <dd>{n.merchant ?? '—'}</dd>
        <dt>URL</dt>
        <dd class="wrap">
          <code>{n.url}</code>
        </dd>
        <dt>Attempts</dt>
        <dd>{n.attempts}</dd>
        <dt>Created</dt>
        <dd>{f.dateTime(n.createdAt)}</dd>
      </dl>
      {data.attempts.length === 0 ? (
        <p class="empty">No attempt yet.</p>
      ) : (
        <ol class="timeline">
          {data.attempts.map((a) => (
            <li key={`${a.run ?? ''}/${a.attempt}`}>
              <p class="timeline-head">
                <strong>Attempt {a.attempt + 1}</strong>
                {runLabel(data, a.run)} · tier {a.tier} · {f.dateTime(a.startedAt)}
                {a.durationMs === null ? '' : ` · ${Math.round(a.durationMs)} ms`}
              </p>
              <p>
                <StateBadge state={a.skipped ? 'skipped' : a.outcome} />{' '}
                {a.skipped ? `not sent${a.reason ? `: ${a.reason}` : ''}` : `${a.status === null ? 'no answer' : `status ${a.status}`}${a.reason ? ` · ${a.reason}` : ''}`}
              </p>
              {a.error ? <p class="muted wrap">{a.error}</p> : null}
              {a.answer ? (
                <p class="muted wrap">
                  Answer: <code>{a.answer}</code>
                </p>
              ) : null}
            </li>
          ))}
        </ol>
      )}
    </Section>
  );
}

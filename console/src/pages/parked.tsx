// What sits in P.dead, by reason, and redrive. Listing is not free (the
// daemon reads each listed message and puts it back at the tail), so this
// page lists once and on demand, never on a timer.
import { useEffect, useRef, useState } from 'preact/hooks';
import { listDead, redrive, type DeadListing, type RedriveResult } from '../api';
import { ErrorNotice, Live, Section } from '../components';
import * as f from '../format';
import { href } from '../router';
import { usePoll } from '../use-poll';

const SIZES = [50, 200, 1000] as const;
/** Reasons redrive steps over unless forced (they would fail the same way again). */
const STICKY = new Set(['blocked', 'invalid']);

function sortedReasons(byReason: Readonly<Record<string, number>>): [string, number][] {
  return Object.entries(byReason).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}

function RedriveForm({ onDone }: { onDone: () => void }) {
  const [limit, setLimit] = useState('100');
  const [force, setForce] = useState(false);
  const [running, setRunning] = useState(false);
  const [result, setResult] = useState<{ text: string; tone: 'good' | 'bad' } | null>(null);

  async function onSubmit(e: Event): Promise<void> {
    e.preventDefault();
    const n = Number(limit);
    if (!Number.isInteger(n) || n < 1) {
      setResult({ text: 'Limit must be a whole number of at least 1.', tone: 'bad' });
      return;
    }
    setRunning(true);
    setResult(null);
    try {
      const r: RedriveResult = await redrive(n, force);
      setResult({ text: `Redrive done: moved ${r.moved}, skipped ${r.skipped}, remaining ${r.remaining}.${r.superseded ? ` Dropped ${r.superseded} resent since they were parked.` : ''}`, tone: 'good' });
      onDone();
    } catch (err) {
      setResult({ text: `Redrive failed: ${(err as Error).message}`, tone: 'bad' });
    } finally {
      setRunning(false);
    }
  }

  return (
    <Section title="Redrive" id="redrive-title">
      <p class="muted small">
        Moves parked notifications from the head of the dead queue back to tier 0, keeping their history. <code>blocked</code> and <code>invalid</code> ones
        would fail the same way again: they are stepped over unless forced.
      </p>
      <form class="inline-form" onSubmit={(e) => void onSubmit(e)}>
        <label for="redrive-limit">Limit</label>
        <input id="redrive-limit" type="number" inputMode="numeric" min={1} step={1} required value={limit} onInput={(e) => setLimit((e.target as HTMLInputElement).value)} />
        <span class="check">
          <input id="redrive-force" type="checkbox" checked={force} onChange={(e) => setForce((e.target as HTMLInputElement).checked)} />
          <label for="redrive-force">Force (also blocked and invalid)</label>
        </span>
        <button type="submit" class="btn btn-primary" disabled={running}>
          {running ? 'Redriving…' : 'Redrive'}
        </button>
      </form>
      <Live message={result?.text ?? null} tone={result?.tone} />
    </Section>
  );
}

export function Parked() {
  const [size, setSize] = useState<number>(SIZES[0]);
  // Listed on demand only: each listing reads P.dead and moves what it lists to its tail.
  const listing = usePoll<DeadListing>(() => listDead(size), null, { onShow: false });
  const firstSize = useRef(true);
  useEffect(() => {
    // A new size lists again (the first one was listed on mount).
    if (firstSize.current) firstSize.current = false;
    else listing.refresh();
  }, [size]);

  const data = listing.data;
  const shown = data?.messages.length ?? 0;

  return (
    <>
      <div class="page-head">
        <h1>Parked</h1>
        <p class="muted">The dead queue: notifications whose last tier failed, or that could never succeed.</p>
      </div>
      <ErrorNotice error={listing.error} what="list the dead queue" />

      <div class="columns">
        <Section title="By reason" id="reasons-title">
          {!data ? (
            <p class="muted">{listing.error ? '—' : 'Loading…'}</p>
          ) : (
            <div class="stats">
              <p class="stat">
                <span class="stat-value" data-testid="parked-total">
                  {f.count(data.total)}
                </span>
                <span class="stat-label">parked</span>
              </p>
              {sortedReasons(data.byReason).map(([reason, n]) => (
                <p class="stat" key={reason}>
                  <span class="stat-value">{f.count(n)}</span>
                  <span class="stat-label">
                    <code>{reason}</code>
                    {STICKY.has(reason) ? ' (needs force)' : ''}
                  </span>
                </p>
              ))}
            </div>
          )}
        </Section>
        {data && data.byMerchant && Object.keys(data.byMerchant).some((m) => m !== '-') ? (
          <Section title="By merchant" id="merchants-title">
            <div class="stats">
              {sortedReasons(data.byMerchant).map(([merchant, n]) => (
                <p class="stat" key={merchant}>
                  <span class="stat-value">{f.count(n)}</span>
                  <span class="stat-label">{merchant === '-' ? 'no merchant' : <code>{merchant}</code>}</span>
                </p>
              ))}
            </div>
          </Section>
        ) : null}
        <RedriveForm onDone={listing.refresh} />
      </div>

      <Section
        title="In the dead queue"
        id="parked-title"
        actions={
          <form
            class="inline-form"
            onSubmit={(e) => {
              e.preventDefault();
              listing.refresh();
            }}
          >
            <label for="parked-size">Show up to</label>
            <select id="parked-size" value={String(size)} onChange={(e) => setSize(Number((e.target as HTMLSelectElement).value))}>
              {SIZES.map((n) => (
                <option key={n} value={String(n)}>
                  {n}
                </option>
              ))}
            </select>
            <button type="submit" class="btn">
              Refresh
            </button>
          </form>
        }
      >
        {!data ? null : (
          <>
            <p class="muted small">
              {data.total > shown
                ? `The first ${shown} of ${data.total} (counts by reason are over these). Listing moved them to the back of the queue (nothing is consumed), so a redrive with a small limit starts with the ones after them.`
                : `All ${data.total}, oldest first. Listing reads each message and puts it back in the same order; nothing is consumed.`}{' '}
              Listed {f.dateTime(listing.at)}.
            </p>
            {shown === 0 ? (
              <p class="empty">Nothing is parked.</p>
            ) : (
              <div class="scroll">
                <table class="grid parked">
                  <thead>
                    <tr>
                      <th scope="col">Id</th>
                      <th scope="col">Reason</th>
                      <th scope="col">Merchant</th>
                      <th scope="col" class="num">Tier</th>
                      <th scope="col" class="num">Attempts</th>
                      <th scope="col">Last error</th>
                      <th scope="col">Parked</th>
                      <th scope="col">URL</th>
                    </tr>
                  </thead>
                  <tbody>
                    {data.messages.map((m, i) => (
                      <tr key={`${m.id}-${i}`}>
                        <th scope="row" data-label="Id" class="wrap">
                          <a href={href('notifications', m.id)}>{m.id}</a>
                        </th>
                        <td data-label="Reason">
                          <code>{m.reason}</code>
                          {m.redriven ? <span class="muted small"> · redriven {m.redriven}×</span> : null}
                        </td>
                        <td data-label="Merchant">{m.merchant ? <code>{m.merchant}</code> : '—'}</td>
                        <td data-label="Tier" class="num">
                          {m.tier ?? '—'}
                        </td>
                        <td data-label="Attempts" class="num">
                          {m.attempts ?? '—'}
                        </td>
                        <td data-label="Last error" class="text">
                          {m.lastError ?? '—'}
                        </td>
                        <td data-label="Parked">
                          <span title={f.dateTime(m.deadAt)}>{f.ago(m.deadAt)}</span>
                        </td>
                        <td data-label="URL" class="wrap">
                          {m.url ? <code>{m.url}</code> : '—'}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </>
        )}
      </Section>
    </>
  );
}

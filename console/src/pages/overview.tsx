// Tiers, ingress, broker and queue depths, polled every few seconds; rates
// and lateness come from two /metrics scrapes, computed here so the daemon
// does no extra work for the page.
import { useRef, useState } from 'preact/hooks';
import { getMetricsText, getStatus, isPaused, setTierPaused, type DaemonStatus, type TierStatus } from '../api';
import { ErrorNotice, Live, Section, StateBadge } from '../components';
import * as f from '../format';
import { parseExposition, ratePerSecond, select, windowQuantile, type Scrape } from '../prometheus';
import { usePoll } from '../use-poll';

/** How often the overview asks (ms). */
export const OVERVIEW_POLL_MS = 3000;
/** Rates and p99 are over about this long: long enough to smooth, short enough to be "now". */
const WINDOW_MS = 15_000;

interface TierFigures {
  readonly attemptsPerSecond: number | null;
  readonly latenessP99: number | null;
}

interface Snapshot {
  /** When the status request went out: a pause/resume answered later is newer than this status. */
  readonly askedAt: number;
  readonly status: DaemonStatus;
  readonly scrape: Scrape | null;
  readonly metricsError: unknown;
  readonly figures: ReadonlyMap<number, TierFigures>;
  readonly windowSeconds: number | null;
  readonly queues: readonly { queue: string; messages: number }[];
}

/** The oldest kept scrape no older than the window, so a rate spans as much of it as we have. */
function baseline(history: readonly Scrape[], cur: Scrape): Scrape | null {
  return history.find((s) => s !== cur && cur.at - s.at <= WINDOW_MS + 1000) ?? null;
}

/** Queue order as an operator reads it: work and wait queues by tier, then the rest. */
function queueOrder(name: string): [number, number, string] {
  const m = /\.(work|wait)\.(\d+)$/.exec(name);
  if (m) return [Number(m[2]), m[1] === 'work' ? 0 : 1, name];
  return [Number.MAX_SAFE_INTEGER, 0, name];
}

/** `work.0` for `<prefix>.work.0`: the prefix is in the page head already. */
function shortQueue(name: string, prefix: string | undefined): string {
  return prefix && name.startsWith(`${prefix}.`) ? name.slice(prefix.length + 1) : name;
}

export function Overview() {
  const history = useRef<Scrape[]>([]);
  // What a pause/resume answered, and when; shown until a status asked for after it arrives.
  const [override, setOverride] = useState<ReadonlyMap<number, { tier: TierStatus; at: number }>>(new Map());
  const [busyTier, setBusyTier] = useState<number | null>(null);
  const [message, setMessage] = useState<{ text: string; tone: 'good' | 'bad' } | null>(null);

  const polled = usePoll<Snapshot>(async () => {
    const askedAt = Date.now();
    const [status, metrics] = await Promise.all([getStatus(), getMetricsText().then((t) => ({ t, at: Date.now() }), (err: unknown) => ({ err }))]);
    if ('err' in metrics) return { askedAt, status, scrape: null, metricsError: metrics.err, figures: new Map(), windowSeconds: null, queues: [] };
    const scrape = parseExposition(metrics.t, metrics.at);
    history.current = [...history.current.filter((s) => scrape.at - s.at <= WINDOW_MS + 1000), scrape];
    const prev = baseline(history.current, scrape);
    const figures = new Map<number, TierFigures>();
    for (const t of status.tiers) {
      const tier = { tier: String(t.index) };
      figures.set(t.index, {
        attemptsPerSecond: prev ? ratePerSecond(prev, scrape, 'notify_attempts_total', tier) : null,
        latenessP99: prev ? windowQuantile(prev, scrape, 'notify_schedule_lateness_seconds', 0.99, tier) : null,
      });
    }
    const queues = select(scrape, 'notify_queue_messages')
      .map((s) => ({ queue: s.labels.queue ?? '?', messages: s.value }))
      .sort((a, b) => {
        const x = queueOrder(a.queue);
        const y = queueOrder(b.queue);
        return x[0] - y[0] || x[1] - y[1] || x[2].localeCompare(y[2]);
      });
    return { askedAt, status, scrape, metricsError: null, figures, windowSeconds: prev ? Math.round((scrape.at - prev.at) / 1000) : null, queues };
  }, OVERVIEW_POLL_MS);

  const snap = polled.data;

  async function toggle(t: TierStatus): Promise<void> {
    const pause = !isPaused(t);
    setBusyTier(t.index);
    setMessage(null);
    try {
      const next = await setTierPaused(t.index, pause);
      setOverride((m) => new Map(m).set(t.index, { tier: next, at: Date.now() }));
      setMessage({ text: `Tier ${t.index} ${pause ? 'paused' : 'resumed'}: now ${next.state}.`, tone: 'good' });
      polled.refresh();
    } catch (err) {
      setMessage({ text: `Tier ${t.index} was not ${pause ? 'paused' : 'resumed'}: ${(err as Error).message}`, tone: 'bad' });
    } finally {
      setBusyTier(null);
    }
  }

  if (!snap) {
    return polled.error ? <ErrorNotice error={polled.error} what="read the daemon's status" /> : <p class="muted">Loading…</p>;
  }
  const { status } = snap;
  const tiers = status.tiers.map((t) => {
    const o = override.get(t.index);
    return o && o.at > snap.askedAt ? o.tier : t;
  });
  const span = snap.windowSeconds === null ? 'after the next refresh' : `over the last ${snap.windowSeconds} s`;

  return (
    <>
      <div class="page-head">
        <h1>Overview</h1>
        <p class="muted refreshed" aria-live="off">
          {status.prefix ? (
            <>
              prefix <code>{status.prefix}</code> ·{' '}
            </>
          ) : null}
          refreshed {f.dateTime(polled.at)} (every {OVERVIEW_POLL_MS / 1000} s)
        </p>
      </div>
      <ErrorNotice error={polled.error} what="refresh (showing the last answer)" />
      <Live message={message?.text ?? null} tone={message?.tone} />

      <Section title="Tiers" id="tiers-title">
        <table class="grid" aria-describedby="tiers-note">
          <thead>
            <tr>
              <th scope="col">Tier</th>
              <th scope="col">Delay</th>
              <th scope="col">State</th>
              <th scope="col" class="num">PID</th>
              <th scope="col">Broker node</th>
              <th scope="col" class="num">Restarts</th>
              <th scope="col" class="num">In flight</th>
              <th scope="col" class="num">Attempts/s</th>
              <th scope="col" class="num">Lateness p99</th>
              <th scope="col">
                <span class="sr-only">Action</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {tiers.map((t) => {
              const fig = snap.figures.get(t.index);
              const paused = isPaused(t);
              return (
                <tr key={t.index} data-tier={t.index}>
                  <th scope="row" data-label="Tier">
                    {t.index}
                  </th>
                  <td data-label="Delay">{f.delay(t.delayMs)}</td>
                  <td data-label="State" class="tier-state">
                    <StateBadge state={t.state} />
                  </td>
                  <td data-label="PID" class="num">
                    {t.pid ?? '—'}
                  </td>
                  <td data-label="Broker node" class="tier-node">
                    {t.brokerNode ? <code>{t.brokerNode}</code> : '—'}
                  </td>
                  <td data-label="Restarts" class="num">
                    {t.restarts}
                  </td>
                  <td data-label="In flight" class="num">
                    {t.inflight}
                  </td>
                  <td data-label="Attempts/s" class="num">
                    {f.rate(fig?.attemptsPerSecond ?? null)}
                  </td>
                  <td data-label="Lateness p99" class="num">
                    {f.seconds(fig?.latenessP99 ?? null)}
                  </td>
                  <td class="actions">
                    <button
                      type="button"
                      class={paused ? 'btn btn-primary' : 'btn'}
                      disabled={busyTier === t.index}
                      aria-label={`${paused ? 'Resume' : 'Pause'} tier ${t.index}`}
                      onClick={() => void toggle(t)}
                    >
                      {paused ? 'Resume' : 'Pause'}
                    </button>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
        <p id="tiers-note" class="muted small">
          Attempts/s and lateness p99 (attempt start − due time) are {span}; a dash means no attempts in that time. Pausing a tier stops its consumer; its
          notifications wait in its work queue.
        </p>
        {snap.metricsError ? <ErrorNotice error={snap.metricsError} what="read /metrics (rates and queue depths)" /> : null}
      </Section>

      <div class="columns">
        <Section title="Ingress" id="ingress-title">
          <dl class="facts">
            <dt>State</dt>
            <dd>
              <StateBadge state={status.ingress.state} />
            </dd>
            <dt>Port</dt>
            <dd>{status.ingress.port ?? '—'}</dd>
            <dt>PID</dt>
            <dd>{status.ingress.pid ?? '—'}</dd>
            <dt>Restarts</dt>
            <dd>{status.ingress.restarts}</dd>
            <dt>Broker node</dt>
            <dd>{status.ingress.brokerNode ? <code>{status.ingress.brokerNode}</code> : '—'}</dd>
          </dl>
        </Section>
        {status.recorder ? (
          <Section title="History recorder" id="recorder-title">
            <dl class="facts">
              <dt>State</dt>
              <dd>
                <StateBadge state={status.recorder.state} />
              </dd>
              <dt>PID</dt>
              <dd>{status.recorder.pid ?? '—'}</dd>
              <dt>Restarts</dt>
              <dd>{status.recorder.restarts}</dd>
              <dt>Broker node</dt>
              <dd>{status.recorder.brokerNode ? <code>{status.recorder.brokerNode}</code> : '—'}</dd>
            </dl>
          </Section>
        ) : null}
        <Section title="Broker" id="broker-title">
          <dl class="facts">
            <dt>Link</dt>
            <dd>
              <StateBadge state={status.broker.connected ? 'connected' : 'disconnected'} />
            </dd>
            <dt>Master's node</dt>
            <dd data-testid="broker-node">{status.broker.node ? <code>{status.broker.node}</code> : '—'}</dd>
            <dt>Nodes</dt>
            <dd class="wrap">
              <code>{status.broker.url ?? '—'}</code>
            </dd>
          </dl>
        </Section>
        <Section title="Queue depths" id="queues-title">
          {snap.queues.length === 0 ? (
            <p class="muted">No queue samples yet (sampled every few seconds once the broker is connected).</p>
          ) : (
            <table class="grid compact">
              <thead>
                <tr>
                  <th scope="col">Queue</th>
                  <th scope="col" class="num">
                    Ready messages
                  </th>
                </tr>
              </thead>
              <tbody>
                {snap.queues.map((q) => (
                  <tr key={q.queue}>
                    <th scope="row" data-label="Queue" title={q.queue}>
                      <code>{shortQueue(q.queue, status.prefix)}</code>
                    </th>
                    <td data-label="Ready" class="num">
                      {f.count(q.messages)}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Section>
      </div>
    </>
  );
}

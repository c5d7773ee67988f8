// The limited and failing origins (origin isolation, DESIGN §6), from
// GET /admin/origins. A daemon without that endpoint gets a plain note.
import { useState } from 'preact/hooks';
import { getOrigins, isMissingEndpoint, type OriginsAnswer } from '../api';
import { ErrorNotice, Section, StateBadge, Unavailable } from '../components';
import * as f from '../format';
import { usePoll } from '../use-poll';

const ORIGINS_POLL_MS = 5000;
/** Rows asked for: the worst ones; the page says when there are more. */
const ORIGINS_SHOWN = 100;
const ORDER: Readonly<Record<string, number>> = { failing: 0, limited: 1, ok: 2 };

export function Origins() {
  // An endpoint this daemon does not have will not appear by asking again: stop polling.
  const [missing, setMissing] = useState(false);
  const polled = usePoll<OriginsAnswer>(async () => {
    try {
      return await getOrigins(ORIGINS_SHOWN);
    } catch (err) {
      if (isMissingEndpoint(err)) setMissing(true);
      throw err;
    }
  }, missing ? null : ORIGINS_POLL_MS);
  const head = (
    <div class="page-head">
      <h1>Origins</h1>
      <p class="muted">Merchant servers (scheme, host, port) that a tier is holding back because they fail or answer slowly.</p>
    </div>
  );
  if (missing || isMissingEndpoint(polled.error)) {
    return (
      <>
        {head}
        <Unavailable title="Not available in this version">
          <p>
            This daemon has no origin view (<code>GET /admin/origins</code> is not there). It comes with origin isolation: upgrade notifyd to a version that
            has it.
          </p>
        </Unavailable>
      </>
    );
  }
  const data = polled.data;
  const rows = data ? [...data.origins].sort((a, b) => (ORDER[a.state] ?? 3) - (ORDER[b.state] ?? 3) || a.tier - b.tier || a.origin.localeCompare(b.origin)) : [];
  return (
    <>
      {head}
      <ErrorNotice error={polled.error} what="read the origins" />
      {!data ? (
        polled.error ? null : <p class="muted">Loading…</p>
      ) : (
        <Section title="Held-back origins" id="origins-title">
          <div class="stats">
            <p class="stat">
              <span class="stat-value">{f.count(data.counts.failing)}</span>
              <span class="stat-label">
                <StateBadge state="failing" />
              </span>
            </p>
            <p class="stat">
              <span class="stat-value">{f.count(data.counts.limited)}</span>
              <span class="stat-label">
                <StateBadge state="limited" />
              </span>
            </p>
          </div>
          {data.counts.failing + data.counts.limited > rows.length ? (
            <p class="muted">
              The worst {f.count(rows.length)} of {f.count(data.counts.failing + data.counts.limited)} held back; <code>notifyd ctl origins --limit N</code> lists more.
            </p>
          ) : null}
          {rows.length === 0 ? (
            <p class="empty">Every origin is healthy.</p>
          ) : (
            <div class="scroll">
              <table class="grid">
                <thead>
                  <tr>
                    <th scope="col">Origin</th>
                    <th scope="col" class="num">Tier</th>
                    <th scope="col">State</th>
                    <th scope="col" class="num">Limit</th>
                    <th scope="col" class="num">In flight</th>
                    <th scope="col" class="num">Waiting</th>
                    <th scope="col" class="num">Deferred</th>
                    <th scope="col" class="num">Skipped</th>
                    <th scope="col" class="num">Failures in a row</th>
                    <th scope="col">Last error</th>
                    <th scope="col">Next probe</th>
                  </tr>
                </thead>
                <tbody>
                  {rows.map((o) => (
                    <tr key={`${o.tier} ${o.origin}`}>
                      <th scope="row" data-label="Origin" class="wrap">
                        <code>{o.origin}</code>
                      </th>
                      <td data-label="Tier" class="num">
                        {o.tier}
                      </td>
                      <td data-label="State">
                        <StateBadge state={o.state} />
                      </td>
                      <td data-label="Limit" class="num">
                        {o.limit}
                      </td>
                      <td data-label="In flight" class="num">
                        {o.inflight}
                      </td>
                      <td data-label="Waiting" class="num">
                        {f.count(o.waiting)}
                      </td>
                      <td data-label="Deferred" class="num">
                        {f.count(o.deferred)}
                      </td>
                      <td data-label="Skipped" class="num">
                        {f.count(o.skipped)}
                      </td>
                      <td data-label="Failures in a row" class="num">
                        {o.consecutiveFailures}
                      </td>
                      <td data-label="Last error" class="text">
                        {o.lastError ?? '—'}
                        {o.lastErrorAt ? <span class="muted small"> ({f.ago(o.lastErrorAt)})</span> : null}
                      </td>
                      <td data-label="Next probe">{o.nextProbeInMs === null ? '—' : `in ${f.delay(Math.max(0, Math.round(o.nextProbeInMs)))}`}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
          <p class="muted small">Refreshed {f.dateTime(polled.at)} (every {ORIGINS_POLL_MS / 1000} s).</p>
        </Section>
      )}
    </>
  );
}

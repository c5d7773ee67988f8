// Micro-benchmark of ingress validation (the hot path of the ingress): a
// batch of 10,000 realistic notifications validated again and again, as the
// ingress does after JSON.parse. Run: node --import tsx bench/validate-bench.ts
import type { LimitsConfig } from '../src/core/config.js';
import { validateNotification as current } from '../src/core/message.js';

// VALIDATOR=file.ts also measures another implementation (e.g. the previous one, from git), its rounds
// interleaved with the current one's so that both see the same load on a shared machine.
const other: typeof current | null = process.env.VALIDATOR ? (await import(process.env.VALIDATOR)).validateNotification : null;

const LIMITS: LimitsConfig = Object.freeze({ urlMaxLength: 2048, idMaxLength: 128, maxHeaders: 32, headerMaxBytes: 4096, bodyMaxBytes: 262_144 });
const N = 10_000;
const ROUNDS = Number(process.env.ROUNDS ?? 15);

/** Inputs as JSON.parse hands them over: fresh objects, a few shapes, 50 merchant URLs. */
function inputs(): unknown[] {
  return Array.from({ length: N }, (_, i) => JSON.parse(JSON.stringify(
    i % 3 === 0
      ? { id: `order-${i}`, url: `https://m${i % 50}.example.com/notify`, body: { event: 'payment.succeeded', out_trade_no: String(i), total_amount: '88.00' } }
      : i % 3 === 1
        ? { id: `pay_${i}`, merchant: `m${i % 50}`, url: `https://m${i % 50}.example.com/cb?x=1`, method: 'POST', headers: { 'x-merchant': 'm', 'x-trace': `t${i}` }, contentType: 'application/x-www-form-urlencoded', body: { trade_no: String(i), total_amount: '9.99', ok: true }, success: { status: [200], bodyEquals: 'success' }, metadata: { tenant: 't1' }, createdAt: Date.now() }
        : { url: `https://m${i % 50}.example.com/hook`, body: 'raw text body', contentType: 'text/plain; charset=utf-8' },
  )));
}

const data = inputs();

function measure(validate: typeof current, times: number[]): void {
  const t0 = process.hrtime.bigint();
  for (const d of data) validate(d, LIMITS);
  times.push(Number(process.hrtime.bigint() - t0) / 1e6);
}

function report(name: string, times: number[]): void {
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)]!;
  console.log(JSON.stringify({ validator: name, notifications: N, rounds: ROUNDS, bestMs: +times[0]!.toFixed(2), medianMs: +median.toFixed(2), perSecondMedian: Math.round(N / (median / 1000)) }));
}

const mine: number[] = [];
const theirs: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  measure(current, mine);
  if (other) measure(other, theirs);
}
report('current', mine);
if (other) report(process.env.VALIDATOR!, theirs);

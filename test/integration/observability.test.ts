// Observability against the real daemon and RabbitMQ: the aggregated /metrics
// exposition (DESIGN §8) after a scripted run, histogram shape, promtool,
// per-process default metrics, restarts after kill -9, and /healthz + /readyz.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { DaemonProcess, deletePrefix, uniquePrefix, waitFor } from '../../bench/daemon-process.js';
import { MerchantStub } from '../../bench/merchant-stub.js';

const SCHEDULE = '0s,300ms,600ms';
const TIERS = 3;
const PROMTOOL = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p)) ?? null;

interface Status {
  tiers: { index: number; state: string; pid: number | null; restarts: number }[];
  ingress: { pid: number | null; state: string; restarts: number };
}

/** One sample line of the text exposition. */
interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

interface Exposition {
  readonly text: string;
  readonly samples: readonly Sample[];
  /** `# TYPE` per metric family. */
  readonly types: ReadonlyMap<string, string>;
}

function parseExposition(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    assert.ok(m, `unparseable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    const raw = m[3]!;
    samples.push({ name: m[1]!, labels, value: raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw) });
  }
  return { text, samples, types };
}

/** Samples of `name` whose labels include every pair of `match`. */
function select(e: Exposition, name: string, match: Record<string, string> = {}): Sample[] {
  return e.samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
}

/** The single value of `name{match}`; undefined when absent. */
function value(e: Exposition, name: string, match: Record<string, string> = {}): number | undefined {
  const found = select(e, name, match);
  assert.ok(found.length <= 1, `${name}${JSON.stringify(match)} matched ${found.length} samples`);
  return found[0]?.value;
}

function sum(e: Exposition, name: string, match: Record<string, string> = {}): number {
  return select(e, name, match).reduce((a, s) => a + s.value, 0);
}

describe('observability (real daemon, real RabbitMQ)', () => {
  const prefix = uniquePrefix('obs');
  const merchant = new MerchantStub();
  let daemon: DaemonProcess;
  let tmp: string;

  /** What was posted: merchant path and the stub's script for it. */
  const posted: { path: string; answer: (n: number) => number }[] = [];

  async function scrape(): Promise<Exposition> {
    const r = await fetch(`${daemon.adminUrl}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain/);
    return parseExposition(await r.text());
  }

  async function status(): Promise<Status> {
    const r = await daemon.admin<Status>('GET', '/admin/status');
    assert.equal(r.status, 200);
    return r.body;
  }

  /**
   * Expected `notify_attempts_total{tier,outcome}` from what the merchant saw:
   * the (i+1)th request to a path is tier i's attempt, its answer follows from
   * the path's script, a failure on the last tier is `dead`.
   */
  function expectedAttempts(): Map<string, number> {
    const out = new Map<string, number>();
    for (const p of posted) {
      const n = merchant.count(p.path);
      for (let i = 0; i < n; i++) {
        const status = p.answer(i + 1);
        const outcome = status >= 200 && status < 300 ? 'success' : status === 410 || i === TIERS - 1 ? 'dead' : 'retry';
        const k = `${i}/${outcome}`;
        out.set(k, (out.get(k) ?? 0) + 1);
      }
    }
    return out;
  }

  before(async () => {
    await merchant.start();
    tmp = mkdtempSync(join(tmpdir(), 'notifyd-obs-'));
    const cfg = join(tmp, 'config.json');
    writeFileSync(cfg, JSON.stringify({ metrics: { queueSampleCron: '* * * * * *' } }));
    daemon = new DaemonProcess({ prefix, schedule: SCHEDULE, env: { NOTIFY_CONFIG: cfg, NOTIFY_LOG_LEVEL: 'warn' } });
    await daemon.ready();

    // The scripted run: 20 succeed at once, 10 fail once, 5 never succeed, 3 answer 410.
    const script: [string, number, (n: number) => number][] = [
      ['fail/0', 20, () => 200],
      ['fail/1', 10, (n) => (n <= 1 ? 500 : 200)],
      ['status/503', 5, () => 503],
      ['status/410', 3, () => 410],
    ];
    for (const [kind, count, answer] of script) {
      for (let i = 0; i < count; i++) posted.push({ path: `/${kind}/${prefix}-${kind.replace('/', '')}-${i}`, answer });
    }
    const results = await Promise.all(posted.map((p) => daemon.post({ url: `${merchant.base}${p.path}`, body: { path: p.path } })));
    for (const r of results) assert.equal(r.status, 202, JSON.stringify(r.body));
    // 20·1 + 10·2 + 5·3 + 3·1 merchant requests in all.
    await waitFor(() => merchant.total === 58, 15_000, 'all 58 attempts at the merchant');
  });

  after(async () => {
    await daemon?.stop().catch(() => daemon.proc.kill('SIGKILL'));
    await merchant.close();
    await deletePrefix(prefix, SCHEDULE).catch(() => undefined);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('/healthz 200 and /readyz 200 with every tier running', async () => {
    assert.equal((await fetch(`${daemon.adminUrl}/healthz`)).status, 200);
    const r = await daemon.admin<{ ready: boolean; reasons: string[] }>('GET', '/readyz');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.ready, true);
    const s = await status();
    assert.equal(s.tiers.length, TIERS);
    for (const t of s.tiers) assert.equal(t.state, 'running', `tier ${t.index}`);
    assert.equal(s.ingress.state, 'running');
  });

  it('after a scripted run the counters equal what the merchant saw, per tier', async () => {
    assert.equal(merchant.total, 58, 'no attempt beyond the script');
    // The counter is bumped after the hand-on is confirmed, a moment after the merchant answered.
    let e = await scrape();
    await waitFor(async () => sum((e = await scrape()), 'notify_attempts_total') >= 58, 5000, 'attempt counters caught up');

    const expected = expectedAttempts();
    assert.deepEqual(
      Object.fromEntries([...expected].sort()),
      { '0/dead': 3, '0/retry': 15, '0/success': 20, '1/retry': 5, '1/success': 10, '2/dead': 5 },
      'the merchant saw the script',
    );
    const scraped = new Map<string, number>();
    for (const s of select(e, 'notify_attempts_total')) {
      assert.ok(['success', 'retry', 'dead', 'error'].includes(s.labels.outcome!), `outcome label ${s.labels.outcome}`);
      if (s.value !== 0) scraped.set(`${s.labels.tier}/${s.labels.outcome}`, s.value);
    }
    assert.deepEqual(Object.fromEntries([...scraped].sort()), Object.fromEntries([...expected].sort()), 'notify_attempts_total{tier,outcome}');
    for (let t = 0; t < TIERS; t++) {
      const seen = [...expected].filter(([k]) => k.startsWith(`${t}/`)).reduce((a, [, v]) => a + v, 0);
      assert.equal(sum(e, 'notify_attempts_total', { tier: String(t) }), seen, `tier ${t} attempts`);
    }

    assert.equal(value(e, 'notify_delivered_total', { tier: '0' }), 20);
    assert.equal(value(e, 'notify_delivered_total', { tier: '1' }), 10);
    assert.equal(value(e, 'notify_delivered_total', { tier: '2' }) ?? 0, 0);
    assert.equal(value(e, 'notify_dead_total', { reason: 'exhausted' }), 5);
    assert.equal(value(e, 'notify_dead_total', { reason: 'status-410' }), 3);
    assert.equal(sum(e, 'notify_dead_total'), 8, 'no other dead reason');
    assert.ok((value(e, 'notify_ingress_requests_total', { status: '202' }) ?? 0) >= 38, 'ingress 202s');

    for (let t = 0; t < TIERS; t++) assert.equal(value(e, 'notify_worker_up', { tier: String(t) }), 1, `worker_up tier ${t}`);
    assert.equal(e.types.get('notify_inflight'), 'gauge');
    assert.equal(value(e, 'notify_inflight', { tier: '0' }), 0, 'nothing in flight once done');
    assert.equal(value(e, 'notify_worker_restarts_total', { tier: '0' }) ?? 0, 0);

    // The queue sampler runs every second; the dead queue holds the 8 parked notifications.
    const deadQueue = `${prefix}.dead`;
    await waitFor(async () => value((e = await scrape()), 'notify_queue_messages', { queue: deadQueue }) === 8, 5000, `notify_queue_messages{queue="${deadQueue}"} = 8`);
    assert.equal(value(e, 'notify_queue_messages', { queue: `${prefix}.work.0` }) ?? 0, 0);
  });

  it('histograms are histograms: cumulative buckets, +Inf = _count, counts match the attempts', async () => {
    const e = await scrape();
    for (const name of ['notify_attempt_duration_seconds', 'notify_schedule_lateness_seconds', 'notify_end_to_end_seconds']) {
      assert.equal(e.types.get(name), 'histogram', `# TYPE ${name} histogram`);
      assert.match(e.text, new RegExp(`^# TYPE ${name} histogram$`, 'm'));
      const counts = select(e, `${name}_count`);
      assert.ok(counts.length > 0, `${name}_count present`);
      for (const c of counts) {
        const key = JSON.stringify(c.labels);
        const buckets = select(e, `${name}_bucket`, c.labels).filter((b) => Object.keys(b.labels).length === Object.keys(c.labels).length + 1);
        assert.ok(buckets.length > 1, `${name}${key} has buckets`);
        const byLe = buckets.map((b) => ({ le: b.labels.le === '+Inf' ? Infinity : Number(b.labels.le), v: b.value })).sort((a, b) => a.le - b.le);
        for (let i = 1; i < byLe.length; i++) assert.ok(byLe[i]!.v >= byLe[i - 1]!.v, `${name}${key} bucket le=${byLe[i]!.le} < le=${byLe[i - 1]!.le}`);
        assert.equal(byLe.at(-1)!.le, Infinity, `${name}${key} has le="+Inf"`);
        assert.equal(byLe.at(-1)!.v, c.value, `${name}${key} +Inf bucket = _count`);
        assert.ok(value(e, `${name}_sum`, c.labels) !== undefined, `${name}${key} _sum present`);
      }
    }
    // Every attempt is timed and its lateness observed, in the tier that made it.
    const expected = expectedAttempts();
    const attempts = Array.from({ length: TIERS }, (_, t) => [...expected].filter(([k]) => k.startsWith(`${t}/`)).reduce((a, [, v]) => a + v, 0));
    assert.deepEqual(attempts, [38, 15, 5]);
    for (let t = 0; t < TIERS; t++) {
      assert.equal(value(e, 'notify_attempt_duration_seconds_count', { tier: String(t) }), attempts[t], `attempt duration count tier ${t}`);
      assert.equal(value(e, 'notify_schedule_lateness_seconds_count', { tier: String(t) }), attempts[t], `lateness count tier ${t}`);
    }
    assert.ok((value(e, 'notify_schedule_lateness_seconds_count', { tier: '1' }) ?? 0) > 0, 'tier 1 lateness observed');
    assert.equal(value(e, 'notify_end_to_end_seconds_count'), 30, 'one end-to-end observation per delivered notification');
  });

  it('the exposition passes promtool check metrics', async (t: TestContext) => {
    if (!PROMTOOL) {
      t.skip('promtool not installed (Debian: apt-get install prometheus)');
      return;
    }
    const e = await scrape();
    const r = spawnSync(PROMTOOL, ['check', 'metrics'], { input: e.text, encoding: 'utf8', timeout: 10_000 });
    const out = `${r.stdout}${r.stderr}`.trim();
    if (out) t.diagnostic(`promtool: ${out}`);
    assert.equal(r.status, 0, `promtool check metrics exited ${r.status}: ${out}`);
  });

  it("each process's default metrics carry its role and tier", async () => {
    const e = await scrape();
    const rss = select(e, 'process_resident_memory_bytes');
    const has = (labels: Record<string, string>): boolean => rss.some((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v) && s.value > 0);
    assert.ok(has({ role: 'master' }), 'master');
    for (let t = 0; t < TIERS; t++) assert.ok(has({ role: 'tier', tier: String(t) }), `tier ${t}`);
    assert.ok(has({ role: 'ingress' }), 'ingress');
    assert.equal(rss.length, TIERS + 2, `one series per process: ${JSON.stringify(rss.map((s) => s.labels))}`);
    assert.ok(select(e, 'nodejs_heap_size_used_bytes', { role: 'tier', tier: '1' }).length === 1, 'nodejs_* too');
  });

  it('kill -9 of tier 0: restarts counted, worker_up back to 1, counters never go backwards', async () => {
    const before = await scrape();
    const attemptsBefore = sum(before, 'notify_attempts_total');
    const deliveredBefore = sum(before, 'notify_delivered_total');
    const durationCountBefore = sum(before, 'notify_attempt_duration_seconds_count');
    const old = (await status()).tiers[0]!;
    assert.ok(old.pid);
    process.kill(old.pid, 'SIGKILL');
    await waitFor(async () => {
      const t0 = (await status()).tiers[0]!;
      return t0.state === 'running' && t0.pid !== null && t0.pid !== old.pid;
    }, 10_000, 'tier 0 running again with a new pid');
    const e = await scrape();
    assert.equal(value(e, 'notify_worker_restarts_total', { tier: '0' }), 1);
    assert.equal(value(e, 'notify_worker_restarts_total', { tier: '1' }) ?? 0, 0);
    assert.equal(value(e, 'notify_worker_up', { tier: '0' }), 1);
    assert.equal(sum(e, 'notify_attempts_total'), attemptsBefore, 'the dead worker’s attempts are kept');
    assert.equal(value(e, 'notify_attempts_total', { tier: '0', outcome: 'success' }), 20);
    assert.equal(sum(e, 'notify_delivered_total'), deliveredBefore);
    assert.equal(sum(e, 'notify_attempt_duration_seconds_count'), durationCountBefore);
    // The new tier-0 process reports its own default metrics, once.
    assert.equal(select(e, 'process_resident_memory_bytes', { role: 'tier', tier: '0' }).length, 1);

    // And the next notification counts on top.
    const path = `/fail/0/${prefix}-after-kill`;
    posted.push({ path, answer: () => 200 });
    assert.equal((await daemon.post({ url: `${merchant.base}${path}`, body: {} })).status, 202);
    await waitFor(() => merchant.count(path) === 1, 5000, 'delivered after the restart');
    let after = e;
    await waitFor(async () => sum((after = await scrape()), 'notify_attempts_total') === attemptsBefore + 1, 5000, 'attempt counted after restart');
    assert.equal(value(after, 'notify_attempts_total', { tier: '0', outcome: 'success' }), 21);
    assert.equal(value(after, 'notify_delivered_total', { tier: '0' }), 21);
  });

  it('a scrape while a worker is being restarted answers 200 within 2 s', async (t: TestContext) => {
    const victim = (await status()).tiers[1]!;
    assert.ok(victim.pid);
    const before = sum(await scrape(), 'notify_attempts_total');
    process.kill(victim.pid, 'SIGKILL');
    const took: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = Date.now();
      const r = await fetch(`${daemon.adminUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
      const text = await r.text();
      const ms = Date.now() - t0;
      took.push(ms);
      assert.equal(r.status, 200);
      assert.ok(ms < 2000, `scrape ${i} took ${ms}ms`);
      assert.ok(sum(parseExposition(text), 'notify_attempts_total') >= before, `scrape ${i}: counters went backwards`);
    }
    t.diagnostic(`scrapes during the restart took ${took.join(', ')} ms`);
    await waitFor(async () => {
      const t1 = (await status()).tiers[1]!;
      return t1.state === 'running' && t1.pid !== victim.pid;
    }, 10_000, 'tier 1 running again');
    const e = await scrape();
    assert.equal(value(e, 'notify_worker_restarts_total', { tier: '1' }), 1);
    for (let i = 0; i < TIERS; i++) assert.equal(value(e, 'notify_worker_up', { tier: String(i) }), 1, `worker_up tier ${i}`);
    assert.equal(sum(e, 'notify_attempts_total'), before);
    assert.equal((await fetch(`${daemon.adminUrl}/readyz`)).status, 200, 'ready again with every tier running');
  });
});

/**
 * Deployment and observability files: docker-compose.yml, config/prometheus.yml,
 * config/alerts.yml, the Grafana dashboard and config/notifyd.service.
 *
 * - docker-compose / promtool checks run the real tools and are skipped (with a
 *   message) when the tool is not installed (Debian: `apt-get install -y
 *   docker-compose prometheus`).
 * - Every metric name the dashboard and the alerts query must exist in a real
 *   exposition built from src/metrics.ts (what the master serves on /metrics).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Counter, Gauge, Histogram, Registry, Summary, collectDefaultMetrics } from 'prom-client';
import { EX_CONFIG, loadConfig } from '../../src/core/config.js';
import { parseSystemdTimespan, startupWarnings, stopTimeoutMs } from '../../src/supervisor/startup-checks.js';
import { METRIC_NAMES, aggregateExposition, createMasterMetrics, createRecorderMetrics, createWorkerMetrics } from '../../src/core/metrics.js';
import { parseDuration } from '../../src/core/schedule.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const file = (p: string): string => join(ROOT, p);
const read = (p: string): string => readFileSync(file(p), 'utf8');

/** True when `cmd args...` runs and exits 0 (used to probe for tools). */
function runs(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore', timeout: 20_000 });
  return r.error === undefined && r.status === 0;
}

/** Runs a tool; on failure the assertion message carries its output. */
function check(cmd: string, args: string[], cwd = ROOT, env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.error, undefined, `${cmd} ${args.join(' ')}: ${String(r.error)}`);
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

// ---------------------------------------------------------------------------
// PromQL / YAML helpers
// ---------------------------------------------------------------------------

const PROMQL_KEYWORDS = new Set([
  'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool',
  'and', 'or', 'unless', 'offset', 'inf', 'nan', 'le',
]);

/**
 * Metric names referenced by a PromQL expression (Grafana variables allowed):
 * strings, label matchers, ranges, grouping clauses and `$vars` are removed;
 * identifiers followed by `(` are functions/aggregations.
 */
function promqlMetricNames(expr: string): string[] {
  let s = expr.replace(/label_values\(\s*([^,()]+?)\s*,\s*[A-Za-z_]\w*\s*\)/g, ' $1 ');
  s = s.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ');
  s = s.replace(/\{[^}]*\}/g, ' ');
  s = s.replace(/\[[^\]]*\]/g, ' ');
  s = s.replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  s = s.replace(/\$\{[^}]*\}|\$\w+/g, ' ');
  const names = new Set<string>();
  for (const m of s.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const at = m.index ?? 0;
    if (at > 0 && /[0-9.]/.test(s[at - 1]!)) continue; // 5m, 1e3
    if (s.slice(at + m[0].length).trimStart().startsWith('(')) continue; // function
    if (PROMQL_KEYWORDS.has(m[0].toLowerCase())) continue;
    names.add(m[0]);
  }
  return [...names];
}

test('promqlMetricNames finds metrics, not functions, labels or durations', () => {
  assert.deepEqual(
    promqlMetricNames('histogram_quantile(0.99, sum by (le, tier) (rate(notify_x_bucket{tier=~"$tier",q="a b"}[$__rate_interval]))) > 5'),
    ['notify_x_bucket'],
  );
  assert.deepEqual(promqlMetricNames('sum(rate(a_total[5m] offset 1h)) / on (x) group_left b'), ['a_total', 'b']);
  assert.deepEqual(promqlMetricNames('label_values(notify_worker_up, tier)'), ['notify_worker_up']);
  assert.deepEqual(promqlMetricNames('up{job="notifyd"} == 0'), ['up']);
});

/**
 * The `expr:` values of a Prometheus rules file: plain one-line scalars or
 * block scalars (`|`, `>-`, ...) whose lines are indented deeper than the key.
 */
function ruleExprs(yaml: string): string[] {
  const lines = yaml.split('\n');
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*)(?:-\s+)?expr:\s*(.*)$/.exec(lines[i]!);
    if (!m) continue;
    const indent = m[1]!.length;
    const value = m[2]!.trim();
    if (/^[|>][-+]?$/.test(value)) {
      const body: string[] = [];
      while (i + 1 < lines.length && (lines[i + 1]!.trim() === '' || /^\s*/.exec(lines[i + 1]!)![0].length > indent)) {
        body.push(lines[++i]!.trim());
      }
      out.push(body.join(' ').trim());
    } else {
      out.push(value.replace(/^'(.*)'$/, '$1').replace(/^"(.*)"$/, '$1'));
    }
  }
  return out;
}

interface Target { expr?: string }
interface Panel { type: string; title: string; datasource?: { uid?: string }; targets?: Target[]; panels?: Panel[] }
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating?: { list: { datasource?: { uid?: string }; definition?: string; query?: string | { query?: string } }[] };
}

function dashboard(): Dashboard {
  return JSON.parse(read('config/grafana/dashboards/notifyd.json')) as Dashboard;
}

/** Every PromQL expression of the dashboard: panel targets and variable queries. */
function dashboardExprs(d: Dashboard): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  const walk = (panels: Panel[]): void => {
    for (const p of panels) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ where: `panel "${p.title}"`, expr: t.expr });
      walk(p.panels ?? []);
    }
  };
  walk(d.panels);
  for (const v of d.templating?.list ?? []) {
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    if (q) out.push({ where: 'templating', expr: q });
  }
  return out;
}

/**
 * A real exposition: a tier worker's and the master's registries, every
 * labelled metric touched once, aggregated the way the master serves /metrics.
 */
async function realExposition(): Promise<string> {
  const worker = createWorkerMetrics({ role: 'tier', tier: '0' });
  worker.sampleRegistry(() => true);
  // The recorder's own metrics live in its worker registry.
  createRecorderMetrics(worker.registry);
  const master = createMasterMetrics();
  for (const registry of [worker.registry, master.registry]) {
    for (const metric of registry.getMetricsAsArray()) {
      const name = (metric as unknown as { name: string }).name;
      if (!name.startsWith('notify_')) continue;
      const labelNames = (metric as unknown as { labelNames?: string[] }).labelNames ?? [];
      const example: Record<string, string> = { tier: '0', outcome: 'success', reason: 'exhausted', status: '202', queue: 'notify.dead' };
      const labels = Object.fromEntries(labelNames.map((l) => [l, example[l] ?? 'x']));
      if (metric instanceof Counter) metric.inc(labels, 1);
      else if (metric instanceof Gauge) metric.set(labels, 1);
      else if (metric instanceof Histogram || metric instanceof Summary) metric.observe(labels, 0.2);
      else assert.fail(`unexpected metric type for ${name}`);
    }
  }
  return aggregateExposition([await worker.registry.getMetricsAsJSON(), await master.registry.getMetricsAsJSON()]);
}

test('notify_registry_up is 1 while every process that reads the registry reaches it, whatever processes without one export', async () => {
  const tier = createWorkerMetrics({ role: 'tier', tier: '0' }, false);
  let up = true;
  tier.sampleRegistry(() => up);
  const ingress = createWorkerMetrics({ role: 'ingress', tier: '' }, false);
  ingress.sampleRegistry(() => true);
  const recorder = createWorkerMetrics({ role: 'recorder', tier: '' }, false);
  createRecorderMetrics(recorder.registry);
  const all = async () => aggregateExposition(await Promise.all([tier, ingress, recorder].map((m) => m.registry.getMetricsAsJSON())));
  assert.match(await all(), /^notify_registry_up 1$/m);
  up = false;
  assert.match(await all(), /^notify_registry_up 0$/m);
  // Without a database no process reads a registry: no series at all rather than a 0 that reads as an outage.
  assert.doesNotMatch(await aggregateExposition([await recorder.registry.getMetricsAsJSON()]), /notify_registry_up/);
});

/** Names of the sample lines of an exposition (`foo_bucket{...} 1` → `foo_bucket`). */
function sampleNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const line of exposition.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    names.add(/^[A-Za-z_:][A-Za-z0-9_:]*/.exec(line)![0]);
  }
  return names;
}

/** prom-client's default metric names (process_*, nodejs_*). */
function defaultMetricNames(): Set<string> {
  const r = new Registry();
  collectDefaultMetrics({ register: r });
  return new Set(r.getMetricsAsArray().map((m) => (m as unknown as { name: string }).name));
}

const baseName = (n: string): string => n.replace(/_(?:bucket|sum|count)$/, '');

/** Checks the names one file's queries use; returns the set of base names. */
function checkNames(
  queries: { where: string; expr: string }[],
  allowed: Set<string>,
  exposed: Set<string>,
): Set<string> {
  const used = new Set<string>();
  for (const { where, expr } of queries) {
    const names = promqlMetricNames(expr);
    assert.ok(names.length > 0, `${where}: no metric in ${expr}`);
    for (const n of names) {
      if (n === 'up') continue; // made by Prometheus per scrape target
      assert.ok(allowed.has(baseName(n)), `${where}: ${n} is neither in METRIC_NAMES nor a prom-client default metric`);
      assert.ok(exposed.has(n), `${where}: ${n} does not appear in the /metrics exposition`);
      used.add(baseName(n));
    }
  }
  return used;
}

// ---------------------------------------------------------------------------
// (a) docker-compose.yml
// ---------------------------------------------------------------------------

test('docker-compose.yml is accepted by `docker compose config`', (t: TestContext) => {
  let cmd: [string, string[]] | null = null;
  if (runs('docker', ['compose', 'version'])) cmd = ['docker', ['compose']];
  else if (runs('docker-compose', ['version'])) cmd = ['docker-compose', []];
  if (!cmd) {
    t.skip('neither `docker compose` nor `docker-compose` is installed (apt-get install -y docker-compose)');
    return;
  }
  const env = { ...process.env, NOTIFY_ADMIN_TOKEN: 'test-token' };
  check(cmd[0], [...cmd[1], '-f', 'docker-compose.yml', 'config', '-q'], ROOT, env);
  const rendered = check(cmd[0], [...cmd[1], '-f', 'docker-compose.yml', 'config'], ROOT, env);
  // The token reaches notifyd and Prometheus from one variable.
  assert.ok((rendered.match(/NOTIFY_ADMIN_TOKEN: test-token/g) ?? []).length >= 2, 'NOTIFY_ADMIN_TOKEN passed to notifyd and prometheus');
});

test('docker-compose.yml and Dockerfile give the drain time to finish', () => {
  const drainMs = parseDuration(JSON.parse(read('config/default.json')).supervisor.drainTimeout as string);
  const compose = read('docker-compose.yml');
  const grace = /stop_grace_period:\s*(\S+)/.exec(compose);
  assert.ok(grace, 'notifyd sets stop_grace_period');
  let graceMs = 0;
  for (const m of grace[1]!.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)) graceMs += parseDuration(`${m[1]}${m[2]}`);
  assert.ok(graceMs > drainMs, `stop_grace_period ${grace[1]} > drainTimeout ${drainMs} ms`);
  assert.match(compose, /NOTIFY_AMQP_URL: amqp:\/\/guest:guest@rabbitmq:5672/);
  assert.match(compose, /condition: service_healthy/);
  const dockerfile = read('Dockerfile');
  assert.match(dockerfile, /^STOPSIGNAL SIGTERM$/m);
  assert.match(dockerfile, /^USER node$/m);
  assert.match(dockerfile, /^CMD \["node", ?"dist\/src\/cli\.js", ?"start"\]$/m);
  // The image says whether it is healthy without compose: the probe is JavaScript node runs (no curl in slim).
  const probe = /^HEALTHCHECK .*\\\n\s+CMD (\[.*\])$/m.exec(dockerfile);
  assert.ok(probe, 'a HEALTHCHECK in exec form');
  const argv = JSON.parse(probe[1]!) as string[];
  assert.deepEqual(argv.slice(0, 2), ['node', '-e']);
  assert.doesNotThrow(() => new Function(argv[2]!), 'the probe parses');
});

test('the runtime image and the systemd install hold everything the package ships to run (sql/ too)', () => {
  const shipped = (JSON.parse(read('package.json')) as { files: string[] }).files.filter((f) => !f.endsWith('.md'));
  const runtime = read('Dockerfile').split(/^FROM .* AS runtime$/m)[1] ?? '';
  const copied = [...runtime.matchAll(/^COPY (?:--from=\S+ )?(\S+) (\S+)$/gm)].map((m) => m[2]!.replace(/^\.\//, '').replace(/\/$/, ''));
  const unit = read('config/notifyd.service');
  for (const f of shipped) {
    assert.ok(copied.some((c) => f === c || f.startsWith(`${c}/`)), `the runtime stage copies ${f} (copies: ${copied.join(', ')})`);
    assert.ok(unit.includes(`${f.split('/')[0]}/`), `the unit's install steps name ${f.split('/')[0]}/`);
  }
});

// ---------------------------------------------------------------------------
// (b) Prometheus config and alert rules
// ---------------------------------------------------------------------------

/** A temp copy of prometheus.yml + alerts.yml with the token file present. */
function promDir(): { dir: string; config: string } {
  const dir = mkdtempSync(join(tmpdir(), 'notifyd-prom-'));
  copyFileSync(file('config/alerts.yml'), join(dir, 'alerts.yml'));
  const token = join(dir, 'notifyd-admin-token');
  writeFileSync(token, 'test-token');
  const src = read('config/prometheus.yml');
  const m = /credentials_file:\s*(\S+)/.exec(src);
  assert.ok(m, 'prometheus.yml scrapes notifyd with authorization.credentials_file');
  writeFileSync(join(dir, 'prometheus.yml'), src.replace(m[0], `credentials_file: ${token}`));
  return { dir, config: join(dir, 'prometheus.yml') };
}

test('promtool accepts config/alerts.yml and config/prometheus.yml', (t: TestContext) => {
  if (!runs('promtool', ['--version'])) {
    t.skip('promtool is not installed (apt-get install -y prometheus)');
    return;
  }
  check('promtool', ['check', 'rules', file('config/alerts.yml')]);
  const { dir, config } = promDir();
  try {
    check('promtool', ['check', 'config', config]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const prom = read('config/prometheus.yml');
  assert.match(prom, /job_name:\s*notifyd/);
  assert.match(prom, /targets:\s*\[\s*"notifyd:9464"\s*\]/);
  assert.match(prom, /scrape_interval:\s*15s/);
  assert.match(prom, /rule_files:\s*\n\s*-\s*alerts\.yml/);
});

/** Series shaped like the real /metrics (labels role, job, instance added). */
const RULE_TESTS = `
rule_files: [alerts.yml]
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'up{job="notifyd",instance="notifyd:9464"}'
        values: '0x100'
      - series: 'up{job="rabbitmq",instance="rabbitmq:15692"}'
        values: '1x50 0x50'
      - series: 'notify_worker_restarts_total{job="notifyd",instance="notifyd:9464",role="master",tier="2"}'
        values: '0+1x100'
      - series: 'notify_worker_restarts_total{job="notifyd",instance="notifyd:9464",role="master",tier="0"}'
        values: '0x100'
      - series: 'notify_worker_up{job="notifyd",instance="notifyd:9464",role="master",tier="2"}'
        values: '0x100'
      - series: 'notify_worker_up{job="notifyd",instance="notifyd:9464",role="master",tier="0"}'
        values: '1x100'
      - series: 'notify_process_up{job="notifyd",instance="notifyd:9464",role="master",process="ingress"}'
        values: '1x5 0x95'
      - series: 'notify_process_up{job="notifyd",instance="notifyd:9464",role="master",process="recorder"}'
        values: '1x100'
      - series: 'notify_process_restarts_total{job="notifyd",instance="notifyd:9464",role="master",process="recorder"}'
        values: '0x60 0+2x40'
      - series: 'notify_process_restarts_total{job="notifyd",instance="notifyd:9464",role="master",process="ingress"}'
        values: '0x100'
      - series: 'notify_dead_total{job="notifyd",instance="notifyd:9464",role="tier",tier="5",reason="exhausted"}'
        values: '0+2x100'
      - series: 'notify_dead_total{job="notifyd",instance="notifyd:9464",role="tier",tier="0",reason="invalid"}'
        values: '0x100'
      - series: 'notify_queue_messages{job="notifyd",instance="notifyd:9464",role="master",queue="notify.dead"}'
        values: '0+5x100'
      - series: 'notify_queue_messages{job="notifyd",instance="notifyd:9464",role="master",queue="notify.work.0"}'
        values: '0+5x100'
      - series: 'notify_schedule_lateness_seconds_bucket{job="notifyd",instance="notifyd:9464",role="tier",tier="1",le="5"}'
        values: '0x100'
      - series: 'notify_schedule_lateness_seconds_bucket{job="notifyd",instance="notifyd:9464",role="tier",tier="1",le="15"}'
        values: '0+10x100'
      - series: 'notify_schedule_lateness_seconds_bucket{job="notifyd",instance="notifyd:9464",role="tier",tier="1",le="+Inf"}'
        values: '0+10x100'
      - series: 'notify_schedule_lateness_seconds_bucket{job="notifyd",instance="notifyd:9464",role="tier",tier="0",le="5"}'
        values: '0+10x100'
      - series: 'notify_schedule_lateness_seconds_bucket{job="notifyd",instance="notifyd:9464",role="tier",tier="0",le="+Inf"}'
        values: '0+10x100'
      - series: 'notify_ingress_requests_total{job="notifyd",instance="notifyd:9464",role="ingress",status="503"}'
        values: '0+10x100'
      - series: 'notify_ingress_requests_total{job="notifyd",instance="notifyd:9464",role="ingress",status="202"}'
        values: '0+10x100'
      - series: 'notify_origins{job="notifyd",instance="notifyd:9464",role="tier",tier="0",state="failing"}'
        values: '0x20 1x80'
      - series: 'notify_origins{job="notifyd",instance="notifyd:9464",role="tier",tier="1",state="failing"}'
        values: '0x20 1x80'
      - series: 'notify_origins{job="notifyd",instance="notifyd:9464",role="tier",tier="0",state="limited"}'
        values: '3x100'
      - series: 'notify_history_lag_seconds{job="notifyd",instance="notifyd:9464",role="recorder",tier=""}'
        values: '0.05x40 30+15x60'
      - series: 'notify_history_up{job="notifyd",instance="notifyd:9464",role="recorder",tier=""}'
        values: '1x100'
      - series: 'notify_history_records_lost_total{job="notifyd",instance="notifyd:9464",role="ingress",tier=""}'
        values: '0x60 0+3x40'
      - series: 'notify_broker_connections_given_up_total{job="notifyd",instance="notifyd:9464",role="tier"}'
        values: '0x60 1x40'
    alert_rule_test:
      - eval_time: 1m
        alertname: NotifydDown
        exp_alerts: []
      - eval_time: 20m
        alertname: NotifydDown
        exp_alerts:
          - exp_labels: { severity: critical, job: notifyd, instance: "notifyd:9464" }
      - eval_time: 20m
        alertname: NotifydBrokerUnreachable
        exp_alerts:
          - exp_labels: { severity: critical, job: rabbitmq, instance: "rabbitmq:15692" }
      - eval_time: 20m
        alertname: NotifyTierCrashloop
        exp_alerts:
          - exp_labels: { severity: critical, job: notifyd, instance: "notifyd:9464", role: master, tier: "2" }
      - eval_time: 10m
        alertname: NotifyTierWorkerDown
        exp_alerts:
          - exp_labels: { severity: critical, tier: "2" }
      # RabbitMQ down since 12.5m: NotifydBrokerUnreachable says it, and a tier that cannot run without it is not a second alert.
      - eval_time: 20m
        alertname: NotifyTierWorkerDown
        exp_alerts: []
      - eval_time: 20m
        alertname: NotifyIngressDown
        exp_alerts:
          - exp_labels: { severity: critical, instance: "notifyd:9464" }
      - eval_time: 14m
        alertname: NotifyProcessCrashloop
        exp_alerts: []
      - eval_time: 20m
        alertname: NotifyProcessCrashloop
        exp_alerts:
          - exp_labels: { severity: critical, job: notifyd, instance: "notifyd:9464", role: master, process: recorder }
      - eval_time: 20m
        alertname: NotifyRecorderDown
        exp_alerts: []
      - eval_time: 20m
        alertname: NotifyDeadLettersGrowing
        exp_alerts:
          - exp_labels: { severity: warning, reason: exhausted }
      - eval_time: 20m
        alertname: NotifyDeadQueueGrowing
        exp_alerts:
          - exp_labels: { severity: warning, job: notifyd, instance: "notifyd:9464", role: master, queue: notify.dead }
      - eval_time: 20m
        alertname: NotifyScheduleLatenessHigh
        exp_alerts:
          - exp_labels: { severity: warning, tier: "1" }
      - eval_time: 20m
        alertname: NotifyIngressUnavailable
        exp_alerts:
          - exp_labels: { severity: critical }
      - eval_time: 12m
        alertname: NotifyOriginsFailing
        exp_alerts: []
      - eval_time: 20m
        alertname: NotifyOriginsFailing
        exp_alerts:
          - exp_labels: { severity: warning, instance: "notifyd:9464" }
      - eval_time: 10m
        alertname: NotifyHistoryLagging
        exp_alerts: []
      - eval_time: 20m
        alertname: NotifyHistoryLagging
        exp_alerts:
          - exp_labels: { severity: warning, instance: "notifyd:9464" }
      - eval_time: 14m
        alertname: NotifyBrokerCallsUnanswered
        exp_alerts: []
      - eval_time: 20m
        alertname: NotifyBrokerCallsUnanswered
        exp_alerts:
          - exp_labels: { severity: warning, instance: "notifyd:9464", role: tier }
      - eval_time: 14m
        alertname: NotifyHistoryLost
        exp_alerts: []
      - eval_time: 20m
        alertname: NotifyHistoryLost
        exp_alerts:
          - exp_labels: { severity: warning, instance: "notifyd:9464" }
`;

test('alert rules fire on realistic series (promtool test rules)', (t: TestContext) => {
  if (!runs('promtool', ['--version'])) {
    t.skip('promtool is not installed (apt-get install -y prometheus)');
    return;
  }
  const { dir } = promDir();
  try {
    // Annotations are checked as a whole by promtool; compare labels only by
    // removing them from a copy of the rules.
    const noAnnotations = read('config/alerts.yml').replace(/^(\s*)annotations:\n(?:\1\s+.*\n|\s*\n)*/gm, '');
    assert.doesNotMatch(noAnnotations, /annotations:/);
    writeFileSync(join(dir, 'alerts.yml'), noAnnotations);
    writeFileSync(join(dir, 'tests.yml'), RULE_TESTS);
    check('promtool', ['test', 'rules', join(dir, 'tests.yml')], dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('every alert has for:, a severity and summary/description annotations', () => {
  const yaml = read('config/alerts.yml');
  const blocks = yaml.split(/^\s*- alert:/m).slice(1);
  assert.ok(blocks.length >= 6, `expected the alert rules, found ${blocks.length}`);
  for (const b of blocks) {
    const name = b.trim().split('\n')[0];
    assert.match(b, /\n\s+for:\s*\d+[smh]/, `${name}: for:`);
    assert.match(b, /\n\s+severity:\s*(critical|warning|info)/, `${name}: severity label`);
    assert.match(b, /\n\s+summary:/, `${name}: summary`);
    assert.match(b, /\n\s+description:/, `${name}: description`);
  }
  assert.equal(ruleExprs(yaml).length, blocks.length, 'one expr per alert');
});

// ---------------------------------------------------------------------------
// (c) dashboard and alerts against the real metric names
// ---------------------------------------------------------------------------

test('dashboard and alerts query only metrics that /metrics exposes', async () => {
  const d = dashboard();
  assert.equal(d.uid, 'notifyd');
  assert.ok(d.schemaVersion >= 36, `schemaVersion ${d.schemaVersion}`);
  assert.ok(Array.isArray(d.panels) && d.panels.length > 0);

  // Every panel and variable uses the provisioned datasource.
  const dsUid = /^\s*uid:\s*(\S+)/m.exec(read('config/grafana/provisioning/datasources/prometheus.yml'))?.[1];
  assert.ok(dsUid, 'provisioned datasource has a uid');
  const walk = (panels: Panel[]): void => {
    for (const p of panels) {
      if (p.type !== 'row') assert.equal(p.datasource?.uid, dsUid, `panel "${p.title}" datasource uid`);
      walk(p.panels ?? []);
    }
  };
  walk(d.panels);
  for (const v of d.templating?.list ?? []) if (v.datasource) assert.equal(v.datasource.uid, dsUid);

  const exposition = await realExposition();
  const exposed = sampleNames(exposition);
  const allowed = new Set<string>([...METRIC_NAMES, ...defaultMetricNames()]);

  const dashQueries = dashboardExprs(d);
  assert.ok(dashQueries.length >= 10, `dashboard has ${dashQueries.length} queries`);
  const usedByDashboard = checkNames(dashQueries, allowed, exposed);
  // The dashboard shows every DESIGN §8 metric.
  for (const name of METRIC_NAMES) assert.ok(usedByDashboard.has(name), `dashboard does not show ${name}`);

  const alertQueries = ruleExprs(read('config/alerts.yml')).map((expr) => ({ where: 'alerts.yml', expr }));
  const usedByAlerts = checkNames(alertQueries, allowed, exposed);
  for (const name of ['notify_worker_restarts_total', 'notify_dead_total', 'notify_queue_messages', 'notify_schedule_lateness_seconds', 'notify_ingress_requests_total']) {
    assert.ok(usedByAlerts.has(name), `alerts do not use ${name}`);
  }
});

// ---------------------------------------------------------------------------
// (d) systemd unit
// ---------------------------------------------------------------------------

/** systemd time span (`40`, `40s`, `1min 10s`, `500ms`) in ms. */
function systemdSpanMs(v: string): number {
  const ms = parseSystemdTimespan(v);
  assert.ok(ms !== null, `unparsed time span "${v}"`);
  return ms;
}

test('systemd unit: stop timeout longer than the drain, no restart on config errors', async () => {
  const unit = read('config/notifyd.service');
  const get = (key: string): string | undefined => new RegExp(`^${key}=(.*)$`, 'm').exec(unit)?.[1]?.trim();
  const drainMs = parseDuration(JSON.parse(read('config/default.json')).supervisor.drainTimeout as string);
  const stop = get('TimeoutStopSec');
  assert.ok(stop, 'TimeoutStopSec set');
  assert.ok(systemdSpanMs(stop) > drainMs, `TimeoutStopSec=${stop} must exceed supervisor.drainTimeout (${drainMs} ms)`);
  assert.equal(get('ExecStart'), '/usr/bin/node /opt/notifyd/dist/src/cli.js start');
  assert.equal(get('KillMode'), 'control-group');
  assert.equal(get('KillSignal'), 'SIGTERM');
  assert.equal(get('Restart'), 'on-failure');
  assert.equal(get('RestartPreventExitStatus'), String(EX_CONFIG));
  assert.equal(get('ExecReload'), '/bin/kill -HUP $MAINPID');
  assert.equal(get('User'), 'notifyd');
  assert.equal(get('EnvironmentFile'), '-/etc/notifyd/notifyd.env');
  for (const k of ['NoNewPrivileges', 'ProtectHome', 'PrivateTmp']) assert.equal(get(k), 'yes', k);
  assert.equal(get('ProtectSystem'), 'strict');
  assert.equal(get('StandardOutput'), 'journal');
  // V8's JIT needs writable+executable memory.
  assert.equal(get('MemoryDenyWriteExecute'), undefined);
  // notifyd is told the same stop timeout, and the shipped config fits in it without a warning.
  const env = /^Environment=NOTIFY_STOP_TIMEOUT=(.*)$/m.exec(unit)?.[1];
  assert.ok(env, 'Environment=NOTIFY_STOP_TIMEOUT set');
  assert.equal(await stopTimeoutMs({ NOTIFY_STOP_TIMEOUT: env }), systemdSpanMs(stop), 'NOTIFY_STOP_TIMEOUT equals TimeoutStopSec, read as notifyd reads it');
  assert.deepEqual(startupWarnings(loadConfig({ env: {} }), { stopTimeoutMs: systemdSpanMs(stop) }), []);
  // One line per attempt would pass journald's default rate limit.
  assert.equal(get('LogRateLimitIntervalSec'), '0');
});

test('start-up warnings: classic queues, a drain longer than the stop timeout', () => {
  const base = loadConfig({ env: {} });
  assert.match(startupWarnings(loadConfig({ env: { NOTIFY_QUEUE_TYPE: 'classic' } }), { stopTimeoutMs: null }).join('\n'), /at-most-once/);
  const long = loadConfig({ env: { NOTIFY_DRAIN_TIMEOUT: '60s' } });
  assert.match(startupWarnings(long, { stopTimeoutMs: 40_000 }).join('\n'), /TimeoutStopSec/);
  assert.deepEqual(startupWarnings(base, { stopTimeoutMs: null }), []);
  assert.equal(parseSystemdTimespan('1min 30s'), 90_000);
  assert.equal(parseSystemdTimespan('infinity'), null);
});

test('NOTIFY_STOP_TIMEOUT is read as the TimeoutStopSec it mirrors: a bare number is seconds', async () => {
  assert.equal(await stopTimeoutMs({ NOTIFY_STOP_TIMEOUT: '40' }), 40_000);
  assert.equal(await stopTimeoutMs({ NOTIFY_STOP_TIMEOUT: '40s' }), 40_000);
  assert.equal(await stopTimeoutMs({ NOTIFY_STOP_TIMEOUT: '1min 30s' }), 90_000);
  assert.equal(await stopTimeoutMs({ NOTIFY_STOP_TIMEOUT: '1.5m' }), 90_000);
  assert.equal(await stopTimeoutMs({ NOTIFY_STOP_TIMEOUT: 'soon' }), null);
});

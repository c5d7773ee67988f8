/**
 * What an idle daemon costs (`--idle`): CPU per second and event-loop
 * wake-ups per second of every process (master, tiers, ingress) of a daemon
 * with nothing to deliver, after it has settled. A daemon per VM idles most
 * of the day, and on a small shared machine its timers take turns from
 * whatever else runs. With `--idle-baseline DIR` (another checkout, built)
 * that build's daemon idles beside this one over the same window, and the
 * ratios this/baseline are the claim.
 *
 * Wake-ups are the main thread's voluntary context switches
 * (`/proc/<pid>/status`): nearly all are the event loop going to sleep in
 * `epoll_wait` and being woken by a timer or I/O (a wait on a lock counts
 * too, so the figure is an approximation).
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { commitOf, round } from '../bench-util.js';
import { byRole, log, startDaemon, table, type BenchContext, type DaemonHandle, type Row, type ScenarioReport } from '../bench-context.js';
import { CLI_PATH } from '../daemon-process.js';
import { cpuMs } from '../cpu.js';

/** Time a daemon gets to start its workers, warm its retry tier and run its first collections before it counts as idle. */
const SETTLE_MS = 20_000;

/** Voluntary context switches of a process's main thread, or null when it is gone. */
function wakeUps(pid: number): number | null {
  try {
    const m = /^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

interface Side {
  readonly label: string;
  readonly dir: string;
  readonly commit: string | null;
  readonly daemon: DaemonHandle;
}

interface Sample {
  readonly cpu: number;
  readonly wake: number;
}

/** Every process's counters; one that cannot be read (it died or restarted while settling) fails the measurement. */
function sample(pids: readonly number[], label: string): Map<number, Sample> {
  const out = new Map<number, Sample>();
  for (const pid of pids) {
    const cpu = cpuMs(pid);
    const wake = wakeUps(pid);
    if (cpu === null || wake === null) throw new Error(`idle: ${label} process ${pid} cannot be read (did it restart?)`);
    out.set(pid, { cpu, wake });
  }
  return out;
}

/** Per second over `seconds`, from two samples; a process missing from either (it restarted) fails the measurement. */
function rates(before: Map<number, Sample>, after: Map<number, Sample>, seconds: number, label: string): { cpuMsPerS: number; wakeUpsPerS: number; perProcess: { pid: number; cpuMsPerS: number; wakeUpsPerS: number }[] } {
  const perProcess = [...before].map(([pid, b]) => {
    const a = after.get(pid);
    if (!a) throw new Error(`idle: ${label} process ${pid} went away during the measurement`);
    return { pid, cpuMsPerS: round((a.cpu - b.cpu) / seconds, 1), wakeUpsPerS: round((a.wake - b.wake) / seconds, 1) };
  });
  return {
    cpuMsPerS: round(perProcess.reduce((s, p) => s + p.cpuMsPerS, 0), 1),
    wakeUpsPerS: round(perProcess.reduce((s, p) => s + p.wakeUpsPerS, 0)),
    perProcess,
  };
}

export async function idle(ctx: BenchContext): Promise<ScenarioReport> {
  const { flags } = ctx;
  if (!flags.idle) return { record: { idle: null }, head: '', memory: [], tail: '' };
  const ownDir = resolve(dirname(CLI_PATH), '..', '..');
  const sides: Side[] = [{ label: 'this build', dir: ownDir, commit: commitOf(ownDir), daemon: await startDaemon(ctx, 'default', 'idle') }];
  if (flags.idleBaseline !== null) {
    const dir = resolve(flags.idleBaseline);
    sides.push({ label: `baseline ${flags.idleBaseline}`, dir, commit: commitOf(dir), daemon: await startDaemon(ctx, 'default', 'idlebase', resolve(dir, 'dist', 'src', 'cli.js')) });
  }
  log(`idle: ${sides.length} daemon(s) settling ${SETTLE_MS / 1000} s, then ${flags.idleSeconds} s measured side by side`);
  await sleep(SETTLE_MS);
  const before = sides.map((s) => sample(s.daemon.pids(), s.label));
  const t0 = performance.now();
  await sleep(flags.idleSeconds * 1000);
  const after = sides.map((s) => sample(s.daemon.pids(), s.label));
  const seconds = (performance.now() - t0) / 1000;
  const measured = sides.map((s, i) => ({ side: s, ...rates(before[i]!, after[i]!, seconds, s.label) }));
  for (const m of measured) {
    const perPid = Object.fromEntries(m.perProcess.map((p) => [p.pid, `${p.cpuMsPerS}/${p.wakeUpsPerS}`]));
    log(`idle ${m.side.label}: ${m.cpuMsPerS} ms of CPU/s, ${m.wakeUpsPerS} wake-ups/s (per process, CPU ms/s / wake-ups/s: ${byRole(m.side.daemon.pids(), perPid)})`);
  }
  const rows: Row[] = [['idle daemon', 'CPU ms/s', 'wake-ups/s', 'commit']];
  for (const m of measured) rows.push([m.side.label, m.cpuMsPerS, m.wakeUpsPerS, m.side.commit?.slice(0, 10) ?? '-']);
  const base = measured[1];
  const ratio = (a: number, b: number): number | null => (b > 0 ? round(a / b, 2) : null);
  const times = (r: number | null): string => (r === null ? '-' : `${r}x`);
  if (base) rows.push(['this / baseline', times(ratio(measured[0]!.cpuMsPerS, base.cpuMsPerS)), times(ratio(measured[0]!.wakeUpsPerS, base.wakeUpsPerS)), '']);
  return {
    record: {
      idle: {
        seconds: round(seconds, 1),
        settle_s: SETTLE_MS / 1000,
        sides: measured.map((m) => ({ label: m.side.label, dir: m.side.dir, commit: m.side.commit, cpu_ms_per_s: m.cpuMsPerS, wake_ups_per_s: m.wakeUpsPerS, per_process: m.perProcess })),
        cpu_ratio: base ? ratio(measured[0]!.cpuMsPerS, base.cpuMsPerS) : null,
        wake_ups_ratio: base ? ratio(measured[0]!.wakeUpsPerS, base.wakeUpsPerS) : null,
      },
    },
    head: `\n== idle daemon: ${round(seconds)} s after ${SETTLE_MS / 1000} s of settling, all processes\n${table(rows)}\n`,
    memory: [],
    tail: '',
  };
}

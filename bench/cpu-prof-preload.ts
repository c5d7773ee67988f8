/**
 * `node --cpu-prof` for processes whose command line the bench does not own
 * (`--cpu-prof` is refused in NODE_OPTIONS, `--import` is not): loaded with
 * `NODE_OPTIONS=--import=<this file>` and `BENCH_CPU_PROF_DIR=<dir>`, it
 * profiles the process from start to exit through the inspector and writes
 * `<dir>/CPU.<pid>.<role>.cpuprofile` (same format as `--cpu-prof`).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.BENCH_CPU_PROF_DIR;
const role = process.env.NOTIFYD_ROLE ? `${process.env.NOTIFYD_ROLE}${process.env.NOTIFYD_TIER ?? ''}` : 'master';
// BENCH_CPU_PROF_ONLY=tier1: one process alone, so the others' profilers do not load the machine it runs on.
const only = process.env.BENCH_CPU_PROF_ONLY;
if (dir && (!only || only === role)) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: Number(process.env.BENCH_CPU_PROF_INTERVAL_US ?? 500) });
  session.post('Profiler.start');
  let written = false;
  process.on('exit', () => {
    if (written) return;
    written = true;
    // A same-thread inspector session answers synchronously, so this works in 'exit'.
    session.post('Profiler.stop', (err, res) => {
      if (err || !res) return;
      try {
        writeFileSync(join(dir, `CPU.${process.pid}.${role}.cpuprofile`), JSON.stringify(res.profile));
      } catch {
        /* directory gone: nothing to do at exit */
      }
    });
  });
}

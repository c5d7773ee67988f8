import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

/**
 * CPU time accounting from /proc/<pid>/stat (utime + stime). On a shared
 * 2-core machine throughput swings with whatever else runs; CPU spent per
 * notification does much less, so the bench reports both.
 */
let ticksPerSec = 100;
try {
  ticksPerSec = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {
  /* Linux default */
}

/** utime + stime of a process in ms, or null when it is gone. */
export function cpuMs(pid: number): number | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may hold spaces and parentheses: fields start after the last ')'.
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / ticksPerSec;
  } catch {
    return null;
  }
}

/**
 * Clock ticks the whole machine spent busy, and in all, since boot (first
 * line of /proc/stat): two reads give how busy it was in between. Busy is
 * user, nice, system, irq, softirq and steal; idle and iowait are not.
 */
export function machineTicks(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, total: busy + idle + iowait };
}

/** Pids whose /proc/<pid>/comm is `name` (e.g. `beam.smp`, `redis-server`). */
export function pidsByComm(name: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() === name) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** CPU ms spent by named groups of processes between `start()` and `stop()`. */
export class CpuMeter {
  private before = new Map<number, number>();

  constructor(private readonly groups: Record<string, readonly number[]>) {}

  start(): this {
    for (const pids of Object.values(this.groups)) for (const p of pids) this.before.set(p, cpuMs(p) ?? 0);
    return this;
  }

  stop(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [g, pids] of Object.entries(this.groups)) {
      let ms = 0;
      for (const p of pids) {
        const now = cpuMs(p);
        if (now !== null) ms += now - (this.before.get(p) ?? now);
      }
      out[g] = ms;
    }
    return out;
  }
}

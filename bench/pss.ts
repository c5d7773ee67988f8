import { readFile } from 'node:fs/promises';

/**
 * Proportional set size of one process in KiB (`Pss:` of
 * /proc/<pid>/smaps_rollup): shared pages (the node binary, shared libraries)
 * are divided among the processes mapping them, so a sum over processes counts
 * them once. Null when the process is gone or the file is unreadable.
 */
export async function pssKiB(pid: number): Promise<number | null> {
  try {
    const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
    const m = /^Pss:\s+(\d+)\s+kB/m.exec(text);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Sum of PSS over `pids` in MiB, and how many of them were readable. */
export async function pssSumMiB(pids: readonly number[]): Promise<{ mib: number; seen: number; perPid: Record<number, number> }> {
  const vals = await Promise.all(pids.map((p) => pssKiB(p)));
  let kib = 0;
  let seen = 0;
  const perPid: Record<number, number> = {};
  vals.forEach((v, i) => {
    if (v !== null) {
      kib += v;
      seen++;
      perPid[pids[i]!] = Math.round(v / 1024);
    }
  });
  return { mib: kib / 1024, seen, perPid };
}

/** Samples the PSS sum of a set of processes every `everyMs`; keeps the peak. */
export class PssSampler {
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  peakMiB = 0;
  peakPerPid: Record<number, number> = {};
  samples = 0;

  constructor(
    private readonly pids: () => readonly number[],
    private readonly everyMs = 200,
  ) {}

  start(): this {
    const tick = async (): Promise<void> => {
      if (this.busy) return;
      this.busy = true;
      try {
        const s = await pssSumMiB(this.pids());
        this.samples++;
        if (s.mib > this.peakMiB) {
          this.peakMiB = s.mib;
          this.peakPerPid = s.perPid;
        }
      } finally {
        this.busy = false;
      }
    };
    void tick();
    this.timer = setInterval(() => void tick(), this.everyMs);
    return this;
  }

  async stop(): Promise<{ peakMiB: number; samples: number; perPid: Record<number, number> }> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    // one last sample so a very short phase still has one under load
    const s = await pssSumMiB(this.pids());
    this.samples++;
    if (s.mib > this.peakMiB) {
      this.peakMiB = s.mib;
      this.peakPerPid = s.perPid;
    }
    return { peakMiB: this.peakMiB, samples: this.samples, perPid: this.peakPerPid };
  }
}

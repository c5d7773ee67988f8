/**
 * What re-touching memory costs on this machine after a quiet spell, measured
 * in the bench's own process beside the daemon's (stop 62): a buffer of
 * `mib` MiB, one byte read per 4-KiB page. Warm, that is a cache and TLB
 * miss per page (about 0.3 ms for 64 MiB here); after the same idle as the
 * daemon's, it is about what each idle page the daemon touches again costs
 * it (the bench takes it before the run's tier-0 warm-up, a few seconds
 * short of tier 1's idle), whatever notifyd does. On this VM it grew to
 * 45 ms after 150 s, 150 times the warm figure.
 */
export class RetouchProbe {
  private readonly buf: Buffer;
  /** What the reads add up to, kept so that no compiler may drop them. */
  checksum = 0;

  constructor(mib = 64) {
    this.buf = Buffer.alloc(mib * 1048576, 1);
    // Once before any figure is taken: the pages mapped, the loop compiled.
    this.touch();
  }

  /** Reads one byte of every page, ms. */
  touch(): number {
    const start = process.hrtime.bigint();
    let sum = 0;
    for (let i = 0; i < this.buf.length; i += 4096) sum += this.buf[i]!;
    this.checksum = sum;
    return Number(process.hrtime.bigint() - start) / 1e6;
  }
}

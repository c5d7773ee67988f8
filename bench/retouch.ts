/**
 * What re-touching memory costs on this machine after a quiet spell, measured
 * in the bench's own process beside the daemon's (stop 62): a buffer of
 * `mib` MiB, one byte read per 4-KiB page. Warm, that is a TLB walk per page
 * (about 0.3 ms for 64 MiB here); after the same idle as the daemon's, it is
 * what each idle page the daemon touches again costs it, whatever notifyd
 * does. On this VM (shadow-paged, `kdamond` marking idle pages old) it grew
 * to 45 ms after 150 s, 150 times the warm figure.
 */
export class RetouchProbe {
  private readonly buf: Buffer;

  constructor(mib = 64) {
    this.buf = Buffer.alloc(mib * 1048576, 1);
    this.touch();
  }

  /** Reads one byte of every page, ms. */
  touch(): number {
    const start = process.hrtime.bigint();
    let sum = 0;
    for (let i = 0; i < this.buf.length; i += 4096) sum += this.buf[i]!;
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    // The sum keeps the loop from being optimised away.
    return sum < 0 ? -1 : ms;
  }
}

import { pushPendingWrites } from './connection.js';

/**
 * Pushes what a caller just wrote on an amqplib channel past Nagle's
 * algorithm (`pushPendingWrites`), once per tick however many frames the
 * tick wrote.
 *
 * amqplib does not write a frame to its socket in the call that makes it:
 * the channel's buffer announces it in a `nextTick`, and the connection's
 * muxer writes in a `setImmediate` scheduled from there. So the push goes
 * out from a `setImmediate` scheduled in a `nextTick` queued after the
 * frame was made: it runs after that write. A push from a `setImmediate`
 * scheduled in the call itself would run before the write and push nothing
 * (test/unit/write-push.test.ts checks both against amqplib's own code).
 * A frame made after this tick's `nextTick` has run gets a push of its own.
 * Frames amqplib holds back because the socket's buffer is full go out on
 * its 'drain', unpushed: rare, and no worse than Nagle.
 */
export class WritePush {
  /** Connections to push once the current tick's `nextTick` runs; empty when none is scheduled. */
  private pending: unknown[] = [];

  /** @param push what sends the pending writes of a connection (`pushPendingWrites`; a test's spy) */
  constructor(private readonly push: (conn: unknown) => unknown = pushPendingWrites) {}

  /**
   * Call right after writing a frame on `conn` (an amqplib `ChannelModel`):
   * pushes its socket once amqplib has written what was sent on it so far
   * in this tick. The connection is captured now, so a caller that lets go
   * of it right after its last write (a drain) is still pushed; each
   * connection asked for in a tick is pushed once.
   */
  request(conn: unknown): void {
    if (this.pending.length > 0) {
      if (!this.pending.includes(conn)) this.pending.push(conn);
      return;
    }
    this.pending.push(conn);
    process.nextTick(() => {
      const conns = this.pending;
      this.pending = [];
      setImmediate(() => {
        for (const c of conns) this.push(c);
      });
    });
  }
}

import { pushPendingWrites } from './connection.js';

/**
 * Pushes what a caller just wrote on an amqplib channel past Nagle's
 * algorithm (`pushPendingWrites`), once per tick however many frames the
 * tick wrote.
 *
 * amqplib does not write a frame to its socket in the call that makes it:
 * the channel's buffer announces it in a `nextTick`, and the connection's
 * muxer writes in a `setImmediate` scheduled from there. A push scheduled
 * from a later `nextTick` (this one's, requested after the frame was made)
 * therefore runs after that write; a push from a `setImmediate` scheduled
 * in the call itself would run before it and push nothing
 * (test/unit/write-push.test.ts checks both against amqplib's own code).
 * A frame written after this tick's `nextTick` has run gets a push of its
 * own. Frames amqplib holds back because the socket's buffer is full go
 * out on its 'drain', unpushed: rare, and no worse than Nagle.
 */
export class WritePush {
  private scheduled = false;

  /** @param push what sends the pending writes of a connection (`pushPendingWrites`; a test's spy) */
  constructor(private readonly push: (conn: unknown) => unknown = pushPendingWrites) {}

  /**
   * Pushes `conn`'s socket after amqplib has written what was sent on it so
   * far in this tick. The connection is captured now: a caller that clears
   * its own reference right after its last write (a drain) is still pushed.
   */
  request(conn: unknown): void {
    if (this.scheduled) return;
    this.scheduled = true;
    process.nextTick(() => {
      this.scheduled = false;
      setImmediate(() => this.push(conn));
    });
  }
}

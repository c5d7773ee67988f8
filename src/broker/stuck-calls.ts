/**
 * How long the broker has left a call unanswered, from samples of what each
 * channel waits for. A wait is named by a token that changes whenever the
 * channel gets an answer (amqplib's pending-reply callback, or its closing
 * handler), so a token seen unchanged across samples is the same call still
 * waiting. Pure: the caller reads the tokens and keeps the clock.
 */
export class StuckCalls {
  /** Per channel (or connection): the token last seen and when it was first seen. */
  private seen = new Map<object, { readonly token: unknown; readonly since: number }>();

  /**
   * Records what each channel waits for now (`null`: nothing) and returns how
   * long the longest of these waits has lasted, in ms (0 when none waits). A
   * wait first seen now counts from now, so it is noticed between one and two
   * samples late at worst; channels not listed are forgotten.
   */
  observe(now: number, waits: Iterable<readonly [key: object, token: unknown]>): number {
    const next = new Map<object, { readonly token: unknown; readonly since: number }>();
    let longest = 0;
    for (const [key, token] of waits) {
      if (token === null || token === undefined) continue;
      const prev = this.seen.get(key);
      const since = prev !== undefined && prev.token === token ? prev.since : now;
      next.set(key, { token, since });
      longest = Math.max(longest, now - since);
    }
    this.seen = next;
    return longest;
  }
}

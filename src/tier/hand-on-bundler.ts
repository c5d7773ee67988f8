import { bundleable, encodeBundle, entrySize, type BundleEntry } from '../broker/bundle.js';
import type { ChannelLink } from './channel-link.js';

/** How the bundler groups hand-ons. */
export interface BundlerOptions {
  /** Most hand-ons in one bundle; below 2, nothing is bundled. */
  readonly max: number;
  /** Bound on a bundle's encoded entries, bytes. */
  readonly maxBytes: number;
  /** How long the first hand-on of a bundle waits for others, ms. */
  readonly lingerMs: number;
}

interface Open {
  readonly link: ChannelLink;
  readonly exchange: string;
  readonly routingKey: string;
  readonly entries: BundleEntry[];
  readonly settle: ((taken: boolean) => void)[];
  bytes: number;
  readonly timer: NodeJS.Timeout;
}

/**
 * Groups hand-ons to the same queue that arrive within a few milliseconds
 * into one broker message (src/broker/bundle.ts). Each caller learns whether
 * the broker took the bundle holding its hand-on; when not (a lone hand-on,
 * a nack, a return, a lost channel) it publishes its own as before, so a
 * bundle never decides a notification's fate, only what it costs.
 */
export class HandOnBundler {
  private readonly open = new Map<string, Open>();
  /** Open bundles are per channel as well as per queue: a worker's old consumer channels hand on beside its current one. */
  private readonly linkIds = new WeakMap<ChannelLink, number>();
  private nextLinkId = 0;

  constructor(
    private opts: BundlerOptions,
    /** Told of each bundle the broker took, with its size. */
    private readonly onBundle: (size: number) => void = () => undefined,
  ) {}

  /** Bundles from now on follow these (a reload). */
  configure(opts: BundlerOptions): void {
    this.opts = opts;
  }

  /** Resolves true once a bundle holding the hand-on is confirmed; false: publish it alone. Never rejects. */
  add(from: ChannelLink, exchange: string, routingKey: string, entry: BundleEntry): Promise<boolean> {
    const link = from.root ?? from;
    // A bundle carries no entry's own expiration: such a hand-on goes alone.
    if (this.opts.max < 2 || link.closed || !bundleable(entry.options) || entry.options.expiration !== undefined) return Promise.resolve(false);
    const size = entrySize(entry);
    if (size > this.opts.maxBytes) return Promise.resolve(false);
    let id = this.linkIds.get(link);
    if (id === undefined) {
      id = this.nextLinkId++;
      this.linkIds.set(link, id);
    }
    const key = `${id}\u0000${exchange}\u0000${routingKey}`;
    let o = this.open.get(key);
    // A bundle is published on its entries' channel: a channel that goes takes only its own bundles.
    // Entries of delivered bundles share their channel's root link, so they share bundles too.
    if (o !== undefined && o.bytes + size > this.opts.maxBytes) {
      this.flush(key, o);
      o = undefined;
    }
    if (o === undefined) {
      o = { link, exchange, routingKey, entries: [], settle: [], bytes: 0, timer: setTimeout(() => this.flush(key, o!), this.opts.lingerMs) };
      this.open.set(key, o);
    }
    const open = o;
    return new Promise<boolean>((resolve) => {
      open.entries.push(entry);
      open.settle.push(resolve);
      open.bytes += size;
      if (open.entries.length >= this.opts.max) this.flush(key, open);
    });
  }

  /** Publishes every open bundle now (a worker stopping need not wait for the linger). Idempotent. */
  flushAll(): void {
    for (const [key, o] of [...this.open]) this.flush(key, o);
  }

  private flush(key: string, o: Open): void {
    if (this.open.get(key) === o) this.open.delete(key);
    clearTimeout(o.timer);
    const settle = o.settle.splice(0);
    const entries = o.entries.splice(0);
    if (entries.length === 0) return;
    if (entries.length === 1 || o.link.closed) {
      for (const s of settle) s(false);
      return;
    }
    let b: ReturnType<typeof encodeBundle>;
    try {
      b = encodeBundle(entries);
    } catch {
      for (const s of settle) s(false);
      return;
    }
    // Never synchronously: a throw here would leave the callers of `add` unsettled.
    Promise.resolve()
      .then(() => o.link.publish(o.exchange, o.routingKey, b.content, b.options))
      .then(
        () => {
          this.onBundle(entries.length);
          for (const s of settle) s(true);
        },
        () => {
          for (const s of settle) s(false);
        },
      );
  }
}

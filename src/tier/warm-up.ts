import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ConsumeMessage } from 'amqplib';
import pino from 'pino';
import { namesFor, routeForAttempt, type Names } from '../broker/topology.js';
import { historyOn, type Config, type LimitsConfig } from '../core/config-model.js';
import { H, encodeNotification, validateNotification } from '../core/message.js';
import { createWorkerMetrics } from '../core/metrics.js';
import { createAddressGuard, type AddressGuard } from '../delivery/address-guard.js';
import { SelfAddresses } from '../delivery/connector.js';
import { HttpDeliverer } from '../delivery/deliverer.js';
import type { Signer } from '../delivery/signing.js';
import type { MerchantSigners } from '../merchants/signers.js';
import { HistorySink } from '../history/sink.js';
import type { ChannelLink } from './channel-link.js';
import { MerchantSlots } from './merchant-slots.js';
import { OriginGate, type GateOptions } from './origin-gate.js';
import { AttemptPipeline } from './pipeline.js';
import { WarmUpFrames, deathHeaders } from './warm-up-frames.js';

/**
 * Why this exists (issue 18): a tier worker idle since start meets its first
 * burst with every function of its hot path still interpreted (the profile of
 * a cold tier 1 showed 3–4× the CPU per attempt of the same worker a few
 * seconds later, spread over undici, the pipeline, decoding and metrics, no
 * single hot spot). Retries then wait on the CPU, not on their TTL. So each
 * tier worker runs a few thousand synthetic notifications through a
 * throwaway copy of its own pipeline at start, against an HTTP server inside
 * the process, before it consumes: V8 optimises the shared code, and the
 * first real retry runs on it. Each synthetic delivery comes out of
 * amqplib's frame codec with the dead-letter headers the broker adds
 * (src/tier/warm-up-frames.ts), so the consumer's decoding is warm too.
 *
 * Nothing of it is seen outside the process: no broker (a link that
 * resolves every publish at once), no merchant, no log line (a logger to
 * nowhere), no metric (a private registry), a gate and an HTTP pool of its
 * own, all dropped afterwards.
 */

/** What a warm-up did. */
export interface WarmUpReport {
  /** Synthetic notifications that went through the pipeline. */
  readonly attempts: number;
  readonly ms: number;
  /** Of them, deliveries decoded by amqplib's frame codec (0: that amqplib does not have it where expected). */
  readonly frames: number;
}

/** How much warm-up: `count` notifications, but not longer than `budgetMs`; `concurrency` in flight. */
export interface WarmUpOptions {
  readonly count: number;
  readonly budgetMs: number;
  readonly concurrency: number;
}

/** The worker's signers: signing is pure, and warming them starts their lazy pools (RSA workers) before a real attempt needs them. */
export interface WarmUpSigners {
  readonly signer: Signer;
  readonly merchantSigners: MerchantSigners;
}

/** Path of the i-th synthetic attempt: every other one answered 500, so both the retry and the delivered hand-on get used. */
export function warmUpPath(i: number): string {
  return i % 2 === 0 ? `/fail/w-${i}` : `/ok/w-${i}`;
}

/** The in-process server's answer to a path of `warmUpPath`. */
export function warmUpStatus(path: string): number {
  return path.startsWith('/fail/') ? 500 : 200;
}

/**
 * Whether the i-th synthetic notification carries an `expiration` of its own
 * into its wait queue (half of them, neither all failures nor all successes):
 * a retry does when its failed attempt took part of its delay, one after a
 * skip does not, and the two come out of the broker in different shapes
 * (`deathHeaders`). A pair of each, so both paths see both shapes.
 */
export function warmUpExpires(i: number): boolean {
  return i % 4 >= 2;
}

/** The `expiration` a synthetic notification that `warmUpExpires` had on its hand-on (a value a 1-s rung could have). */
export const WARM_UP_EXPIRATION = '750';

/**
 * The i-th synthetic delivery of `tier`: a payment callback of the usual size
 * to `base` with the headers a hand-on from the tier before sets (what the
 * pipeline reads: attempt, due time, first attempt) and, when it comes from
 * the wait queue `from`, those the broker adds on dead-lettering it.
 * `limits` is the worker's own (required, so no caller falls back to a
 * copy): the object its pipeline checks real
 * notifications against, so the checks are optimised for that one (see
 * `warmUpConfig`). Limits too tight for a payment callback of the usual
 * size (ids of up to 16 characters, URLs of about 35, bodies of about 175
 * bytes) make this throw `VALIDATION`: the warm-up ends there with that
 * error, logged, and the tier starts as warm as it got (before, each such
 * synthetic notification was parked invalid inside the warm-up, which
 * warmed nothing and said so nowhere).
 */
export function warmUpMessage(tier: number, i: number, base: string, now: number, limits: LimitsConfig, from: string | null = null): ConsumeMessage {
  const id = `warm-up-${tier}-${i}`;
  const n = validateNotification(
    {
      id,
      url: `${base}${warmUpPath(i)}`,
      body: { event: 'payment.succeeded', out_trade_no: id, total_amount: '88.88', currency: 'CNY', trade_status: 'TRADE_SUCCESS', gmt_payment: new Date(now).toISOString() },
      createdAt: now,
    },
    limits,
    { requireId: true },
  );
  const headers: Record<string, unknown> = { [H.attempt]: tier, [H.dueAt]: now };
  if (tier > 0) Object.assign(headers, { [H.firstAttemptAt]: now, [H.lastError]: 'status 500' });
  if (from !== null) Object.assign(headers, deathHeaders(from, Math.floor(now / 1000), warmUpExpires(i) ? WARM_UP_EXPIRATION : undefined));
  return {
    content: encodeNotification(n),
    fields: { deliveryTag: i + 1, redelivered: false, exchange: '', routingKey: '', consumerTag: 'warm-up' },
    properties: {
      contentType: 'application/json',
      contentEncoding: undefined,
      headers,
      deliveryMode: 2,
      priority: undefined,
      correlationId: undefined,
      replyTo: undefined,
      expiration: undefined,
      messageId: id,
      timestamp: Math.floor(now / 1000),
      type: undefined,
      userId: undefined,
      appId: undefined,
      clusterId: undefined,
    },
  };
}

/**
 * Pure: the wait queue whose dead-lettering brings `tier` its deliveries, or
 * null when a hand-on publishes to it straight (no delay): the route a
 * hand-on to it takes (src/broker/topology.ts), so the warm-up's headers
 * follow the schedule.
 */
export function deadLetteredFrom(names: Names, scheduleMs: readonly number[], tier: number): string | null {
  const route = routeForAttempt(names, scheduleMs, tier);
  return route.exchange === '' ? route.routingKey : null;
}

/** A channel that takes every publish at once and forgets every ack, once amqplib has encoded them (nothing is sent). */
function nowhere(frames: WarmUpFrames): ChannelLink {
  return {
    publish: (exchange, routingKey, content, options) => {
      frames.publish(exchange, routingKey, content, options);
      return Promise.resolve();
    },
    ack: (msg) => frames.ack(msg.fields.deliveryTag),
    requeue: () => undefined,
    closed: false,
  };
}

function listen(): Promise<Server> {
  const server = createServer((req, res) => {
    // Read the body as a merchant would, so the request side runs whole.
    req.resume();
    req.on('end', () => {
      const status = warmUpStatus(req.url ?? '');
      res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 200 ? 'success' : 'fail');
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

/**
 * The configuration the throwaway pipeline runs on: the worker's own object
 * wherever it can be (pure). Why: V8 specialises optimised code on the
 * hidden classes of the objects it ran on, and a copy made by spreading has
 * other classes than the frozen original; on such a copy, every read of the
 * configuration on the hot path deoptimised at the first real delivery
 * after the warm-up (docs/performance.md, "Stop 64: the warm-up on the
 * worker's own objects"). A copy is made only where
 * `merchants.required` would park the synthetic notifications, which name no
 * merchant (there is no registry here): at tier 0. A later tier's carry a
 * first attempt, and a retry under way is not held to it.
 */
export function warmUpConfig(config: Config, tier: number): Config {
  if (!config.merchants.required || tier > 0) return config;
  return { ...config, merchants: { ...config.merchants, required: false } };
}

/**
 * The warm-up deliverer's SSRF guard (pure): as the worker's, none when
 * private networks are allowed, else a guard of the same kind with the
 * in-process server's loopback address allowed, so the warm-up's
 * connections and requests take the guarded path where the worker's do.
 * (Its checks take the allow-list branch; a public merchant's address
 * returns before it.)
 */
export function warmUpGuard(delivery: Config['delivery']): AddressGuard | null {
  return delivery.allowPrivateNetworks ? null : createAddressGuard({ allowPrivateNetworks: false, allowCidrs: [...delivery.allowCidrs, '127.0.0.1/32'] });
}

/** A throwaway pipeline of a tier and the HTTP server it delivers to, for one warm-up. */
export interface WarmUpRig {
  readonly pipeline: AttemptPipeline;
  /** The in-process merchant's origin, for `warmUpMessage`. */
  readonly base: string;
  /** The wait queue the tier's deliveries are dead-lettered from (`deadLetteredFrom`). */
  readonly from: string | null;
  /** Idempotent. */
  close(): Promise<void>;
}

/**
 * Builds the throwaway pipeline of `tier` from `config` and the HTTP server
 * it delivers to (see the module comment). The caller closes it.
 */
export async function openWarmUpRig(config: Config, tier: number, gate: GateOptions, signers: WarmUpSigners, stop: AbortSignal): Promise<WarmUpRig> {
  let server: Server | null = null;
  let deliverer: HttpDeliverer | null = null;
  let history: HistorySink | null = null;
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      await history?.close().catch(() => undefined);
      await deliverer?.close().catch(() => undefined);
      if (server) {
        server.closeAllConnections();
        await new Promise<void>((r) => server!.close(() => r()));
      }
    })());
  try {
    server = await listen();
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // The worker's own delivery settings, and a guard of the kind it has with the loopback allowed: it is this process's own server.
    deliverer = new HttpDeliverer(config.delivery, warmUpGuard(config.delivery), new SelfAddresses());
    const quiet = pino({ level: config.logLevel === 'silent' ? 'info' : config.logLevel }, { write: () => undefined });
    history = historyOn(config) ? new HistorySink(() => Promise.resolve()) : null;
    const names = namesFor(config.prefix);
    const pipeline = new AttemptPipeline(
      {
        tier,
        names,
        logger: quiet,
        attemptLogger: quiet,
        metrics: createWorkerMetrics({}, false),
        stopSignal: stop,
        // No tick: the synthetic merchant answers at once, so nothing waits
        // past a release (which serves waiters), and this gate dies with the warm-up.
        gate: new OriginGate(gate),
        merchants: null,
        slots: new MerchantSlots(),
        failureMarks: null,
        history,
        // Present, as in the worker's own deps, so the two objects share V8's hidden class (see `warmUpConfig`).
        bundler: null,
      },
      { config: warmUpConfig(config, tier), signer: signers.signer, merchantSigners: signers.merchantSigners, deliverer },
    );
    return { pipeline, base, from: deadLetteredFrom(names, config.scheduleMs, tier), close };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Runs synthetic notifications through a throwaway pipeline of `tier` built
 * from `config` (see the module comment). Never throws: a warm-up that
 * fails leaves the worker as cold as it was, nothing worse; the error is
 * returned for the log.
 */
export async function warmUp(
  config: Config,
  tier: number,
  gate: GateOptions,
  signers: WarmUpSigners,
  opts: WarmUpOptions,
  /** The worker's: a worker stopping during its warm-up closes its signers, so the lanes end at once. */
  stop: AbortSignal = new AbortController().signal,
): Promise<WarmUpReport & { error?: Error }> {
  const started = Date.now();
  if (opts.count <= 0) return { attempts: 0, ms: 0, frames: 0 };
  let rig: WarmUpRig | null = null;
  let attempts = 0;
  const frames = new WarmUpFrames();
  try {
    rig = await openWarmUpRig(config, tier, gate, signers, stop);
    const { pipeline, base, from } = rig;
    const link = nowhere(frames);
    const deadline = started + opts.budgetMs;
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < opts.count && Date.now() < deadline && !stop.aborted) {
        const i = next++;
        await pipeline.handle(link, frames.delivery(warmUpMessage(tier, i, base, Date.now(), config.limits, from)));
        attempts++;
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, opts.concurrency) }, lane));
    return { attempts, ms: Date.now() - started, frames: frames.decoded };
  } catch (err) {
    return { attempts, ms: Date.now() - started, frames: frames.decoded, error: err as Error };
  } finally {
    await rig?.close();
  }
}

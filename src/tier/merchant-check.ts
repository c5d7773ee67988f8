/**
 * What a tier worker does with a notification's merchant before any attempt
 * (DESIGN §10): nothing when it names none (parked when `merchants.required`,
 * which a producer past the ingress, such as `NotifyClient`, is not held to
 * otherwise: DESIGN §4); park it when the merchant is
 * disabled or the URL is not one of its origins; wait when the registry
 * cannot say yet. Pure, given the directory's state.
 */
import type { DeadReason, Notification } from '../core/message.js';
import type { MerchantEntry } from '../merchants/merchant.js';

/** What the directory can tell (the process's copy of the registry). */
export interface MerchantLookup {
  get(id: string): MerchantEntry | undefined;
  /** `get`, asking the registry itself for an id the copy does not have (yet). */
  lookup(id: string): Promise<MerchantEntry | undefined>;
  readonly isLoaded: boolean;
  readonly isUp: boolean;
}

export type MerchantVerdict =
  | { readonly kind: 'none' }
  | { readonly kind: 'ok'; readonly entry: MerchantEntry }
  /** Not an attempt: it waits (deferred) until the registry can say. */
  | { readonly kind: 'wait'; readonly why: string }
  | { readonly kind: 'park'; readonly reason: DeadReason; readonly error: string };

/**
 * `budgetLeftMs` is how much longer the notification may wait at this tier:
 * an unknown merchant while the registry answers may be one created a moment
 * ago on another daemon, so it waits that long before it is parked; while
 * the registry cannot be read it waits whatever the budget (parking it would
 * lose nothing, but the merchant is most likely fine).
 */
export function checkMerchant(n: Notification, origin: string | null, dir: MerchantLookup | null, budgetLeftMs: number, required: boolean): MerchantVerdict {
  if (n.merchant === undefined) {
    return required ? { kind: 'park', reason: 'invalid', error: 'merchant: is required (merchants.required)' } : { kind: 'none' };
  }
  if (dir === null) return { kind: 'park', reason: 'invalid', error: `names merchant ${n.merchant} but this daemon has no merchant registry (NOTIFY_DATABASE_URL)` };
  const m = dir.get(n.merchant);
  if (m === undefined) {
    if (!dir.isLoaded || !dir.isUp) return { kind: 'wait', why: 'the merchant registry cannot be read' };
    if (budgetLeftMs > 0) return { kind: 'wait', why: `merchant ${n.merchant} is not known (yet)` };
    return { kind: 'park', reason: 'invalid', error: `unknown merchant ${n.merchant}` };
  }
  if (!m.enabled) return { kind: 'park', reason: 'disabled', error: `merchant ${m.id} is disabled` };
  if (origin !== null && !m.allowedOrigins.has(origin)) {
    return { kind: 'park', reason: 'invalid', error: `url: ${origin} is not one of merchant ${m.id}'s allowed origins` };
  }
  return { kind: 'ok', entry: m };
}

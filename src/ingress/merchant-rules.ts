/**
 * What the ingress refuses for a notification's merchant (DESIGN §10), with
 * the answer the producer gets: the same rules the tier workers park by, told
 * at once.
 */
import type { Config, SigningScheme } from '../core/config.js';
import { ErrorCodes, NotifyError } from '../core/errors.js';
import type { Notification } from '../core/message.js';
import type { MerchantLookup } from '../tier/merchant-check.js';

/**
 * Checks `n` against the registry; returns the signing scheme it will be
 * signed with (the merchant's, or the daemon's when it names none).
 */
export async function merchantRules(n: Notification, config: Config, dir: MerchantLookup | null): Promise<SigningScheme> {
  if (n.merchant === undefined) {
    if (config.merchants.required) throw new NotifyError(ErrorCodes.VALIDATION, 'merchant: is required (merchants.required)', 'merchant');
    return config.signing.scheme;
  }
  if (dir === null) throw new NotifyError(ErrorCodes.UNKNOWN_MERCHANT, `merchant ${n.merchant}: this daemon has no merchant registry (NOTIFY_DATABASE_URL)`, 'merchant');
  const m = dir.get(n.merchant) ?? (await dir.lookup(n.merchant));
  if (m === undefined) {
    // Maybe created a moment ago while the registry cannot be read: nothing was accepted, so the producer retries.
    if (!dir.isLoaded || !dir.isUp) throw new NotifyError(ErrorCodes.REGISTRY_UNAVAILABLE, 'the merchant registry cannot be read right now; retry');
    throw new NotifyError(ErrorCodes.UNKNOWN_MERCHANT, `merchant ${n.merchant} is not registered`, 'merchant');
  }
  if (!m.enabled) throw new NotifyError(ErrorCodes.MERCHANT_DISABLED, `merchant ${m.id} is disabled`, 'merchant');
  const origin = new URL(n.url).origin;
  if (!m.allowedOrigins.has(origin)) throw new NotifyError(ErrorCodes.VALIDATION, `url: ${origin} is not one of merchant ${m.id}'s allowed origins`, 'url');
  return m.signing;
}

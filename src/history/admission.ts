/**
 * What a resend or a recover must pass before its ladder starts (DESIGN §11):
 * the ingress's own refusals for a new notification. Without it a resend
 * for a disabled merchant answered 202 and was parked `disabled` at once,
 * and a resend during a drain was published by a daemon shutting down.
 */
import type { Config } from '../core/config.js';
import { ErrorCodes, NotifyError } from '../core/errors.js';
import type { Notification } from '../core/message.js';
import { unsignableReason } from '../delivery/signing.js';
import { merchantRules } from '../ingress/merchant-rules.js';
import type { MerchantLookup } from '../tier/merchant-check.js';
import type { AdmitLadder } from './service.js';

/** Where the admission reads the daemon's state (each read per call: a reload or a drain applies at once). */
export interface AdmissionState {
  readonly draining: () => boolean;
  /** Why the broker blocks publishing, or null. */
  readonly blocked: () => string | null;
  readonly config: () => Config;
  /** The merchant registry's copy in this process; null without a database. */
  readonly merchants: MerchantLookup | null;
}

/**
 * Refuses as the ingress refuses a submit: `DRAINING` and `BROKER_BLOCKED`
 * (503), then the merchant rules (`MERCHANT_DISABLED` 409,
 * `UNKNOWN_MERCHANT`, an origin no longer allowed, a body the merchant's
 * scheme cannot sign: 4xx).
 */
export function admission(s: AdmissionState): AdmitLadder {
  return async (n: Notification) => {
    if (s.draining()) throw new NotifyError(ErrorCodes.DRAINING, 'notifyd is shutting down; retry on another instance');
    const blocked = s.blocked();
    if (blocked !== null) throw new NotifyError(ErrorCodes.BROKER_BLOCKED, `the broker blocks publishing (${blocked}); retry later`);
    const scheme = await merchantRules(n, s.config(), s.merchants);
    const unsignable = unsignableReason(scheme, n);
    if (unsignable) throw new NotifyError(ErrorCodes.VALIDATION, `${unsignable.field}: ${unsignable.problem}`, unsignable.field);
  };
}

/**
 * Signers of merchants: each `standard` merchant signs with its own secrets
 * (so no merchant holds a key that verifies another's notifications), `rsa2`
 * merchants share the daemon's RSA key (`signing.keyFile`), `none` signs
 * nothing. Standard signers are built on first use and kept while the
 * merchant's secrets stay the same; the RSA key is parsed when these are made
 * (a worker's start, a config reload), so every rsa2 notification of one
 * settings generation is signed with the same key, whenever the first comes.
 */
import type { SigningConfig } from '../core/config.js';
import { createSigner, type Signer } from '../delivery/signing.js';
import type { MerchantEntry } from './merchant.js';

/** Merchants whose signers are kept; past it the oldest built goes (and is built again when needed). */
const MAX_KEPT = 10_000;

export class MerchantSigners {
  private readonly standard = new Map<string, { readonly version: string; readonly signer: Signer }>();
  private readonly none: Signer;
  private rsa: Signer | null = null;

  /** `daemon`: the daemon's own signer; when it is rsa2, its key and threads serve the rsa2 merchants too. */
  constructor(
    private readonly signing: SigningConfig,
    daemon?: Signer,
  ) {
    this.none = createSigner({ scheme: 'none', secrets: [], keyFile: null, threads: 1 });
    if (!signing.keyFile) return;
    if (daemon?.scheme === 'rsa2') {
      this.rsa = daemon;
      return;
    }
    try {
      this.rsa = this.rsaSigner(signing.keyFile);
    } catch {
      // Tried again at the first rsa2 merchant's notification (see `for`).
    }
  }

  /** The signer of `m`, or why it cannot sign (the notification is then parked `invalid`). */
  for(m: MerchantEntry, now = Date.now()): Signer | string {
    switch (m.signing) {
      case 'none':
        return this.none;
      case 'rsa2':
        if (!this.signing.keyFile) return `merchant ${m.id} signs with rsa2 and this daemon has no signing.keyFile`;
        // A key file that cannot be read (being replaced, a permission) throws SIGNING_FAILED: the notification goes
        // back after a pause and is tried again, reading the file again, rather than parked for good.
        this.rsa ??= this.rsaSigner(this.signing.keyFile);
        return this.rsa;
      case 'standard': {
        // A secret whose grace has ended signs no more, even before the copy hears it was removed.
        const live = signingNow(m, now);
        if (live.length === 0) return m.secrets.length === 0 ? `merchant ${m.id} has no secret that opens (NOTIFY_SECRETS_KEY?)` : `merchant ${m.id} has no secret that signs now (every one's grace has ended)`;
        const version = `${m.version}|${live.length}`;
        const kept = this.standard.get(m.id);
        if (kept?.version === version) return kept.signer;
        const signer = createSigner({ scheme: 'standard', secrets: live, keyFile: null, threads: 1 });
        this.standard.delete(m.id);
        if (this.standard.size >= MAX_KEPT) this.standard.delete(this.standard.keys().next().value as string);
        this.standard.set(m.id, { version, signer });
        return signer;
      }
    }
  }

  /** The rsa2 signer of `keyFile`, with this configuration's threads; throws SIGNING_FAILED when the file cannot be used. */
  private rsaSigner(keyFile: string): Signer {
    return createSigner({ scheme: 'rsa2', secrets: [], keyFile, threads: this.signing.threads });
  }

  /** Closes the RSA pool (the others hold nothing; a shared daemon signer closes twice, which it allows); idempotent. */
  async close(): Promise<void> {
    this.standard.clear();
    await this.rsa?.close();
  }
}

/** Pure: the secrets of `m` whose grace has not ended at `now`, in their order. */
export function signingNow(m: Pick<MerchantEntry, 'secrets' | 'secretEnds'>, now: number): readonly string[] {
  const ends = m.secretEnds;
  const live = (_s: string, i: number): boolean => {
    const end = ends?.[i];
    return end === null || end === undefined || end > now;
  };
  // Called for every delivery of the merchant: its own list unless one has ended (no copy in the common case).
  return m.secrets.every(live) ? m.secrets : m.secrets.filter(live);
}

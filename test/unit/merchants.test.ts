// Merchants without a database: settings validation, sealed secrets, the
// worker's and the ingress's rules, caps and failure marks.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/core/config.js';
import { ErrorCodes, hasCode } from '../../src/core/errors.js';
import { validateNotification } from '../../src/core/message.js';
import { merchantRules } from '../../src/ingress/merchant-rules.js';
import { FailureMarks } from '../../src/merchants/failure-marks.js';
import { normalizeOrigin, validateMerchantSettings, type MerchantEntry } from '../../src/merchants/merchant.js';
import { fingerprint, generateSecret, openSecret, sealSecret } from '../../src/merchants/secrets.js';
import { checkMerchant, type MerchantLookup } from '../../src/tier/merchant-check.js';
import { MerchantSigners, signingNow } from '../../src/merchants/signers.js';
import { MerchantSlots } from '../../src/tier/merchant-slots.js';

const LIMITS = loadConfig({ env: {} }).limits;

function entry(over: Partial<MerchantEntry> = {}): MerchantEntry {
  return { id: 'shop', enabled: true, signing: 'standard', allowedOrigins: new Set(['https://shop.example']), maxConcurrency: null, maxAttempts: null, success: null, failing: false, secrets: ['whsec_AAAA'], version: '1', ...over };
}

function lookup(entries: MerchantEntry[], state: { isLoaded?: boolean; isUp?: boolean } = {}): MerchantLookup {
  const m = new Map(entries.map((e) => [e.id, e]));
  return { get: (id) => m.get(id), lookup: async (id) => m.get(id), isLoaded: state.isLoaded ?? true, isUp: state.isUp ?? true };
}

const note = (over: Record<string, unknown> = {}) => validateNotification({ url: 'https://shop.example/notify', body: { a: 1 }, merchant: 'shop', ...over }, LIMITS);

describe('merchant settings', () => {
  it('takes a create with defaults, normalising origins', () => {
    const s = validateMerchantSettings({ id: 'shop', name: ' Shop ', allowedOrigins: ['HTTPS://Shop.Example:443/', 'http://a.example:8080'] }, 6, null);
    assert.deepEqual(s, { name: 'Shop', signing: 'standard', allowedOrigins: ['https://shop.example', 'http://a.example:8080'], maxConcurrency: null, maxAttempts: null, success: null });
  });

  it('refuses what is wrong, naming the field', () => {
    const refused = (input: unknown, field: string, tiers = 6): void =>
      assert.throws(() => validateMerchantSettings(input, tiers, null), (e: unknown) => hasCode(e, ErrorCodes.VALIDATION) && (e as { field?: string }).field === field);
    refused({ name: 'x' }, 'allowedOrigins');
    refused({ name: 'x', allowedOrigins: ['https://a.example/path'] }, 'allowedOrigins[0]');
    refused({ name: 'x', allowedOrigins: ['ftp://a.example'] }, 'allowedOrigins[0]');
    refused({ name: 'x', allowedOrigins: ['https://u:p@a.example'] }, 'allowedOrigins[0]');
    refused({ name: '', allowedOrigins: ['https://a.example'] }, 'name');
    refused({ name: 'x', allowedOrigins: ['https://a.example'], signing: 'md5' }, 'signing');
    refused({ name: 'x', allowedOrigins: ['https://a.example'], maxAttempts: 7 }, 'maxAttempts');
    refused({ name: 'x', allowedOrigins: ['https://a.example'], maxConcurrency: 0 }, 'maxConcurrency');
    refused({ name: 'x', allowedOrigins: ['https://a.example'], extra: 1 }, 'extra');
    // PostgreSQL refuses a NUL in text and jsonb: a 400 here, not its error (a 500).
    refused({ name: 'a\u0000b', allowedOrigins: ['https://a.example'] }, 'name');
    refused({ name: 'x', allowedOrigins: ['https://a.example'], success: { bodyEquals: 'ok\u0000' } }, 'success');
  });

  it('a patch changes only what it names; null clears a limit', () => {
    const cur = validateMerchantSettings({ name: 'Shop', allowedOrigins: ['https://a.example'], maxConcurrency: 5, maxAttempts: 3 }, 6, null);
    assert.deepEqual(validateMerchantSettings({ maxConcurrency: null }, 6, cur), { ...cur, maxConcurrency: null });
    assert.deepEqual(validateMerchantSettings({ success: { bodyEquals: 'success' } }, 6, cur).success, { status: '2xx', bodyEquals: 'success' });
    assert.equal(normalizeOrigin('https://x.example', 'o'), 'https://x.example');
  });
});

describe('merchant secrets', () => {
  it('are Standard Webhooks secrets of 32 random bytes, told apart by fingerprints', () => {
    const a = generateSecret();
    assert.match(a, /^whsec_[A-Za-z0-9+/]{43}=$/);
    assert.equal(Buffer.from(a.slice(6), 'base64').length, 32);
    assert.notEqual(fingerprint(a), fingerprint(generateSecret()));
    assert.ok(!fingerprint(a).includes(a.slice(6, 20)));
  });

  it('seal with AES-256-GCM bound to the merchant, and open only with the same key and merchant', () => {
    const key = Buffer.alloc(32, 1);
    const s = generateSecret();
    const sealed = sealSecret(s, key, 'shop');
    assert.equal(sealed.encrypted, true);
    assert.ok(!sealed.bytes.toString('latin1').includes(s.slice(6)));
    assert.equal(openSecret(sealed.bytes, true, key, 'shop'), s);
    assert.throws(() => openSecret(sealed.bytes, true, Buffer.alloc(32, 2), 'shop'), /another key/);
    assert.throws(() => openSecret(sealed.bytes, true, key, 'other'), /another key/, "a row copied to another merchant does not open");
    assert.throws(() => openSecret(sealed.bytes, true, null, 'shop'), /NOTIFY_SECRETS_KEY/);
    const plain = sealSecret(s, null, 'shop');
    assert.deepEqual([plain.encrypted, openSecret(plain.bytes, false, null, 'shop')], [false, s]);
  });

  it("a secret whose grace has ended stops signing then, not when the copy next hears of it (a database away for hours)", async () => {
    const now = Date.now();
    const cur = generateSecret();
    const old = generateSecret();
    const m = entry({ secrets: [cur, old], secretEnds: [null, now + 60_000] });
    assert.deepEqual(signingNow(m, now), [cur, old], 'both during the grace');
    assert.deepEqual(signingNow(m, now + 60_000), [cur], 'the old one no more once it ended');
    assert.deepEqual(signingNow(entry({ secrets: [cur] }), now), [cur], 'without ends: all');
    const signers = new MerchantSigners(loadConfig({ env: {} }).signing);
    try {
      const sign = async (at: number): Promise<number> => {
        const signer = signers.for(m, at);
        assert.ok(typeof signer !== 'string', String(signer));
        const out = await signer.sign({ id: 'n1', timestampSec: Math.floor(at / 1000), body: '{}', contentType: 'application/json' });
        return out.headers['webhook-signature']!.split(' ').length;
      };
      assert.equal(await sign(now), 2, 'two signatures during the grace');
      assert.equal(await sign(now + 60_001), 1, 'one after it, from the same copy');
    } finally {
      await signers.close();
    }
  });
});

describe('a tier worker and its merchants (checkMerchant)', () => {
  it('no merchant named: nothing to check', () => {
    assert.equal(checkMerchant(note({ merchant: undefined }), 'https://shop.example', null, 1000, false).kind, 'none');
  });

  it('none named while merchants.required: parked invalid (a producer past the ingress, such as NotifyClient, is held to it too)', () => {
    for (const dir of [null, lookup([entry()])]) {
      const v = checkMerchant(note({ merchant: undefined }), 'https://shop.example', dir, 1000, true);
      assert.ok(v.kind === 'park' && v.reason === 'invalid' && /merchants\.required/.test(v.error), JSON.stringify(v));
    }
  });

  it('parks a disabled merchant as disabled and a foreign origin as invalid', () => {
    const d = checkMerchant(note(), 'https://shop.example', lookup([entry({ enabled: false })]), 1000, false);
    assert.ok(d.kind === 'park' && d.reason === 'disabled');
    const o = checkMerchant(note({ url: 'https://evil.example/x' }), 'https://evil.example', lookup([entry()]), 1000, false);
    assert.ok(o.kind === 'park' && o.reason === 'invalid' && /allowed origins/.test(o.error));
  });

  it('an unknown merchant waits while the registry cannot say or its budget lasts, then parks invalid', () => {
    assert.equal(checkMerchant(note(), 'https://shop.example', lookup([], { isUp: false }), 0, false).kind, 'wait', 'registry down: waits whatever the budget');
    assert.equal(checkMerchant(note(), 'https://shop.example', lookup([], { isLoaded: false }), 0, false).kind, 'wait');
    assert.equal(checkMerchant(note(), 'https://shop.example', lookup([]), 500, false).kind, 'wait', 'perhaps created a moment ago');
    const p = checkMerchant(note(), 'https://shop.example', lookup([]), 0, false);
    assert.ok(p.kind === 'park' && p.reason === 'invalid' && /unknown merchant/.test(p.error));
    const noRegistry = checkMerchant(note(), 'https://shop.example', null, 500, false);
    assert.ok(noRegistry.kind === 'park' && /NOTIFY_DATABASE_URL/.test(noRegistry.error));
  });
});

describe('the ingress and its merchants (merchantRules)', () => {
  const config = loadConfig({ env: {} });
  const required = { ...config, merchants: { ...config.merchants, required: true } };
  const code = async (p: Promise<unknown>): Promise<string> => p.then(() => 'ok', (e: { code: string }) => e.code);

  it('answers with the codes of DESIGN §10', async () => {
    assert.equal(await merchantRules(note(), config, lookup([entry()])), 'standard');
    assert.equal(await code(merchantRules(note({ merchant: 'nobody' }), config, lookup([entry()]))), 'UNKNOWN_MERCHANT');
    assert.equal(await code(merchantRules(note(), config, lookup([entry({ enabled: false })]))), 'MERCHANT_DISABLED');
    assert.equal(await code(merchantRules(note({ url: 'https://evil.example/' }), config, lookup([entry()]))), 'VALIDATION');
    assert.equal(await code(merchantRules(note({ merchant: 'new' }), config, lookup([], { isUp: false }))), 'REGISTRY_UNAVAILABLE');
    assert.equal(await code(merchantRules(note({ merchant: undefined }), required, lookup([]))), 'VALIDATION');
    assert.equal(await merchantRules(note({ merchant: undefined }), config, lookup([])), config.signing.scheme);
  });
});

describe('merchant caps and failure marks', () => {
  it('MerchantSlots caps attempts in flight per merchant', () => {
    const s = new MerchantSlots();
    assert.deepEqual([s.tryAcquire('m', 2), s.tryAcquire('m', 2), s.tryAcquire('m', 2)], [true, true, false]);
    s.release('m');
    assert.equal(s.tryAcquire('m', 2), true);
  });

  it('FailureMarks writes transitions only, at most once per merchant and direction per gap', () => {
    let now = 0;
    const writes: [string, boolean][] = [];
    const f = new FailureMarks((m, failing) => writes.push([m, failing]), 10_000, () => now);
    f.note('m', false, false); // succeeded, registry says fine: nothing to write
    f.note('m', true, false); // failed, registry says fine: write
    f.note('m', true, false); // the registry copy has not caught up yet: no second write
    now = 20_000;
    f.note('m', true, true); // caught up: nothing
    f.note('m', false, true); // succeeded while marked failing: clear it
    assert.deepEqual(writes, [['m', true], ['m', false]]);
  });
});

import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import querystring from 'node:querystring';
import { after, before, describe, it } from 'node:test';
import { AlipaySdk } from 'alipay-sdk';
import { Webhook } from 'standardwebhooks';
import type { SigningConfig } from '../../src/core/config.js';
import { ErrorCodes, hasCode } from '../../src/core/errors.js';
import { createSigner, unsignableReason, type Signer } from '../../src/delivery/signing.js';
import type { MerchantEntry } from '../../src/merchants/merchant.js';
import { MerchantSigners } from '../../src/merchants/signers.js';
import { verifyWebhook } from '../../src/verify-webhook.js';

const secret = (): string => `whsec_${randomBytes(24).toString('base64')}`;
const standard = (secrets: string[]): SigningConfig => ({ scheme: 'standard', secrets, keyFile: null, threads: 1 });
const rsa2 = (keyFile: string | null, threads = 1): SigningConfig => ({ scheme: 'rsa2', secrets: [], keyFile, threads });
const nowSec = (): number => Math.floor(Date.now() / 1000);
const FORM = 'application/x-www-form-urlencoded';

/** Asserts a NotifyError-shaped rejection with `code`, optionally checking the message leaks nothing. */
async function rejectsWith(p: Promise<unknown> | (() => unknown), code: string, mustNotContain: string[] = []): Promise<void> {
  await assert.rejects(
    async () => (typeof p === 'function' ? p() : p),
    (err: unknown) => {
      assert.ok(hasCode(err, code as never), `expected ${code}, got ${String((err as Error)?.message ?? err)}`);
      for (const s of mustNotContain) assert.ok(!(err as Error).message.includes(s), 'message leaks secret material');
      return true;
    },
  );
}

describe('signing: none', () => {
  it('passes the body through without headers', async () => {
    const signer = createSigner({ scheme: 'none', secrets: [], keyFile: null, threads: 1 });
    assert.equal(signer.scheme, 'none');
    const out = await signer.sign({ id: 'n1', timestampSec: nowSec(), body: '{"a":1}', contentType: 'application/json' });
    assert.deepEqual(out, { headers: {}, body: '{"a":1}' });
    await signer.close();
    await signer.close();
  });
});

describe('signing: standard (Standard Webhooks)', () => {
  const s1 = secret();
  const s2 = secret();
  const body = JSON.stringify({ id: 'evt_1', subject: '测试商品', amount: '88.88' });

  it('signs with every secret, first secret first, and each verifies with the standardwebhooks package', async () => {
    const signer = createSigner(standard([s1, s2]));
    const ts = nowSec();
    const out = await signer.sign({ id: 'msg_1', timestampSec: ts, body, contentType: 'application/json' });
    assert.equal(out.body, body);
    assert.equal(out.headers['webhook-id'], 'msg_1');
    assert.equal(out.headers['webhook-timestamp'], String(ts));
    const entries = out.headers['webhook-signature']!.split(' ');
    assert.equal(entries.length, 2);
    assert.ok(entries.every((e) => /^v1,[A-Za-z0-9+/]{43}=$/.test(e)));

    assert.deepEqual(new Webhook(s1).verify(out.body, out.headers), JSON.parse(body));
    assert.deepEqual(new Webhook(s2).verify(out.body, out.headers), JSON.parse(body));
    // Rotation order: the first entry alone is the first secret's.
    const onlyFirst = { ...out.headers, 'webhook-signature': entries[0]! };
    assert.deepEqual(new Webhook(s1).verify(out.body, onlyFirst), JSON.parse(body));
    assert.throws(() => new Webhook(s2).verify(out.body, onlyFirst));
    await signer.close();
  });

  it('verifyWebhook accepts it with either secret, any header case, string or Buffer body', async () => {
    const signer = createSigner(standard([s1, s2]));
    const ts = nowSec();
    const out = await signer.sign({ id: 'msg_2', timestampSec: ts, body, contentType: 'application/json' });
    const upper = Object.fromEntries(Object.entries(out.headers).map(([k, v]) => [k.toUpperCase(), v]));
    assert.deepEqual(verifyWebhook({ secrets: s1, headers: out.headers, body }), { id: 'msg_2', timestampSec: ts });
    assert.deepEqual(verifyWebhook({ secrets: [s2], headers: upper, body: Buffer.from(body) }), { id: 'msg_2', timestampSec: ts });
    const other = secret();
    assert.equal(verifyWebhook({ secrets: [other, s2], headers: out.headers, body }).id, 'msg_2');
    assert.equal(verifyWebhook({ secrets: s1, headers: { ...out.headers, 'webhook-id': ['msg_2'] }, body }).id, 'msg_2');
    await signer.close();
  });

  it('rejects a tampered body, an old or future timestamp, a wrong secret, missing headers (SIGNATURE_INVALID)', async () => {
    const signer = createSigner(standard([s1]));
    const ts = nowSec();
    const out = await signer.sign({ id: 'msg_3', timestampSec: ts, body, contentType: 'application/json' });
    const tampered = body.replace('88.88', '0.01');
    const bad = (o: Partial<Parameters<typeof verifyWebhook>[0]>) => () =>
      verifyWebhook({ secrets: s1, headers: out.headers, body, nowSec: ts, ...o });

    assert.doesNotThrow(bad({}));
    await rejectsWith(bad({ body: tampered }), ErrorCodes.SIGNATURE_INVALID);
    await rejectsWith(bad({ nowSec: ts + 301 }), ErrorCodes.SIGNATURE_INVALID);
    await rejectsWith(bad({ nowSec: ts - 301 }), ErrorCodes.SIGNATURE_INVALID);
    assert.doesNotThrow(bad({ nowSec: ts + 300 }));
    await rejectsWith(bad({ nowSec: ts + 60, toleranceSec: 30 }), ErrorCodes.SIGNATURE_INVALID);
    await rejectsWith(bad({ secrets: [secret(), secret()] }), ErrorCodes.SIGNATURE_INVALID);
    await rejectsWith(bad({ headers: { ...out.headers, 'webhook-id': 'msg_other' } }), ErrorCodes.SIGNATURE_INVALID);
    await rejectsWith(bad({ headers: { ...out.headers, 'webhook-signature': undefined } }), ErrorCodes.SIGNATURE_INVALID);
    await rejectsWith(bad({ headers: { ...out.headers, 'webhook-signature': 'v2,abc' } }), ErrorCodes.SIGNATURE_INVALID);
    await rejectsWith(bad({ headers: { ...out.headers, 'webhook-timestamp': 'soon' } }), ErrorCodes.SIGNATURE_INVALID);
    await rejectsWith(bad({ headers: { 'webhook-signature': out.headers['webhook-signature'] } }), ErrorCodes.SIGNATURE_INVALID);
    // A misconfigured receiver is told apart from a forged request.
    await rejectsWith(bad({ secrets: [] }), ErrorCodes.CONFIG_INVALID);
    await rejectsWith(bad({ secrets: 'whsec_not base64!' }), ErrorCodes.CONFIG_INVALID);
    // A clock that is not a number would make both window checks false and accept any timestamp.
    await rejectsWith(bad({ nowSec: Number.NaN }), ErrorCodes.CONFIG_INVALID);

    // The independent implementation agrees on the tampered body.
    assert.throws(() => new Webhook(s1).verify(tampered, out.headers), /No matching signature/);
    await signer.close();
  });

  it('refuses unusable secrets at createSigner without quoting them', async () => {
    await rejectsWith(() => createSigner(standard([])), ErrorCodes.SIGNING_FAILED);
    await rejectsWith(() => createSigner(standard([s1, 'whsec_%%%secret%%%'])), ErrorCodes.SIGNING_FAILED, ['%%%secret%%%']);
    const signer = createSigner(standard([s1]));
    await rejectsWith(signer.sign({ id: 'x', timestampSec: 1.5, body: '', contentType: 'text/plain' }), ErrorCodes.SIGNING_FAILED);
    await signer.close();
    await rejectsWith(signer.sign({ id: 'x', timestampSec: 1, body: '', contentType: 'text/plain' }), ErrorCodes.SIGNING_FAILED);
  });
});

describe('signing: rsa2 (Alipay)', () => {
  let dir: string;
  let pkcs1File: string;
  let pkcs8File: string;
  let sdk: AlipaySdk;
  let signer: Signer;
  const open: Signer[] = [];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'notifyd-signing-'));
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    pkcs1File = join(dir, 'pkcs1.pem');
    pkcs8File = join(dir, 'pkcs8.pem');
    writeFileSync(pkcs1File, privateKey.export({ type: 'pkcs1', format: 'pem' }));
    writeFileSync(pkcs8File, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(join(dir, 'public.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
    // The merchant's side: notifyd's public key, read from its file, plays
    // "alipayPublicKey"; privateKey is the merchant's own app key, unused here.
    sdk = new AlipaySdk({
      appId: '2021000000000000',
      privateKey: privateKey.export({ type: 'pkcs1', format: 'pem' }) as string,
      alipayPublicKey: readFileSync(join(dir, 'public.pem'), 'utf8'),
    });
    signer = createSigner(rsa2(pkcs1File, 2));
    open.push(signer);
  });

  after(async () => {
    await Promise.all(open.map((s) => s.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  const notification = new URLSearchParams([
    ['notify_id', '2024010100222123456789'],
    ['notify_time', '2024-01-01 12:00:00'],
    ['out_trade_no', 'T-1001'],
    ['subject', '测试商品'],
    ['body', 'a&b=c&d'],
    ['total_amount', '88.88'],
    ['remark', '1 + 1 = 2'],
    ['memo', ''],
    ['trade_status', 'TRADE_SUCCESS'],
    ['sign', 'forged'],
    ['sign_type', 'RSA'],
  ]).toString();

  /** How merchants' frameworks parse a form body (URLSearchParams, or querystring as express/koa do). */
  const parsers = {
    URLSearchParams: (b: string): Record<string, string> => Object.fromEntries(new URLSearchParams(b)),
    querystring: (b: string): Record<string, unknown> => ({ ...querystring.parse(b) }),
  };

  it('is accepted by alipay-sdk checkNotifySign (non-ASCII, & and = in values, incoming sign replaced)', async () => {
    const out = await signer.sign({ id: 'a1', timestampSec: nowSec(), body: notification, contentType: FORM });
    assert.deepEqual(out.headers, {});
    for (const [name, parse] of Object.entries(parsers)) {
      const post = parse(out.body);
      assert.equal(sdk.checkNotifySign(post), true, `checkNotifySign via ${name}`);
      assert.equal(sdk.checkNotifySignV2(post), true, `checkNotifySignV2 via ${name}`);
      assert.equal(post.subject, '测试商品');
      assert.equal(post.body, 'a&b=c&d');
      assert.equal(post.remark, '1 + 1 = 2');
      assert.equal(post.sign_type, 'RSA2');
      assert.notEqual(post.sign, 'forged');
      // Empty-valued fields are left out of the form: checkNotifySign would sign-check `memo=`
      // while Alipay's rule skips it, so only their absence satisfies both.
      assert.equal('memo' in post, false);
    }
    const keys = [...new URLSearchParams(out.body).keys()];
    assert.deepEqual(keys.slice(-2), ['sign_type', 'sign']);
    assert.equal(keys.filter((k) => k === 'sign').length, 1);
  });

  it('adds the notification id as a signed notify_id field, unless the producer set one', async () => {
    const plain = new URLSearchParams([['out_trade_no', 'T-2'], ['total_amount', '1.00']]).toString();
    const out = await signer.sign({ id: 'order-20240001', timestampSec: nowSec(), body: plain, contentType: FORM });
    const post = parsers.URLSearchParams(out.body);
    assert.equal(post.notify_id, 'order-20240001');
    assert.equal(sdk.checkNotifySign(post), true);
    assert.equal(sdk.checkNotifySign({ ...post, notify_id: 'order-other' }), false, 'notify_id is covered by the signature');
    const own = await signer.sign({ id: 'a3', timestampSec: nowSec(), body: notification, contentType: FORM });
    assert.equal(parsers.URLSearchParams(own.body).notify_id, '2024010100222123456789');
    const empty = await signer.sign({ id: 'order-20240002', timestampSec: nowSec(), body: `${plain}&notify_id=`, contentType: FORM });
    const emptyPost = parsers.URLSearchParams(empty.body);
    assert.equal(emptyPost.notify_id, 'order-20240002', 'an empty notify_id is no id: the notification\'s is sent');
    assert.equal(sdk.checkNotifySign(emptyPost), true);
  });

  it('a changed field fails checkNotifySign', async () => {
    const out = await signer.sign({ id: 'a2', timestampSec: nowSec(), body: notification, contentType: FORM });
    const post = parsers.URLSearchParams(out.body);
    assert.equal(sdk.checkNotifySign({ ...post, total_amount: '0.01' }), false);
    assert.equal(sdk.checkNotifySign({ ...post, extra: 'x' }), false);
  });

  it('signs with a PKCS#8 key, and with charset=utf-8 in the content type', async () => {
    const s8 = createSigner(rsa2(pkcs8File));
    open.push(s8);
    const out = await s8.sign({ id: 'a3', timestampSec: nowSec(), body: notification, contentType: 'Application/X-WWW-Form-Urlencoded; charset=UTF-8' });
    assert.equal(sdk.checkNotifySign(parsers.URLSearchParams(out.body)), true);
  });

  it('values containing % verify with checkNotifySignV2 (checkNotifySign decodes values a second time)', async () => {
    const body = new URLSearchParams({ out_trade_no: 'T-2', discount: '10%', note: 'a%20b' }).toString();
    const out = await signer.sign({ id: 'a4', timestampSec: nowSec(), body, contentType: FORM });
    const post = parsers.URLSearchParams(out.body);
    assert.equal(post.note, 'a%20b');
    assert.equal(sdk.checkNotifySignV2(post), true);
  });

  it('runs concurrent signs on the pool', async () => {
    const outs = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        signer.sign({ id: `c${i}`, timestampSec: nowSec(), body: `out_trade_no=T-${i}&subject=%E5%95%86%E5%93%81`, contentType: FORM }),
      ),
    );
    for (const out of outs) assert.equal(sdk.checkNotifySign(parsers.URLSearchParams(out.body)), true);
  });

  it('rejects bodies it cannot sign faithfully with SIGNING_FAILED', async () => {
    const sign = (body: string, contentType: string) => signer.sign({ id: 'r', timestampSec: nowSec(), body, contentType });
    await rejectsWith(sign('{"out_trade_no":"T-1"}', 'application/json'), ErrorCodes.SIGNING_FAILED);
    await rejectsWith(sign('a=1', ''), ErrorCodes.SIGNING_FAILED);
    await rejectsWith(sign('a=1', `${FORM}; charset=gbk`), ErrorCodes.SIGNING_FAILED);
    await rejectsWith(sign('a=1&a=2', FORM), ErrorCodes.SIGNING_FAILED);
  });

  it('says beforehand which bodies it can never sign, the ones sign() refuses (so they are refused or parked, not retried)', () => {
    const why = (body: string | Record<string, unknown>, contentType: string) => unsignableReason('rsa2', { body, contentType });
    assert.deepEqual(why('{"a":1}', 'application/json')?.field, 'contentType');
    assert.deepEqual(why('a=1', `${FORM}; charset=gbk`)?.field, 'contentType');
    assert.deepEqual(why('a=1&b=2&a=3', FORM), { field: 'body', problem: 'rsa2: form field "a" appears more than once' });
    assert.equal(why('a=1&b=2&sign=x&sign=y', FORM), null, 'sign fields are dropped, not signed');
    assert.equal(why({ a: 1, b: 'x' }, `${FORM}; charset=UTF-8`), null);
    assert.equal(unsignableReason('standard', { body: 'a=1&a=2', contentType: FORM }), null);
  });

  it('refuses a missing, unreadable, non-PEM or non-RSA key without quoting it', async () => {
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, '-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END PRIVATE KEY-----\n');
    const ec = join(dir, 'ec.pem');
    writeFileSync(ec, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await rejectsWith(() => createSigner(rsa2(null)), ErrorCodes.SIGNING_FAILED);
    await rejectsWith(() => createSigner(rsa2(join(dir, 'absent.pem'))), ErrorCodes.SIGNING_FAILED);
    await rejectsWith(() => createSigner(rsa2(garbage)), ErrorCodes.SIGNING_FAILED, ['TOPSECRETMATERIAL']);
    await rejectsWith(() => createSigner(rsa2(ec)), ErrorCodes.SIGNING_FAILED);
  });

  it('signs with the key read when it was made, whatever the file holds when its threads start (none signs with a replaced key before the restart)', async () => {
    const moved = join(dir, 'moved.pem');
    copyFileSync(pkcs1File, moved);
    const s = createSigner(rsa2(moved, 2));
    open.push(s);
    // Replaced before the pool's first thread starts, then gone.
    writeFileSync(moved, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'pem' }));
    const replaced = await s.sign({ id: 'm1', timestampSec: nowSec(), body: 'a=1', contentType: FORM });
    assert.equal(sdk.checkNotifySign(parsers.URLSearchParams(replaced.body)), true, 'the key it was made with');
    unlinkSync(moved);
    const signed = await Promise.all(['m2', 'm3', 'm4'].map((id) => s.sign({ id, timestampSec: nowSec(), body: 'a=1', contentType: FORM })));
    for (const out of signed) assert.equal(sdk.checkNotifySign(parsers.URLSearchParams(out.body)), true);
  });

  it('rsa2 merchants sign with the key read when their signers were made (not at their first notification), and share an rsa2 daemon\'s signer', async () => {
    const file = join(dir, 'merchants.pem');
    copyFileSync(pkcs1File, file);
    const signers = new MerchantSigners({ scheme: 'none', secrets: [], keyFile: file, threads: 1 });
    writeFileSync(file, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'pem' }));
    const shop = { id: 'shop-rsa', signing: 'rsa2' } as unknown as MerchantEntry;
    const s = signers.for(shop);
    assert.ok(typeof s !== 'string', String(s));
    const out = await s.sign({ id: 'mr1', timestampSec: nowSec(), body: 'a=1', contentType: FORM });
    assert.equal(sdk.checkNotifySign(parsers.URLSearchParams(out.body)), true, 'the key of when the signers were made');
    await signers.close();
    const daemon = createSigner(rsa2(pkcs1File));
    open.push(daemon);
    const shared = new MerchantSigners(rsa2(pkcs1File), daemon);
    assert.equal(shared.for(shop), daemon, 'one key, one pool');
    // A key file that cannot be read is an error to try again (the notification goes back), not a reason to park it.
    const late = join(dir, 'late.pem');
    const broken = new MerchantSigners({ scheme: 'none', secrets: [], keyFile: late, threads: 1 });
    assert.throws(() => broken.for(shop), (e: { code?: string }) => e.code === ErrorCodes.SIGNING_FAILED);
    copyFileSync(pkcs1File, late);
    const recovered = broken.for(shop);
    assert.ok(typeof recovered !== 'string');
    open.push(recovered);
  });

  it('close() is idempotent and later signs reject', async () => {
    const s = createSigner(rsa2(pkcs1File));
    open.push(s);
    await s.sign({ id: 'z', timestampSec: nowSec(), body: 'a=1', contentType: FORM });
    await s.close();
    await s.close();
    await rejectsWith(s.sign({ id: 'z', timestampSec: nowSec(), body: 'a=1', contentType: FORM }), ErrorCodes.SIGNING_FAILED);
    // Never started a pool: close is still fine.
    const idle = createSigner(rsa2(pkcs1File));
    await idle.close();
    await idle.close();
  });
});

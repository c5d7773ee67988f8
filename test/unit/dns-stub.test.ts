import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import dns from 'node:dns';
import { after, before, describe, it } from 'node:test';
import { DnsStub } from '../../bench/dns-stub.js';

async function code(p: Promise<unknown>): Promise<string | undefined> {
  const err = await p.then(() => null, (e: NodeJS.ErrnoException) => e);
  assert.ok(err, 'expected the lookup to fail');
  return err.code;
}

/** Sends one raw datagram and returns the reply, or null if none came within `ms`. */
async function exchange(port: number, packet: Buffer, ms = 300): Promise<Buffer | null> {
  const sock = createSocket('udp4');
  try {
    return await new Promise<Buffer | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), ms);
      sock.on('message', (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      sock.send(packet, port, '127.0.0.1');
    });
  } finally {
    sock.close();
  }
}

/** A query for `a.test` type A with id 0xbeef and RD set, optionally with an EDNS OPT (UDP size 4096). */
function rawQuery(edns: boolean): Buffer {
  const header = Buffer.from([0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, edns ? 1 : 0]);
  const question = Buffer.from([1, 0x61, 4, 0x74, 0x65, 0x73, 0x74, 0, 0, 1, 0, 1]);
  const opt = Buffer.from([0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
  return Buffer.concat([header, question, ...(edns ? [opt] : [])]);
}

describe('DnsStub', () => {
  const stub = new DnsStub();
  const resolver = new dns.promises.Resolver({ timeout: 500, tries: 1 });
  let port = 0;

  before(async () => {
    port = await stub.start();
    resolver.setServers([stub.address]);
    stub.set('a.test', { a: ['192.0.2.1', '192.0.2.2'], aaaa: ['2001:db8::1', '::ffff:192.0.2.1'], ttl: 42 });
    stub.set('*.m.test', { a: ['127.0.0.1'] });
    stub.set('*.deep.m.test', { a: ['127.0.0.2'] });
    stub.set('exact.m.test', { a: ['127.0.0.3'] });
    stub.set('hole.test', 'blackhole');
    stub.set('gone.test', 'nxdomain');
    stub.set('broken.test', 'servfail');
  });
  after(() => stub.close());

  it('binds a free port and reports it as host:port', () => {
    assert.ok(port > 0);
    assert.equal(stub.address, `127.0.0.1:${port}`);
  });

  it('answers A with the addresses and TTL, case-insensitively', async () => {
    assert.deepEqual(await resolver.resolve4('A.TeSt', { ttl: true }), [
      { address: '192.0.2.1', ttl: 42 },
      { address: '192.0.2.2', ttl: 42 },
    ]);
  });

  it('answers AAAA via resolve6, including an embedded IPv4 tail', async () => {
    assert.deepEqual(await resolver.resolve6('a.test', { ttl: true }), [
      { address: '2001:db8::1', ttl: 42 },
      { address: '::ffff:192.0.2.1', ttl: 42 },
    ]);
  });

  it('uses the default TTL of 60 s when none is given', async () => {
    assert.deepEqual(await resolver.resolve4('x.m.test', { ttl: true }), [{ address: '127.0.0.1', ttl: 60 }]);
  });

  it('matches wildcards below the suffix only, longest first, exact names beating them', async () => {
    assert.deepEqual(await resolver.resolve4('a.b.m.test'), ['127.0.0.1']);
    assert.deepEqual(await resolver.resolve4('x.deep.m.test'), ['127.0.0.2']);
    assert.deepEqual(await resolver.resolve4('exact.m.test'), ['127.0.0.3']);
    assert.equal(await code(resolver.resolve4('m.test')), 'ENOTFOUND');
  });

  it('answers an empty NOERROR for other types and for a family the name lacks', async () => {
    assert.equal(await code(resolver.resolveMx('a.test')), 'ENODATA');
    assert.equal(await code(resolver.resolve6('x.m.test')), 'ENODATA');
  });

  it('gives ENOTFOUND for nxdomain, set or by default, and ESERVFAIL for servfail', async () => {
    assert.equal(await code(resolver.resolve4('gone.test')), 'ENOTFOUND');
    assert.equal(await code(resolver.resolve4('unknown.test')), 'ENOTFOUND');
    assert.equal(await code(resolver.resolve4('broken.test')), 'ESERVFAIL');
  });

  it('drops blackholed queries so the resolver times out, and still counts them', async () => {
    const seen = stub.queries('hole.test');
    const t0 = Date.now();
    assert.equal(await code(resolver.resolve4('hole.test')), 'ETIMEOUT');
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 450 && elapsed < 2000, `timed out after ${elapsed} ms`);
    assert.equal(stub.queries('hole.test'), seen + 1);
  });

  it('serves setDefault for unset names', async () => {
    const other = new DnsStub();
    const r = new dns.promises.Resolver({ timeout: 500, tries: 1 });
    r.setServers([`127.0.0.1:${await other.start()}`]);
    other.setDefault({ a: ['10.0.0.1'], ttl: 5 });
    assert.deepEqual(await r.resolve4('anything.example', { ttl: true }), [{ address: '10.0.0.1', ttl: 5 }]);
    other.setDefault('servfail');
    assert.equal(await code(r.resolve4('anything.example')), 'ESERVFAIL');
    assert.equal(other.queries(), 2);
    assert.equal(other.queries('ANYTHING.example.'), 2);
    await other.close();
  });

  it('echoes the id, question and RD, sets QR/AA/RA, and answers EDNS with an OPT', async () => {
    for (const edns of [false, true]) {
      const reply = await exchange(port, rawQuery(edns));
      assert.ok(reply);
      assert.equal(reply.readUInt16BE(0), 0xbeef);
      assert.equal(reply.readUInt16BE(2), 0x8580); // QR AA RD RA, NOERROR
      assert.deepEqual([4, 6, 8, 10].map((o) => reply.readUInt16BE(o)), [1, 2, 0, edns ? 1 : 0]);
      assert.deepEqual(reply.subarray(12, 24), rawQuery(false).subarray(12, 24));
      if (edns) assert.equal(reply.readUInt16BE(reply.length - 10), 41);
    }
  });

  it('ignores malformed packets and responses', async () => {
    const total = stub.queries();
    const good = rawQuery(false);
    const response = Buffer.from(good);
    response[2] |= 0x80;
    const pointer = Buffer.concat([good.subarray(0, 12), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]);
    for (const bad of [Buffer.from('hi'), good.subarray(0, 20), response, pointer]) {
      assert.equal(await exchange(port, bad, 100), null);
    }
    assert.equal(stub.queries(), total);
    assert.ok(await exchange(port, good), 'still answers after garbage');
  });

  it('rejects bad addresses and TTLs up front', () => {
    assert.throws(() => stub.set('x.test', { a: ['::1'] }), TypeError);
    assert.throws(() => stub.set('x.test', { aaaa: ['1.2.3.4'] }), TypeError);
    assert.throws(() => stub.set('x.test', { aaaa: ['fe80::1%eth0'] }), TypeError);
    assert.throws(() => stub.set('x.test', { a: ['1.2.3.4'], ttl: -1 }), RangeError);
  });

  it('closes idempotently, started or not', async () => {
    const s = new DnsStub();
    await s.close();
    await s.close();
    const t = new DnsStub();
    await t.start();
    await Promise.all([t.close(), t.close()]);
    await t.close();
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyAddress, createAddressGuard, type AddressClass } from '../../src/delivery/address-guard.js';
import { ErrorCodes, NotifyError } from '../../src/core/errors.js';

const TABLE: ReadonlyArray<readonly [string, AddressClass]> = [
  // public
  ['8.8.8.8', 'public'],
  ['1.1.1.1', 'public'],
  ['172.15.255.255', 'public'],
  ['172.32.0.0', 'public'],
  ['100.63.255.255', 'public'],
  ['100.128.0.0', 'public'],
  ['169.253.255.255', 'public'],
  ['223.255.255.255', 'public'],
  ['2606:4700:4700::1111', 'public'],
  ['2a00:1450:4001:82b::200e', 'public'],
  ['::ffff:8.8.8.8', 'public'],
  ['64:ff9b::808:808', 'public'],
  ['2002:808:808::1', 'public'],
  // unspecified
  ['0.0.0.0', 'unspecified'],
  ['0.1.2.3', 'unspecified'],
  ['::', 'unspecified'],
  ['0:0:0:0:0:0:0:0', 'unspecified'],
  // loopback
  ['127.0.0.1', 'loopback'],
  ['127.255.255.254', 'loopback'],
  ['::1', 'loopback'],
  ['0:0:0:0:0:0:0:1', 'loopback'],
  // private
  ['10.0.0.1', 'private'],
  ['10.255.255.255', 'private'],
  ['172.16.0.1', 'private'],
  ['172.31.255.255', 'private'],
  ['192.168.1.1', 'private'],
  ['fec0::1', 'private'],
  // link-local
  ['169.254.0.1', 'link-local'],
  ['169.254.170.2', 'link-local'],
  ['fe80::1', 'link-local'],
  ['febf:ffff::1', 'link-local'],
  ['fe80::1%eth0', 'link-local'],
  ['fe80::a00:27ff:fe4e:66a1%25', 'link-local'],
  // cgnat
  ['100.64.0.1', 'cgnat'],
  ['100.127.255.255', 'cgnat'],
  // unique-local
  ['fc00::1', 'unique-local'],
  ['fd12:3456:789a::1', 'unique-local'],
  ['fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'unique-local'],
  // metadata, ahead of the link-local / cgnat / reserved ranges holding them
  ['169.254.169.254', 'metadata'],
  ['100.100.100.200', 'metadata'],
  ['192.0.0.192', 'metadata'],
  ['fd00:ec2::254', 'metadata'],
  ['fd00:ec2:0:0:0:0:0:254', 'metadata'],
  ['::ffff:169.254.169.254', 'metadata'],
  // multicast
  ['224.0.0.1', 'multicast'],
  ['239.255.255.250', 'multicast'],
  ['ff02::1', 'multicast'],
  ['ff05::1:3%eth0', 'multicast'],
  // reserved
  ['240.0.0.1', 'reserved'],
  ['255.255.255.255', 'reserved'],
  ['192.0.0.1', 'reserved'],
  ['192.0.0.170', 'reserved'],
  ['192.0.2.1', 'reserved'],
  ['198.18.0.1', 'reserved'],
  ['198.19.255.255', 'reserved'],
  ['198.51.100.7', 'reserved'],
  ['203.0.113.9', 'reserved'],
  ['192.88.99.1', 'reserved'],
  ['2001:db8::1', 'reserved'],
  ['100::1', 'reserved'],
  ['100::ffff:ffff:ffff:ffff', 'reserved'],
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'reserved'], // Teredo
  ['3fff::1', 'reserved'],
  ['64:ff9b:1::a00:1', 'reserved'],
  ['4000::1', 'reserved'], // outside 2000::/3
  // IPv4 embedded in IPv6 takes the IPv4 class
  ['::ffff:127.0.0.1', 'loopback'],
  ['::ffff:7f00:1', 'loopback'],
  ['0:0:0:0:0:ffff:7f00:1', 'loopback'],
  ['::FFFF:7F00:0001', 'loopback'],
  ['::127.0.0.1', 'loopback'],
  ['::7f00:1', 'loopback'],
  ['::ffff:0:127.0.0.1', 'loopback'], // SIIT
  ['::ffff:10.0.0.1', 'private'],
  ['::ffff:a00:1', 'private'],
  ['::ffff:0.0.0.0', 'unspecified'],
  ['::ffff:100.64.0.1', 'cgnat'],
  ['::ffff:224.0.0.1', 'multicast'],
  ['::ffff:192.0.2.1', 'reserved'],
  ['64:ff9b::127.0.0.1', 'loopback'],
  ['64:ff9b::7f00:1', 'loopback'],
  ['64:ff9b::a9fe:a9fe', 'metadata'],
  ['64:ff9b::c0a8:101', 'private'],
  ['2002:7f00:1::', 'loopback'],
  ['2002:a9fe:a9fe::1', 'metadata'],
  ['2002:c0a8:101::1', 'private'],
  ['2002:6440:1::1', 'cgnat'],
  // unparsable
  ['', 'reserved'],
  ['localhost', 'reserved'],
  ['example.com', 'reserved'],
  ['256.1.1.1', 'reserved'],
  ['127.1', 'reserved'],
  ['2130706433', 'reserved'],
  ['0x7f.0.0.1', 'reserved'],
  ['010.0.0.1', 'reserved'],
  ['[::1]', 'reserved'],
  ['1:2:3:4:5:6:7:8:9', 'reserved'],
  ['::ffff:999.0.0.1', 'reserved'],
];

describe('classifyAddress', () => {
  for (const [ip, cls] of TABLE) {
    it(`${JSON.stringify(ip)} is ${cls}`, () => {
      assert.equal(classifyAddress(ip), cls);
    });
  }

  it('the table covers every class in both families', () => {
    const v4 = new Set<AddressClass>();
    const v6 = new Set<AddressClass>();
    for (const [ip, cls] of TABLE) {
      if (/^[\d.]+$/.test(ip) && ip.includes('.')) v4.add(cls);
      else if (ip.includes(':') && !ip.includes('.')) v6.add(cls);
    }
    const all: AddressClass[] = [
      'public', 'loopback', 'private', 'link-local', 'cgnat', 'unique-local',
      'metadata', 'multicast', 'unspecified', 'reserved',
    ];
    // IPv4 has no unique-local; CGNAT exists in IPv6 only through embedding.
    for (const cls of all) if (cls !== 'unique-local') assert.ok(v4.has(cls), `IPv4 ${cls}`);
    for (const cls of all) assert.ok(v6.has(cls), `IPv6 ${cls}`);
  });
});

const guardDefault = createAddressGuard({ allowPrivateNetworks: false, allowCidrs: [] });

function assertBlocked(fn: () => void): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof NotifyError);
    assert.equal(err.code, ErrorCodes.DESTINATION_BLOCKED);
    return true;
  });
}

describe('check', () => {
  it('allows public and refuses every other class by default', () => {
    for (const [ip, cls] of TABLE) {
      assert.deepEqual(guardDefault.check(ip), { allowed: cls === 'public', addressClass: cls }, ip);
    }
  });

  it('allowCidrs 127.0.0.0/8 permits loopback IPv4 (and its mapped form) but not 10.0.0.1', () => {
    const g = createAddressGuard({ allowPrivateNetworks: false, allowCidrs: ['127.0.0.0/8'] });
    assert.deepEqual(g.check('127.0.0.1'), { allowed: true, addressClass: 'loopback' });
    assert.equal(g.check('127.9.8.7').allowed, true);
    assert.equal(g.check('::ffff:127.0.0.1').allowed, true);
    assert.deepEqual(g.check('10.0.0.1'), { allowed: false, addressClass: 'private' });
    assert.equal(g.check('::1').allowed, false);
    assert.equal(g.check('169.254.169.254').allowed, false);
  });

  it('allowCidrs takes IPv6 prefixes and bare addresses', () => {
    const g = createAddressGuard({ allowPrivateNetworks: false, allowCidrs: ['fd00::/8', '10.1.2.3'] });
    assert.equal(g.check('fd12::1').allowed, true);
    assert.equal(g.check('fc00::1').allowed, false);
    assert.equal(g.check('10.1.2.3').allowed, true);
    assert.equal(g.check('10.1.2.4').allowed, false);
  });

  it('allowPrivateNetworks permits every class', () => {
    const g = createAddressGuard({ allowPrivateNetworks: true, allowCidrs: [] });
    for (const [ip, cls] of TABLE) assert.deepEqual(g.check(ip), { allowed: true, addressClass: cls }, ip);
  });

  it('rejects malformed allowCidrs as CONFIG_INVALID', () => {
    for (const bad of ['10.0.0.0/33', '::/129', 'localhost/8', '10.0.0.0/8/8', '10.0.0.0/x', '10.0.0.0/']) {
      assert.throws(
        () => createAddressGuard({ allowPrivateNetworks: false, allowCidrs: [bad] }),
        (err: unknown) => err instanceof NotifyError && err.code === ErrorCodes.CONFIG_INVALID,
        bad,
      );
    }
  });
});

describe('assertHostAllowed', () => {
  it('refuses literal loopback, private and metadata hosts however the URL spells them', () => {
    for (const u of [
      'http://127.0.0.1/',
      'http://2130706433/',
      'http://0x7f.1/',
      'http://0x7f000001/',
      'http://0177.0.0.1/',
      'http://127.1/',
      'http://127.0.0.1./',
      'http://[::1]/',
      'http://[::ffff:127.0.0.1]/',
      'http://[::127.0.0.1]/',
      'http://[64:ff9b::127.0.0.1]/',
      'http://[2002:7f00:1::]/',
      'http://[0:0:0:0:0:0:0:1]/',
      'http://0.0.0.0/',
      'http://0/',
      'http://10.0.0.1:8080/',
      'http://169.254.169.254/latest/meta-data/',
      'http://[fd00:ec2::254]/',
      'http://0xa9fea9fe/',
      'http://[fe80::1]/',
    ]) {
      const host = new URL(u).hostname;
      assertBlocked(() => guardDefault.assertHostAllowed(host));
    }
  });

  it('normalises numeric hosts that did not come through new URL()', () => {
    for (const h of ['2130706433', '0x7f.1', '0177.0.0.1', '127.1', '127.0.0.1.', 'fe80::1%eth0', '::1']) {
      assertBlocked(() => guardDefault.assertHostAllowed(h));
    }
    // Ends in a number yet is no IPv4 address: neither a name nor an address.
    assertBlocked(() => guardDefault.assertHostAllowed('1.2.3.4.5'));
    assertBlocked(() => guardDefault.assertHostAllowed('999999999999'));
  });

  it('lets public literals and host names through', () => {
    for (const u of ['http://8.8.8.8/', 'http://[2606:4700:4700::1111]/', 'http://localhost/', 'https://example.com/', 'http://1e100.net/']) {
      guardDefault.assertHostAllowed(new URL(u).hostname);
    }
  });

  it('honours the allowances', () => {
    const g = createAddressGuard({ allowPrivateNetworks: false, allowCidrs: ['127.0.0.0/8', '::1/128'] });
    g.assertHostAllowed(new URL('http://127.0.0.1:8080/').hostname);
    g.assertHostAllowed(new URL('http://[::1]:8080/').hostname);
    assertBlocked(() => g.assertHostAllowed('10.0.0.1'));
    createAddressGuard({ allowPrivateNetworks: true, allowCidrs: [] }).assertHostAllowed('10.0.0.1');
  });
});

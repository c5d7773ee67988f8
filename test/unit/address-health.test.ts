// Which of a name's addresses failed a connect lately: pure, on a given clock.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AddressHealth, addressKey, isAddressFailure, nextCandidate } from '../../src/delivery/address-health.js';

describe('address health', () => {
  it('holds an address back after a failed connect until the hold ends or a connect succeeds', () => {
    let now = 0;
    const h = new AddressHealth({ holdMs: 30_000, maxEntries: 10, now: () => now });
    const a = addressKey('192.0.2.1', 80);
    assert.equal(h.isHeld(a), false);
    h.failed(a);
    assert.equal(h.isHeld(a), true);
    assert.equal(h.isHeld(addressKey('192.0.2.1', 443)), false, 'another port of the same address is another service');
    now = 29_999;
    assert.equal(h.isHeld(a), true);
    now = 30_000;
    assert.equal(h.isHeld(a), false);
    assert.equal(h.size, 0, 'an ended hold is forgotten');
    h.failed(a);
    h.succeeded(a);
    assert.equal(h.isHeld(a), false);
  });

  it('remembers at most maxEntries addresses, forgetting the oldest failure first', () => {
    const h = new AddressHealth({ holdMs: 30_000, maxEntries: 3, now: () => 0 });
    for (const x of ['a', 'b', 'c']) h.failed(x);
    h.failed('a'); // failed again: now the newest
    h.failed('d');
    assert.equal(h.size, 3);
    assert.deepEqual(['a', 'b', 'c', 'd'].map((x) => h.isHeld(x)), [true, false, true, true]);
  });

  it('counts only failures of the address itself, not TLS or the merchant', () => {
    for (const code of ['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'UND_ERR_CONNECT_TIMEOUT']) {
      assert.equal(isAddressFailure(Object.assign(new Error(code), { code })), true, code);
    }
    // EADDRNOTAVAIL is this host's (out of local ports), not the merchant address's.
    for (const code of ['ERR_TLS_CERT_ALTNAME_INVALID', 'ECONNRESET', 'UND_ERR_SOCKET', 'DNS_BLOCKED', 'EADDRNOTAVAIL', undefined]) {
      assert.equal(isAddressFailure(Object.assign(new Error(String(code)), { code })), false, String(code));
    }
    assert.equal(isAddressFailure(null), false);
  });

  it('nextCandidate: the untried address not held that the turn falls on; a held one only when no other is left; -1 when all are tried', () => {
    const none = () => false;
    assert.equal(nextCandidate(3, 0, none, none), 0);
    assert.equal(nextCandidate(3, 4, none, none), 1, 'the turn spreads connections over the addresses');
    assert.equal(nextCandidate(3, 1, none, (i) => i === 1), 2, 'a held address is passed over');
    assert.equal(nextCandidate(3, 2, none, (i) => i === 2), 0, 'and the turn wraps around');
    assert.equal(nextCandidate(2, 0, (i) => i === 1, (i) => i === 0), 0, 'a held address is still better than none');
    assert.equal(nextCandidate(2, 0, () => true, none), -1);
    assert.equal(nextCandidate(3, 0, (i) => i === 0, (i) => i === 1), 2, 'untried and not held first');
    const share = [0, 0, 0];
    for (let turn = 0; turn < 300; turn++) share[nextCandidate(3, turn, () => false, (i) => i === 0)]!++;
    assert.deepEqual(share, [0, 150, 150], "a held address's share is spread evenly over the others, not given to its neighbour");
  });

  it('an address is one key however it is written (IPv4-mapped IPv6 as the URL parser writes it, upper case)', () => {
    assert.equal(addressKey('::ffff:10.0.0.5', 80), addressKey('::ffff:a00:5', 80));
    assert.equal(addressKey('::ffff:10.0.0.5', 80), addressKey('10.0.0.5', 80));
    assert.equal(addressKey('2001:DB8::1', 443), addressKey('2001:db8:0:0:0:0:0:1', 443));
    assert.notEqual(addressKey('10.0.0.5', 80), addressKey('10.0.0.5', 8080));
  });
});

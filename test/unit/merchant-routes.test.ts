// The admin port's merchant routes with a fake store: what never reaches the
// database (PostgreSQL refuses a NUL in text: a 500 before).
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { merchantRoute } from '../../src/admin/merchant-routes.js';
import type { MerchantStore } from '../../src/merchants/store.js';

function request(method: string, body = ''): IncomingMessage {
  return Object.assign(Readable.from(body === '' ? [] : [Buffer.from(body)]), { method, headers: { 'content-type': 'application/json' } }) as unknown as IncomingMessage;
}

function fakeStore(): MerchantStore & { calls: unknown[][] } {
  const calls: unknown[][] = [];
  const answer = (name: string) => async (...args: unknown[]) => {
    calls.push([name, ...args]);
    return name === 'list' ? { merchants: [], nextCursor: null } : { id: args[0] };
  };
  return { calls, list: answer('list'), get: answer('get'), setEnabled: answer('setEnabled'), update: answer('update'), remove: answer('remove'), rotate: answer('rotate'), create: answer('create') } as unknown as MerchantStore & { calls: unknown[][] };
}

const url = (path: string) => new URL(`http://127.0.0.1${path}`);

describe('admin merchant routes: input PostgreSQL cannot hold', () => {
  it('an id no merchant can have is 404 MERCHANT_NOT_FOUND, a cursor that is not a merchant id 400 on cursor, without asking the store', async () => {
    const store = fakeStore();
    for (const method of ['GET', 'DELETE']) {
      await assert.rejects(merchantRoute(store, request(method), url('/admin/merchants/a%00b'), 0), { code: 'MERCHANT_NOT_FOUND' });
    }
    await assert.rejects(merchantRoute(store, request('GET'), url('/admin/merchants?cursor=a%00b'), 0), { code: 'VALIDATION', field: 'cursor' });
    assert.deepEqual(store.calls, []);
    await merchantRoute(store, request('GET'), url('/admin/merchants?cursor=shop-a'), 0);
    await merchantRoute(store, request('GET'), url('/admin/merchants?cursor='), 0);
    assert.deepEqual(store.calls, [['list', 'shop-a', 50], ['list', null, 50]]);
  });

  it("a disable reason's NUL is replaced, the rest kept", async () => {
    const store = fakeStore();
    await merchantRoute(store, request('POST', JSON.stringify({ reason: 'chargeback\u0000storm' })), url('/admin/merchants/shop-a/disable'), 0);
    assert.deepEqual(store.calls, [['setEnabled', 'shop-a', false, 'chargeback\uFFFDstorm']]);
  });
});

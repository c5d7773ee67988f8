// A client checked out of the pool must not take the process down when its connection ends under it.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type pg from 'pg';
import { inTransaction, withClient } from '../../src/db/pool.js';

/** A checked-out client as pg-pool hands it over: an EventEmitter with no 'error' listener of the pool's. */
function fakePool(): { pool: pg.Pool; client: EventEmitter & { released: unknown[]; queries: string[] } } {
  const client = Object.assign(new EventEmitter(), {
    released: [] as unknown[],
    queries: [] as string[],
    query: async (text: string) => {
      client.queries.push(text);
      return { rows: [] };
    },
    release: (err?: unknown) => void client.released.push(err),
  });
  return { pool: { connect: async () => client } as unknown as pg.Pool, client };
}

describe('withClient / inTransaction', () => {
  it("a connection ending while the client is checked out is heard (not a crash), and the client goes back broken", async () => {
    const { pool, client } = fakePool();
    const lost = new Error('Connection terminated unexpectedly');
    await assert.rejects(
      inTransaction(pool, async () => {
        // What pg does when PostgreSQL stops: 'error' on the client (unheard, EventEmitter throws it), then the statement fails.
        client.emit('error', lost);
        throw lost;
      }),
      /terminated/,
    );
    assert.deepEqual(client.released, [lost], 'given back with the error: the pool drops it');
    assert.equal(client.listenerCount('error'), 0, 'its listener is gone with it');
    assert.deepEqual(client.queries, ['BEGIN', 'ROLLBACK']);
  });

  it("a query past the pool's query timeout: the client goes back broken (pg leaves the query on it), with no ROLLBACK queued behind it", async () => {
    const { pool, client } = fakePool();
    const timeout = new Error('Query read timeout');
    await assert.rejects(
      inTransaction(pool, async () => {
        throw timeout;
      }),
      /Query read timeout/,
    );
    assert.deepEqual(client.released, [timeout], 'dropped by the pool: the next user gets a fresh connection');
    assert.deepEqual(client.queries, ['BEGIN']);
  });

  it('a client that did its work goes back whole', async () => {
    const { pool, client } = fakePool();
    assert.equal(await withClient(pool, async () => 7), 7);
    assert.deepEqual(client.released, [undefined]);
    assert.equal(client.listenerCount('error'), 0);
  });
});

// The ingress's HTTP edge with a publisher that never confirms (ingress
// review, stop 60): probes while every request slot is taken, and a producer
// whose upload stalls.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import type { NotificationPublisher } from '../../src/broker/publisher.js';
import { loadConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';
import { IngressServer, clientErrorStatus } from '../../src/ingress/server.js';

const base = loadConfig({ env: {} });
const config = { ...base, ingress: { ...base.ingress, maxConcurrentRequests: 1 } } as typeof base;
// A slow broker: nothing it is given is ever confirmed.
const publisher = { connected: true, blocked: null, node: '127.0.0.1:5672', publish: () => new Promise<void>(() => undefined) } as unknown as NotificationPublisher;

/** Sends raw bytes on a new socket (which never closes its side first); resolves with everything the server wrote until it ended. */
function raw(port: number, bytes: string): { socket: net.Socket; reply: Promise<string> } {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  let got = '';
  const reply = new Promise<string>((resolve) => {
    socket.on('data', (d) => (got += d.toString('latin1')));
    socket.on('end', () => resolve(got));
    socket.on('close', () => resolve(got));
    socket.on('error', () => resolve(got));
  });
  socket.write(bytes);
  return { socket, reply };
}

describe('ingress HTTP edge', () => {
  const body = JSON.stringify({ url: 'https://shop.example/cb', body: 'x' });
  const servers: IngressServer[] = [];

  /** An ingress with one request slot, its publisher never confirming, and short HTTP clocks. */
  async function start(): Promise<number> {
    const server = new IngressServer(config, publisher, createLogger('silent', {}), null, null, null, null, { requestMs: 600, headersMs: 400, checkIntervalMs: 100 });
    servers.push(server);
    return server.listen(0, '127.0.0.1');
  }

  after(async () => {
    // The requests waiting on a confirm that never comes never end: the drain closes their connections at its deadline.
    await Promise.race([Promise.all(servers.map((s) => s.drain(Date.now() + 300).catch(() => undefined))), new Promise((r) => setTimeout(r, 1500))]);
  });

  it('a stalled upload gets 408 (not a 400 a producer would drop its notification on), and its slot is freed', async () => {
    const port = await start();
    const stalled = raw(port, `POST /v1/notifications HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 2000\r\n\r\n${body.slice(0, 10)}`);
    const reply = await stalled.reply;
    assert.match(reply, /^HTTP\/1\.1 408 Request Timeout\r\n/);
    assert.doesNotMatch(reply.slice(reply.indexOf('\r\n\r\n')), /HTTP\/1\.1/, 'one answer only');
    // The one slot is free again: the next request is taken, not refused OVERLOADED (it then waits on the confirm).
    const next = raw(port, `POST /v1/notifications HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    const first = await Promise.race([next.reply, new Promise<string>((r) => setTimeout(() => r(''), 300))]);
    assert.doesNotMatch(first, /OVERLOADED/);
    next.socket.destroy();
  });

  it('probes are answered while every request slot is taken: alive, and ready or why not', async () => {
    const port = await start();
    const held = raw(port, `POST /v1/notifications HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    await new Promise((r) => setTimeout(r, 100));
    // The slot is taken by that request (this server had no other).
    const refused = await fetch(`http://127.0.0.1:${port}/v1/notifications`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    assert.equal(refused.status, 503);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'OVERLOADED');
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(health.status, 200);
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    assert.deepEqual({ status: ready.status, body: await ready.json() }, { status: 200, body: { ready: true, reasons: [] } });
    held.socket.destroy();
  });

  it('client errors get the status Node would give', () => {
    assert.equal(clientErrorStatus('ERR_HTTP_REQUEST_TIMEOUT'), 408);
    assert.equal(clientErrorStatus('HPE_HEADER_OVERFLOW'), 431);
    assert.equal(clientErrorStatus('HPE_INVALID_METHOD'), 400);
  });
});

import type { IncomingHttpHeaders } from 'node:http';
import { isLoopbackHost } from './config-model.js';

/** The host name of a `Host` header (`127.0.0.1:9464` → `127.0.0.1`, `[::1]:9464` → `::1`). */
function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') > 0 ? h.indexOf(']') : undefined);
  const colon = h.lastIndexOf(':');
  return colon > 0 ? h.slice(0, colon) : h;
}

/** A loopback address or name, `*.localhost` included (browsers resolve those to loopback themselves). */
function loopbackName(host: string): boolean {
  return isLoopbackHost(host) || host.endsWith('.localhost');
}

/** Whether an `Origin` header names a page served from a loopback name (`null`, an opaque origin, does not). */
function loopbackOrigin(origin: string): boolean {
  try {
    const h = new URL(origin).hostname.toLowerCase();
    return loopbackName(h.startsWith('[') ? h.slice(1, -1) : h);
  } catch {
    return false;
  }
}

/**
 * Why a request to a token-less admin port must be refused, or null.
 * Without a token the port is loopback only, but any web page open in a
 * browser on the same machine can make that browser call it: a cross-site
 * request (a form or `fetch` that pauses a tier or forces a redrive), or a
 * page on a name rebound to 127.0.0.1 that reads the answers too. Browsers
 * say where a request comes from (`Sec-Fetch-Site`, or `Origin` on a post
 * from one too old to send it) and which host they think they talk to
 * (`Host`); the console itself is same-origin on a loopback name. `Host` is
 * checked on every request: a rebound page's read from an old browser
 * carries nothing else, and a client that is not a browser (curl, `notifyd
 * ctl`, Prometheus) reaches a loopback-only port by a loopback name anyway.
 * With a token none of this is needed: a page cannot add the
 * `Authorization` header to another site's request. The token-less ingress
 * is guarded the same way: a page could otherwise have notifyd sign and
 * send "payment succeeded" callbacks of its choosing (a `fetch` with a Blob
 * body sends no Content-Type and needs no CORS preflight).
 */
export function foreignBrowserRequest(headers: IncomingHttpHeaders): string | null {
  const site = headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return `a browser request from another site (sec-fetch-site: ${site})`;
  // Older browsers send no Sec-Fetch-Site, but every browser sends Origin on a cross-origin POST.
  const origin = headers.origin;
  if (site === undefined && origin !== undefined && !loopbackOrigin(origin)) return `a browser request from another site (origin: ${origin})`;
  const host = hostName(headers.host ?? '');
  if (!loopbackName(host)) return `a request for host "${host}", not a loopback name (a port without a token answers loopback names only)`;
  return null;
}

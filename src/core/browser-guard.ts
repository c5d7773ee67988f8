import type { IncomingHttpHeaders } from 'node:http';
import { isLoopbackHost } from '../core/config-model.js';

/** The host name of a `Host` header (`127.0.0.1:9464` → `127.0.0.1`, `[::1]:9464` → `::1`). */
function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']') > 0 ? h.indexOf(']') : undefined);
  const colon = h.lastIndexOf(':');
  return colon > 0 ? h.slice(0, colon) : h;
}

/**
 * Why a browser's request to a token-less admin port must be refused, or null.
 * Without a token the port is loopback only, but any web page open in a
 * browser on the same machine can make that browser call it: a cross-site
 * request (a form or `fetch` that pauses a tier or forces a redrive), or a
 * page on a name rebound to 127.0.0.1 that reads the answers too. Browsers
 * say where a request comes from (`Sec-Fetch-Site`) and which host they think
 * they talk to (`Host`); the console itself is same-origin on a loopback
 * name. Clients that are not browsers (curl, `notifyd ctl`, Prometheus) send
 * no `Sec-Fetch-Site` and are not affected. With a token none of this is
 * needed: a page cannot add the `Authorization` header to another site's
 * request.
 */
export function foreignBrowserRequest(headers: IncomingHttpHeaders): string | null {
  const site = headers['sec-fetch-site'];
  if (site === undefined) return null;
  if (site !== 'same-origin' && site !== 'none') return `a browser request from another site (sec-fetch-site: ${site})`;
  const host = hostName(headers.host ?? '');
  if (!isLoopbackHost(host) && !host.endsWith('.localhost')) return `a browser request for host "${host}", not a loopback name`;
  return null;
}

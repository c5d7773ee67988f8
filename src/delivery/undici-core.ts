/**
 * The two parts of undici that deliveries use, loaded without the rest.
 * `import 'undici'` loads fetch, WebSocket, caches, mocks and more, about
 * 3 MB of heap and 6 MB of resident code in every tier worker that never
 * uses them. undici 7 has no `exports` map, so its files load by path; the
 * types still come from the package (pinned in package.json, so the paths
 * cannot move under us).
 */
import { createRequire } from 'node:module';
import type { Client as ClientType, buildConnector as BuildConnectorType } from 'undici';

const require = createRequire(import.meta.url);

/**
 * undici's one-connection HTTP/1.1 client, typed down to what loading it by
 * path provides: `request()`, `stream()` and the like are mixed in by the
 * package's index, which is not loaded, so they are not in the type either.
 */
export type Client = Pick<ClientType, 'dispatch' | 'close' | 'destroy'>;
export const Client = require('undici/lib/dispatcher/client.js') as new (url: string, options?: ClientType.Options) => Client;
/** undici's socket connector (timeouts, TLS session reuse), wrapped by connector.ts. */
export const buildConnector = require('undici/lib/core/connect.js') as typeof BuildConnectorType;

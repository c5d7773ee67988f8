import { readFile, readdir } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Headers on every answer of the console. The page and its assets come from
 * this port only and run nothing inline, so the policy can be 'self'
 * throughout; it also keeps the page out of frames and stops it from sending
 * forms or referrers anywhere.
 */
export const CONSOLE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
});

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
};

/** `app-WDTSHCJU.js`: esbuild's content hash in the name, so the file never changes under it. */
const HASHED = /-[A-Z0-9]{8}\.[a-z]+$/;
/** Only plain names of the built folder are served: no path, no dot file, so nothing outside it can be asked for. */
const SAFE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/** `dist/console`, found from `dist/src/admin` (built) and `src/admin` (tsx) alike. */
export function defaultConsoleDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return here.endsWith(join('dist', 'src', 'admin')) ? resolve(here, '..', '..', 'console') : resolve(here, '..', '..', 'dist', 'console');
}

/** True for the paths the console owns: `/` (the page) and `/console/…` (its assets). */
export function isConsolePath(path: string): boolean {
  return path === '/' || path === '/console' || path.startsWith('/console/');
}

/**
 * Serves the operator console (built by `npm run build` into `dist/console`)
 * on the admin port: `GET /` is its index.html (never cached), `/console/<file>`
 * its assets (hashed names, cached for good). No token: the files hold no
 * secret; the API calls the page makes carry the token. Files are read per
 * request, so a rebuild shows without a restart and nothing is held in memory.
 */
export class ConsoleFiles {
  constructor(private readonly dir: string = defaultConsoleDir()) {}

  /** Answers a console path (see `isConsolePath`). */
  async serve(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') return this.send(res, 405, 'text/plain; charset=utf-8', 'use GET\n', { allow: 'GET, HEAD' }, method);
    // The page is `/` only: its asset paths are relative to it.
    const name = path === '/' ? 'index.html' : path.replace(/^\/console\/?/, '');
    const servable = SAFE_NAME.test(name) && (name !== 'index.html' || path === '/');
    const body = servable ? await this.read(name) : null;
    if (body === null) {
      const missing = path === '/' ? 'the console is not built: run `npm run build`\n' : 'no such file\n';
      return this.send(res, 404, 'text/plain; charset=utf-8', missing, { 'cache-control': 'no-store' }, method);
    }
    const cache = name === 'index.html' ? 'no-store' : HASHED.test(name) ? 'public, max-age=31536000, immutable' : 'no-cache';
    return this.send(res, 200, TYPES[extname(name)] ?? 'application/octet-stream', body, { 'cache-control': cache }, method);
  }

  private async read(name: string): Promise<Buffer | null> {
    // Listing the folder first means only files the build wrote can be served, whatever the name.
    const names = await readdir(this.dir).catch(() => [] as string[]);
    if (!names.includes(name)) return null;
    return readFile(join(this.dir, name)).catch(() => null);
  }

  private send(res: ServerResponse, status: number, type: string, body: string | Buffer, extra: Record<string, string>, method: string): void {
    const buf = typeof body === 'string' ? Buffer.from(body) : body;
    res.writeHead(status, { ...CONSOLE_HEADERS, 'content-type': type, 'content-length': buf.length, ...extra });
    res.end(method === 'HEAD' ? undefined : buf);
  }
}

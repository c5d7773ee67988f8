/**
 * The SQL notifyd runs, kept in plain files under `sql/` (reviewed as SQL,
 * parameters only, never built from strings): numbered migrations in
 * `sql/migrations/`, one query per file in `sql/queries/`.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** `sql/`, found from both `src/db/` (tsx) and `dist/src/db/` (built). */
function sqlDir(): string {
  for (const up of ['../..', '../../..']) {
    const p = resolve(here, up, 'sql');
    if (existsSync(resolve(p, 'queries'))) return p;
  }
  throw new Error('sql/ not found next to the package');
}

const cache = new Map<string, string>();

/** The text of `sql/queries/<name>.sql` (read once). */
export function query(name: string): string {
  let text = cache.get(name);
  if (text === undefined) {
    text = readFileSync(resolve(sqlDir(), 'queries', `${name}.sql`), 'utf8');
    cache.set(name, text);
  }
  return text;
}

/** One numbered migration. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/**
 * The migrations in `sql/migrations/` (`NNN-name.sql`), in order. Throws on a
 * `.sql` file named otherwise or two files with one number: either would be
 * skipped or half-applied without a word.
 */
export function migrations(dir = resolve(sqlDir(), 'migrations')): Migration[] {
  const out: Migration[] = [];
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.sql')) continue;
    const m = /^(\d{3})-([a-z0-9-]+)\.sql$/.exec(f);
    if (m === null) throw new Error(`sql/migrations/${f}: not named NNN-name.sql (three digits, then lower-case letters, digits and dashes)`);
    const version = Number(m[1]);
    const twin = out.find((x) => x.version === version);
    if (twin !== undefined) throw new Error(`sql/migrations: ${f} and ${String(version).padStart(3, '0')}-${twin.name}.sql have one number`);
    out.push({ version, name: m[2]!, sql: readFileSync(resolve(dir, f), 'utf8') });
  }
  return out.sort((a, b) => a.version - b.version);
}

// The migrations' file names: a misnamed or doubly numbered file must stop the list, not be skipped.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { migrations } from '../../src/db/sql.js';

function dirWith(files: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'notifyd-migrations-'));
  for (const f of files) writeFileSync(join(dir, f), 'SELECT 1;');
  return dir;
}

describe('migrations()', () => {
  it("lists the repository's migrations in order, each NNN-name.sql", () => {
    const all = migrations();
    assert.ok(all.length >= 2);
    assert.deepEqual(all.map((m) => m.version), [...all.map((m) => m.version)].sort((a, b) => a - b));
  });

  it('throws on a .sql file not named NNN-name.sql, and on two files with one number; other files are ignored', (t) => {
    const cases: [string[], RegExp][] = [
      [['001-a.sql', '002-add_col.sql'], /002-add_col\.sql: not named NNN-name\.sql/],
      [['001-a.sql', '3-b.sql'], /3-b\.sql: not named/],
      [['001-a.sql', '002-b.sql', '002-c.sql'], /have one number/],
    ];
    for (const [files, why] of cases) {
      const dir = dirWith(files);
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      assert.throws(() => migrations(dir), why, files.join(' '));
    }
    const dir = dirWith(['002-b.sql', '001-a.sql', 'README.md']);
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    assert.deepEqual(migrations(dir).map((m) => `${m.version}-${m.name}`), ['1-a', '2-b']);
  });
});

// The module graph of src/ and workers/ has no cycle, type-only imports
// included: a cycle is a sign that a module does two jobs, and a runtime
// cycle in ESM means one side sees the other half-initialised.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Relative import specifiers of a module (static `import`/`export … from`, and `import()`), resolved to source files. */
function importsOf(file: string, text: string): string[] {
  const specs = new Set<string>();
  const re = /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)|^import\s+['"](\.[^'"]+)['"]/gm;
  for (const m of text.matchAll(re)) specs.add((m[1] ?? m[2] ?? m[3])!);
  return [...specs].map((s) => resolve(dirname(file), s.replace(/\.js$/, '.ts')));
}

/** Strongly connected components with more than one module, or a module importing itself (Tarjan). */
function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) {
        low.set(v, Math.min(low.get(v)!, idx.get(w)!));
      }
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(comp);
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) visit(v);
  return out;
}

describe('import graph', () => {
  it('finds a cycle when there is one (the checker itself works)', () => {
    const g = new Map([
      ['a', ['b']],
      ['b', ['c']],
      ['c', ['a']],
      ['d', ['a']],
    ]);
    assert.deepEqual(cycles(g).map((c) => c.sort()), [['a', 'b', 'c']]);
    assert.deepEqual(importsOf('/x/y.ts', "import type { A } from './a.js';\nexport { b } from '../b.js';\nconst c = await import('./c.js');"), ['/x/a.ts', '/b.ts', '/x/c.ts']);
  });

  it('src/ and workers/ have no import cycle, type-only imports included', () => {
    const files = [...sources(join(root, 'src')), ...sources(join(root, 'workers'))];
    const graph = new Map(files.map((f) => [f, importsOf(f, readFileSync(f, 'utf8'))]));
    for (const [f, deps] of graph) {
      for (const d of deps) assert.ok(graph.has(d) || !d.startsWith(root + '/src'), `${relative(root, f)} imports missing ${relative(root, d)}`);
    }
    const found = cycles(graph).map((c) => c.map((f) => relative(root, f)).sort().join(' → '));
    assert.deepEqual(found, []);
  });

  it('a worker loads neither the config loader nor a package only some configurations use', () => {
    // Workers are handed their config over the IPC pipe; the loader brings the schema (TypeBox: ~14 MB
    // resident per process, 45-55 MiB of the idle daemon) and node-cron. pg and piscina load when a
    // database or an RSA pool is first used. Only imports that run at load time count here:
    // `import type` is erased and `import()` waits until it is called.
    const runtime = (text: string): string[] => {
      const out: string[] = [];
      const re = /^(?:import|export)\s+(?!type\s)(?:[^'"]*?\sfrom\s*)?['"]([^'"]+)['"]/gm;
      for (const m of text.matchAll(re)) out.push(m[1]!);
      return out;
    };
    assert.deepEqual(runtime("import type { A } from 'pg';\nimport { b } from './b.js';\nimport 'x';\nexport * from './c.js';"), ['./b.js', 'x', './c.js']);
    const banned = new Set(['@sinclair/typebox', 'node-cron', 'pg', 'piscina']);
    for (const entry of readdirSync(join(root, 'workers')).filter((n) => n.endsWith('.ts'))) {
      const seen = new Set<string>();
      const reached: string[] = [];
      const walk = (file: string, via: string[]): void => {
        if (seen.has(file)) return;
        seen.add(file);
        for (const spec of runtime(readFileSync(file, 'utf8'))) {
          if (spec.startsWith('.')) {
            const dep = resolve(dirname(file), spec.replace(/\.js$/, '.ts'));
            if (dep === join(root, 'src', 'core', 'config.ts')) reached.push([...via, relative(root, file), 'src/core/config.ts'].join(' → '));
            else walk(dep, [...via, relative(root, file)]);
          } else if (banned.has(spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/'))) {
            reached.push([...via, relative(root, file), spec].join(' → '));
          }
        }
      };
      walk(join(root, 'workers', entry), []);
      assert.deepEqual(reached, [], `workers/${entry}`);
    }
  });
});

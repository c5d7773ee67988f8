/**
 * Top self-time functions (and packages) of a `node --cpu-prof` profile:
 *   node dist/bench/cpuprofile-top.js FILE.cpuprofile [--top 30] [--from µs --to µs]
 * `npm run bench -- --cpu-prof DIR` writes one profile per process into DIR
 * (daemon: CPU.<pid>.<role>.cpuprofile, ceiling: CPU.<date>.<pid>….cpuprofile)
 * and prints each measured window as `--from µs --to µs`.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function area(url: string): string {
  if (!url) return '(native/vm)';
  if (url.startsWith('node:')) return url.replace(/^node:(internal\/)?/, 'node:').split('/').slice(0, 2).join('/');
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  const own = /\/dist\/(src|bench|workers)\/(.+)$/.exec(url);
  if (own) return `${own[1]}/${own[2]}`;
  return url;
}

/**
 * Self time per function and per package. `from`/`to` (CLOCK_MONOTONIC µs, the
 * clock of `startTime` and of `process.hrtime`) keep only the samples of a window.
 */
export function topOf(profile: Profile, top = 30, from = -Infinity, to = Infinity): { total: number; byFunction: [string, number][]; byArea: [string, number][] } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    const d = profile.timeDeltas[i] ?? 0;
    t += d;
    if (t < from || t > to) continue;
    selfUs.set(id, (selfUs.get(id) ?? 0) + d);
  }
  const fn = new Map<string, number>();
  const ar = new Map<string, number>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (!n) continue;
    const cf = n.callFrame;
    const key = `${cf.functionName || '(anonymous)'} ${area(cf.url)}:${cf.lineNumber + 1}`;
    fn.set(key, (fn.get(key) ?? 0) + us);
    const a = cf.url ? area(cf.url) : cf.functionName;
    ar.set(a, (ar.get(a) ?? 0) + us);
    total += us;
  }
  const sort = (m: Map<string, number>): [string, number][] => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  return { total, byFunction: sort(fn), byArea: sort(ar) };
}

function main(): void {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' } } });
  const top = Number(values.top ?? 30);
  const from = values.from ? Number(values.from) : -Infinity;
  const to = values.to ? Number(values.to) : Infinity;
  for (const file of positionals) {
    const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
    const r = topOf(p, top, from, to);
    const idle = r.byArea.find(([k]) => k === '(idle)')?.[1] ?? 0;
    if (Number.isFinite(from)) process.stdout.write(`\n${file}: window ${((to - from) / 1000).toFixed(0)} ms, busy ${(100 - (100 * idle) / r.total).toFixed(1)}%`);
    const pct = (us: number): string => `${((100 * us) / r.total).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(6)} ms`;
    process.stdout.write(`\n${file}: ${(r.total / 1000).toFixed(0)} ms sampled over ${((p.endTime - p.startTime) / 1e6).toFixed(1)} s\n`);
    process.stdout.write(`-- self time by function\n`);
    for (const [k, us] of r.byFunction) process.stdout.write(`${pct(us)}  ${k}\n`);
    process.stdout.write(`-- self time by package / file\n`);
    for (const [k, us] of r.byArea.slice(0, 15)) process.stdout.write(`${pct(us)}  ${k}\n`);
  }
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, '/'))) main();

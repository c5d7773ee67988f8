// Builds the operator console (console/src) into dist/console: one hashed
// script, one hashed stylesheet and an index.html that names them. The admin
// port serves that folder (src/admin/console-files.ts); nothing comes from
// another host and nothing is inline, so the page runs under a CSP of 'self'.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const outdir = resolve(here, '..', 'dist', 'console');

rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });

const result = await build({
  entryPoints: { app: resolve(here, 'src', 'main.tsx') },
  outdir,
  // The hash lets the server cache the assets for good while index.html is never cached.
  entryNames: '[name]-[hash]',
  bundle: true,
  format: 'esm',
  minify: true,
  target: ['es2022', 'chrome110', 'firefox115', 'safari16'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs).map((p) => basename(p));
const script = outputs.find((f) => f.endsWith('.js'));
const style = outputs.find((f) => f.endsWith('.css'));
if (!script || !style) throw new Error(`console build: expected one .js and one .css, got ${outputs.join(', ')}`);

// Relative asset paths: the page also works behind a proxy that mounts the admin port under a path.
const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>notifyd console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="console/${style}">
<script type="module" src="console/${script}"></script>
</head>
<body>
<div id="app"></div>
<noscript><p>The notifyd console needs JavaScript. The same data is on the admin API: <code>notifyd ctl status</code>.</p></noscript>
</body>
</html>
`;
writeFileSync(resolve(outdir, 'index.html'), html);
process.stdout.write(`console: dist/console/{index.html,${script},${style}}\n`);

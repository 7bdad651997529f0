#!/usr/bin/env node
// npm run build:lib (and prepack): the package in dist/, ESM JavaScript and .d.ts.
//
//  1. tsc -p tsconfig.build.json: src/index.ts, src/thread.ts and what they import, one .js and
//     one .d.ts per source file; @internal declarations stripped from the .d.ts.
//  2. WGSL inlined: dist/device/wgslFiles.js (loaders that read or fetch shaders/*.wgsl) is run
//     once, here, and replaced by a module whose loaders return each file's text as a string
//     literal. The package never fetches or reads a shader at run time, so bundlers (Vite's
//     dependency pre-bundling included) have no asset URL to break.
//  3. The .d.ts files import each other as './x.js' (tsc rewrites the .js files' './x.ts'
//     imports, not the declarations').
//  4. Checks: nothing in dist/ still loads a .wgsl file or imports a '.ts' module, and the entry
//     points' .d.ts declare every value they export.
//
// Why tsc and not a bundler: docs/packaging.md.

import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(repo, 'dist');
const started = Date.now();

function fail(message) {
  console.error(`build:lib: ${message}`);
  process.exit(1);
}

/** Every file under dir, recursively. */
function files(dir) {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

// 1. Emit.
rmSync(dist, { recursive: true, force: true });
const tsc = spawnSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', join(repo, 'tsconfig.build.json')], {
  cwd: repo,
  stdio: 'inherit',
});
if (tsc.status !== 0) fail(`tsc failed (exit ${tsc.status})`);

// 2. Inline the WGSL: run the repository's loaders (Node reads the files from shaders/; dist/
// sits where src/ does, so their relative URLs still point there) and freeze their results.
const wgslModule = join(dist, 'device', 'wgslFiles.js');
const { wgslFiles } = await import(pathToFileURL(wgslModule).href);
const names = Object.keys(wgslFiles ?? {});
if (names.length === 0) fail(`${relative(repo, wgslModule)} exports no wgslFiles loaders`);
const texts = await Promise.all(names.map((n) => wgslFiles[n]()));
writeFileSync(
  wgslModule,
  [
    "// The library's WGSL, inlined from shaders/ by scripts/build-lib.mjs (src/device/wgslFiles.ts",
    '// loads the same files in the repository). Generated: do not edit.',
    'export const wgslFiles = {',
    ...names.map((n, i) => `    ${n}: () => Promise.resolve(${JSON.stringify(texts[i])}),`),
    '};',
    '',
  ].join('\n'),
);

// 3. Declarations import './x.js', as the JavaScript does.
const tsSpecifier = /((?:from|import)\s*\(?\s*['"])(\.{1,2}\/[^'"]*?)\.ts(['"])/g;
for (const f of files(dist).filter((f) => f.endsWith('.d.ts'))) {
  const text = readFileSync(f, 'utf8');
  const fixed = text.replace(tsSpecifier, '$1$2.js$3');
  if (fixed !== text) writeFileSync(f, fixed);
}

// 4. Checks.
const problems = [];
for (const f of files(dist)) {
  const code = readFileSync(f, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/^\s*\/\/.*$/gm, '');
  const where = relative(repo, f);
  if (f === wgslModule) continue;
  if (/new URL\(\s*['"`][^'"`]*\.wgsl/.test(code)) problems.push(`${where} still refers to a .wgsl file by URL`);
  if (/\bloadShaderText\b/.test(code)) problems.push(`${where} still loads shaders at run time`);
  tsSpecifier.lastIndex = 0;
  if (tsSpecifier.test(code)) problems.push(`${where} imports a '.ts' module`);
}
// stripInternal drops a declaration when any comment before it, even a plain // one, contains the
// tag: every value an entry point exports must still be in its .d.ts.
for (const entry of ['index', 'thread']) {
  const names = Object.keys(await import(pathToFileURL(join(dist, `${entry}.js`)).href));
  const dts = readFileSync(join(dist, `${entry}.d.ts`), 'utf8');
  const missing = names.filter((n) => !new RegExp(`\\b${n}\\b`).test(dts));
  if (missing.length) problems.push(`dist/${entry}.d.ts lacks ${missing.join(', ')} (stripped as internal?)`);
}
if (problems.length) fail(`dist/ is not a package yet:\n  ${problems.join('\n  ')}`);

const all = files(dist);
console.log(
  `build:lib: dist/ has ${all.filter((f) => f.endsWith('.js')).length} modules and their .d.ts, ` +
    `WGSL inlined (${names.join(', ')}), in ${((Date.now() - started) / 1000).toFixed(1)} s`,
);

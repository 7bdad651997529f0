// Vite serves demos/ as a multi-page app: the gallery at `/` (demos/index.html) and one page
// per demo folder (demos/<name>/index.html). Every response carries COOP/COEP so the pages are
// cross-origin isolated: system RAM is a SharedArrayBuffer, which needs `crossOriginIsolated`.
// The demos import the library by its package name, `webgpu-hmm` and `webgpu-hmm/thread`,
// which resolve to its source here (selfReference). The library lives outside the root (src/,
// shaders/); the dev server may read the whole repo, so `new URL('../../shaders/x.wgsl',
// import.meta.url)` in src/device/wgslFiles.ts resolves in dev, and the build emits those files
// as assets. The build goes to build/demos: dist/ is the package's (npm run build:lib).

import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const repo = dirname(fileURLToPath(import.meta.url));
const root = join(repo, 'demos');

/** The gallery plus every demos/<name>/index.html, keyed by name. */
function demoPages(): Record<string, string> {
  const pages: Record<string, string> = { gallery: join(root, 'index.html') };
  for (const entry of readdirSync(root, { withFileTypes: true })) {
    const html = join(root, entry.name, 'index.html');
    if (entry.isDirectory() && existsSync(html)) pages[entry.name] = html;
  }
  return pages;
}

/**
 * The package's own name, resolved to its source, as tsconfig.json's `paths` do for tsc and tsx
 * (Vitest's config uses this too). Users get dist/ through package.json "exports".
 */
export const selfReference = [
  { find: /^webgpu-hmm$/, replacement: join(repo, 'src', 'index.ts') },
  { find: /^webgpu-hmm\/thread$/, replacement: join(repo, 'src', 'thread.ts') },
];

/** Cross-origin isolation: COOP same-origin + COEP require-corp (enables SharedArrayBuffer). */
const isolation = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export default defineConfig({
  root,
  // Relative asset URLs, so a build also works from a sub-path.
  base: './',
  resolve: { alias: selfReference },
  server: {
    headers: isolation,
    // src/ and shaders/ sit beside demos/, outside the root: let the dev server read the repo.
    fs: { allow: [repo] },
  },
  preview: { headers: isolation },
  worker: { format: 'es' },
  build: {
    target: 'es2022',
    outDir: resolve(repo, 'build', 'demos'),
    emptyOutDir: true,
    // Keep the shaders as files the library fetches, never inlined as data: URLs.
    assetsInlineLimit: (file: string) => (file.endsWith('.wgsl') ? false : undefined),
    rolldownOptions: {
      input: demoPages(),
      // The library imports node:* only on its Node code paths (Dawn, reading shaders from
      // disk); leave those imports alone instead of shimming them for the browser.
      external: [/^node:/],
    },
  },
});

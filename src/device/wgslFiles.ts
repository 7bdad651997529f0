// The library's own WGSL files (the prelude, the mirror copy kernel), by name, and how this
// repository loads them: each is a `new URL(literal, import.meta.url)`, which Vite serves and
// bundles for the demos and which Node and Vitest read from disk.
//
// The package build (scripts/build-lib.mjs) runs this module once and replaces it in dist/ with
// one that holds each file's text as a string literal, so the published package never fetches
// or reads a shader at run time (docs/packaging.md). Keep it a module of loaders and nothing
// else: nothing else in it survives the build.

/** Loaders of the library's WGSL files, by name. */
export const wgslFiles = {
  prelude: (): Promise<string> => loadShaderText(new URL('../../shaders/hmm.wgsl', import.meta.url)),
  mirrorCopy: (): Promise<string> => loadShaderText(new URL('../../shaders/mirror_copy.wgsl', import.meta.url)),
};

/**
 * The text of a WGSL file given by a `new URL(literal, import.meta.url)`: read from disk in
 * Node, fetched in a browser (the bench loads its own kernels through this).
 * @internal Not in the package: the build inlines the library's shaders instead.
 */
export async function loadShaderText(url: URL): Promise<string> {
  if (url.protocol === 'file:') {
    const { readFile } = await import(/* @vite-ignore */ 'node:fs/promises');
    return readFile(url, 'utf8');
  }
  const res = await fetch(url);
  if (!res.ok) throw new Error(`loading shader ${url.href}: HTTP ${res.status}`);
  return res.text();
}

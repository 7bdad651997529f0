// Loads the WGSL files under shaders/. Each is referenced as `new URL(literal, import.meta.url)`
// so Vite serves and bundles it for the browser, while Node and Vitest read it from disk.

const urls = {
  prelude: new URL('../../shaders/hmm.wgsl', import.meta.url),
  mirrorCopy: new URL('../../shaders/mirror_copy.wgsl', import.meta.url),
};

export type ShaderName = keyof typeof urls;

const cache = new Map<ShaderName, Promise<string>>();

/** The text of a WGSL file given by a `new URL(literal, import.meta.url)` (the bench loads its own through this). */
export async function loadShaderText(url: URL): Promise<string> {
  if (url.protocol === 'file:') {
    const { readFile } = await import(/* @vite-ignore */ 'node:fs/promises');
    return readFile(url, 'utf8');
  }
  const res = await fetch(url);
  if (!res.ok) throw new Error(`loading shader ${url.href}: HTTP ${res.status}`);
  return res.text();
}

export function shaderSource(name: ShaderName): Promise<string> {
  let p = cache.get(name);
  if (!p) {
    p = loadShaderText(urls[name]);
    cache.set(name, p);
  }
  return p;
}

// The WGSL sources of the library's own kernels, by name, each loaded once. Where the text
// comes from is wgslFiles.ts: files under shaders/ in this repository, string literals inlined
// at build time in the published package.

import { wgslFiles } from './wgslFiles.ts';

export type ShaderName = keyof typeof wgslFiles;

const cache = new Map<ShaderName, Promise<string>>();

export function shaderSource(name: ShaderName): Promise<string> {
  let p = cache.get(name);
  if (!p) {
    p = wgslFiles[name]();
    cache.set(name, p);
  }
  return p;
}

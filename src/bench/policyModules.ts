// `npm run bench -- --policy FILE`: load each policy module (a dynamic import of the resolved
// path; under tsx a .ts module loads as it is) and check that its default export is a PolicySet
// (policySets.ts). Node only: the runner takes the loaded sets, never files.

import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { PolicySet } from 'webgpu-hmm';
import { asPolicySet, policyStrategyName } from './policySets.ts';

/** A policy set and the file it came from. */
export interface LoadedPolicy {
  set: PolicySet;
  /** The path as given on the command line. */
  source: string;
}

/** A policy module that cannot be used; the message names the file. */
export class PolicyModuleError extends Error {
  override name = 'PolicyModuleError';
}

/** Load one module's default export and check it (relative paths resolve against `cwd`). */
export async function loadPolicyModule(file: string, cwd = process.cwd()): Promise<LoadedPolicy> {
  const path = resolve(cwd, file);
  if (!existsSync(path)) throw new PolicyModuleError(`--policy ${file}: no such file (${path})`);
  if (!statSync(path).isFile()) throw new PolicyModuleError(`--policy ${file}: not a file`);
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(path).href)) as { default?: unknown };
  } catch (e) {
    throw new PolicyModuleError(`--policy ${file}: the module does not load: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!('default' in mod) || mod.default === undefined)
    throw new PolicyModuleError(
      `--policy ${file}: the module has no default export (it must \`export default\` a PolicySet { name, prefetch?, eviction?, placement?, batching? })`,
    );
  try {
    return { set: asPolicySet(mod.default, `--policy ${file}`), source: file };
  } catch (e) {
    throw new PolicyModuleError((e as Error).message);
  }
}

/** Load every module, in order; two sets with one name would be one strategy, so that is an error. */
export async function loadPolicyModules(files: readonly string[], cwd = process.cwd()): Promise<LoadedPolicy[]> {
  const out: LoadedPolicy[] = [];
  for (const f of files) {
    const p = await loadPolicyModule(f, cwd);
    const clash = out.find((o) => o.set.name === p.set.name);
    if (clash)
      throw new PolicyModuleError(
        `--policy ${f}: its policy set is named '${p.set.name}', as ${clash.source}'s is; strategy ${policyStrategyName(p.set)} would be both`,
      );
    out.push(p);
  }
  return out;
}

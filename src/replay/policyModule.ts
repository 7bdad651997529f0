// `npm run replay -- --policy FILE`: load a policy module (a file whose default export is a
// PolicySet, as examples/policies/*.ts are) and check it before any replay asks it anything, so
// a mistake names the file and what is wrong. Node only (a dynamic import of the file).

import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { HmmError } from '../errors.ts';
import { checkPolicy } from '../policy/guard.ts';
import type { PolicySet } from '../policy/types.ts';

const KINDS = ['prefetch', 'eviction', 'placement', 'batching'] as const;

/** A PolicySet, or EINVAL naming `source` and what is wrong. */
export function checkPolicySet(v: unknown, source: string): PolicySet {
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new HmmError('EINVAL', `${source}: the default export is not a policy set { name, prefetch?, eviction?, placement?, batching? }`);
  const set = v as Record<string, unknown>;
  if (typeof set.name !== 'string' || set.name === '')
    throw new HmmError('EINVAL', `${source}: the policy set has no name (a non-empty string: it labels its column)`);
  const extra = Object.keys(set).find((k) => k !== 'name' && !(KINDS as readonly string[]).includes(k));
  if (extra !== undefined) throw new HmmError('EINVAL', `${source}: '${extra}' is not a policy kind (${KINDS.join(', ')})`);
  if (!KINDS.some((k) => set[k] !== undefined)) throw new HmmError('EINVAL', `${source}: the policy set '${set.name}' holds no policy`);
  for (const k of KINDS) if (set[k] !== undefined) checkPolicy(k, set[k], source);
  return v as PolicySet;
}

/** Import `file` (relative to `cwd`) and return its default export as a PolicySet. */
export async function loadPolicySet(file: string, cwd = process.cwd()): Promise<PolicySet> {
  const path = resolve(cwd, file);
  if (!existsSync(path)) throw new HmmError('EINVAL', `--policy ${file}: no such file (${path})`);
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(path).href)) as { default?: unknown };
  } catch (e) {
    throw new HmmError('EINVAL', `--policy ${file}: the module does not load: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (mod.default === undefined) throw new HmmError('EINVAL', `--policy ${file}: the module has no default export (export default a PolicySet)`);
  return checkPolicySet(mod.default, `--policy ${file}`);
}

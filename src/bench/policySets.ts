// What a policy module must default-export: a PolicySet (src/policy/types.ts), a named object
// holding any of the four policies. `npm run bench -- --policy FILE` (policyModules.ts) and the
// Policy lab page (demos/policy-lab/) check a module's default export here before they run it,
// so a mistake is reported with the file and what is wrong, not as an error deep in a dispatch.
// Pure: no Node, no DOM.

import type { PolicySet } from 'webgpu-hmm';

/** The policy kinds a set may hold, and the one method each must have. */
export const POLICY_METHODS = { prefetch: 'select', eviction: 'victims', placement: 'decide', batching: 'plan' } as const;
export type PolicyKind = keyof typeof POLICY_METHODS;
export const POLICY_KINDS = Object.keys(POLICY_METHODS) as PolicyKind[];

/** The strategy name a policy set runs under in the bench and the lab. */
export const policyStrategyName = (set: Pick<PolicySet, 'name'>): `policy:${string}` => `policy:${set.name}`;

function describe(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array (${v.length} items)`;
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'string') return `the string '${v.length > 40 ? `${v.slice(0, 40)}…` : v}'`;
  if (typeof v !== 'object') return `${typeof v} ${String(v)}`;
  return 'an object';
}

const SHAPE = '{ name, prefetch?, eviction?, placement?, batching? }';

/** What keeps `v` from being a PolicySet, in words; null when it is one. */
export function policySetProblem(v: unknown): string | null {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return `it is ${describe(v)}, not a policy set ${SHAPE}`;
  const set = v as Record<string, unknown>;
  if (typeof set.name !== 'string' || set.name.trim() === '')
    return `its name is ${describe(set.name)}: a policy set needs a non-empty string name (it labels the set in tables and plots)`;
  for (const key of Object.keys(set)) {
    if (key !== 'name' && !(key in POLICY_METHODS)) return `'${key}' is not a policy kind (a set holds name and any of ${POLICY_KINDS.join(', ')})`;
  }
  const kinds = POLICY_KINDS.filter((k) => set[k] !== undefined);
  if (kinds.length === 0) return `it holds no policy: give at least one of ${POLICY_KINDS.join(', ')}`;
  for (const kind of kinds) {
    const p = set[kind];
    const method = POLICY_METHODS[kind];
    if (p === null || typeof p !== 'object') return `its ${kind} is ${describe(p)}, not a policy { name, ${method}() }`;
    const name = (p as { name?: unknown }).name;
    if (typeof name !== 'string') return `its ${kind} policy's name is ${describe(name)}, not a string`;
    if (typeof (p as Record<string, unknown>)[method] !== 'function') return `its ${kind} policy '${name}' has no ${method}() method`;
  }
  return null;
}

/** `v` as a PolicySet, or an Error that names `source` (a file, "the editor") and what is wrong. */
export function asPolicySet(v: unknown, source: string): PolicySet {
  const problem = policySetProblem(v);
  if (problem !== null) throw new Error(`${source}: the default export is not a PolicySet: ${problem}`);
  return v as PolicySet;
}

/** The policies of a set, kind by kind, for reports ("eviction: lru"). */
export function policyKinds(set: PolicySet): Partial<Record<PolicyKind, string>> {
  const out: Partial<Record<PolicyKind, string>> = {};
  for (const k of POLICY_KINDS) {
    const p = set[k];
    if (p) out[k] = p.name;
  }
  return out;
}

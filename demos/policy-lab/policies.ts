// The policy sets the lab offers: the built-ins, every module in examples/policies/ (bundled by
// Vite's import.meta.glob, so a new example file shows up by itself), and the one typed into the
// page's editor, loaded as an ES module from a blob: URL. Every set is checked the way
// `npm run bench -- --policy` checks a module (src/bench/policySets.ts).

import { advicePlacement, capBatching, clockEviction, DEFAULT_PREFETCH, densityPrefetch, type PolicySet } from 'webgpu-hmm';
import { asPolicySet, policyKinds, policySetProblem } from '../../src/bench/policySets.ts';

export interface PolicyOption {
  /** Stable id for the form and the URL (?policies=built-in,lru). */
  id: string;
  /** What the user sees. */
  label: string;
  /** Where it comes from, in words. */
  origin: string;
  /** A fresh set for one run (the editor's is loaded when it runs). */
  make?: () => PolicySet;
  /** Why it cannot run (an example that is not a PolicySet). */
  problem?: string;
}

/** "prefetch stride(16), eviction lru": the kinds a set holds; the rest are the built-ins. */
export function describeSet(set: PolicySet): string {
  const kinds = Object.entries(policyKinds(set)).map(([k, n]) => `${k} ${n}`);
  return kinds.length ? kinds.join(', ') : 'the built-ins';
}

const BUILT_INS: PolicyOption[] = [
  {
    id: 'built-in',
    label: 'built-in',
    origin: 'the library defaults: density prefetch, clock eviction, advice placement, cap batching',
    make: () => ({ name: 'built-in', prefetch: densityPrefetch(), eviction: clockEviction(), placement: advicePlacement(), batching: capBatching() }),
  },
  {
    id: 'no-prefetch',
    label: 'no prefetch',
    origin: 'the built-ins with the density prefetcher off: only faulted pages come in',
    make: () => ({ name: 'no prefetch', prefetch: densityPrefetch({ ...DEFAULT_PREFETCH, enabled: false }) }),
  },
];

/** examples/policies/*.ts, each module's default export. */
const modules = import.meta.glob<{ default?: unknown }>('../../examples/policies/*.ts', { eager: true });

function exampleOptions(): PolicyOption[] {
  return Object.entries(modules)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([path, mod]) => {
      const file = path.replace(/^.*\/examples\//, 'examples/');
      const id = file.replace(/^.*\//, '').replace(/\.ts$/, '');
      const problem = policySetProblem(mod.default);
      if (problem !== null) return { id, label: id, origin: file, problem: `${file}: the default export is not a PolicySet: ${problem}` };
      const set = mod.default as PolicySet;
      return { id, label: set.name, origin: `${file}: ${describeSet(set)}`, make: () => set };
    });
}

export const EDITOR_ID = 'editor';

/** Every option, built-ins first, then the examples, then the editor. */
export function policyOptions(): PolicyOption[] {
  return [...BUILT_INS, ...exampleOptions(), { id: EDITOR_ID, label: 'editor', origin: 'the policy set typed in the editor below' }];
}

/** What the editor starts with: a policy set a user could write, in plain JavaScript. */
export const EDITOR_EXAMPLE = `// A policy set: a module whose default export has a name and any of
// prefetch, eviction, placement, batching (docs/policies.md). Pages are
// VA page numbers (va / 4096). What it leaves out is the built-ins'.
// This one prefetches the next 8 pages after every faulted page.
export default {
  name: 'next8',
  prefetch: {
    name: 'next(8)',
    select(faults, view) {
      const out = [];
      for (const p of faults)
        for (let k = 1; k <= 8; k++) if (!view.resident(p + k)) out.push(p + k);
      return out;
    },
  },
};
`;

/**
 * Load the editor's text as an ES module (a blob: URL) and check its default export; an Error
 * that says what is wrong otherwise (a syntax error, a throw while it loads, not a PolicySet).
 */
export async function loadEditorPolicy(text: string): Promise<PolicySet> {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/javascript' }));
  let mod: { default?: unknown };
  try {
    mod = (await import(/* @vite-ignore */ url)) as { default?: unknown };
  } catch (e) {
    const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    throw new Error(`the editor's module does not load: ${what}`);
  } finally {
    URL.revokeObjectURL(url);
  }
  if (!('default' in mod) || mod.default === undefined)
    throw new Error("the editor's module has no default export: write `export default { name: '…', prefetch: { name, select(faults, view) { … } } }`");
  return asPolicySet(mod.default, 'the editor');
}

// Mutation testing of the pure modules (`npm run mutate`, docs/testing.md): Stryker changes
// one thing in the source at a time (a `<` to `<=`, a condition to `true`, a string to '') and
// runs the unit tests that cover it; a mutant no test notices "survives". The unit project only
// (vitest.unit.config.ts), so no GPU is needed. It takes minutes on two cores: CI does not run
// it on every submission.
// @ts-check

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.unit.config.ts', related: true },
  coverageAnalysis: 'perTest',
  // Every module whose decisions the unit project exercises without a GPU. Left out, on purpose
  // (docs/testing.md, "Mutation testing"): src/mm/addressSpace.ts and src/hmm/migrate.ts (the
  // mechanism: their device paths run only on an adapter, under the gpu and fuzz projects),
  // src/mm/pagemap.ts and src/policy/types.ts (types only, nothing to mutate).
  mutate: [
    'src/policy/*.ts',
    '!src/policy/types.ts',
    'src/mm/vmaList.ts',
    'src/mm/frameAllocator.ts',
    'src/mm/notifier.ts',
    'src/mm/cpuPageTable.ts',
    'src/mm/args.ts',
    'src/mm/systemRam.ts',
    'src/mm/pins.ts',
    'src/mm/deviceHolds.ts',
    'src/hmm/rangeFault.ts',
    'src/device/kernelCheck.ts',
    'src/device/progress.ts',
    'src/trace/provenance.ts',
    // The record/replay simulator: the mechanism's decisions without a GPU.
    'src/replay/sim/**/*.ts',
    'src/replay/simulate.ts',
  ],
  // The sandbox copy needs only what the unit tests read; builds and reports stay out.
  ignorePatterns: ['dist', 'build', 'test-results', 'reports', 'docs', '*.log'],
  reporters: ['html', 'json', 'clear-text', 'progress'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  thresholds: { high: 98, low: 95, break: 95 },
  // Two cores: one test runner per core at most.
  concurrency: 2,
  // A mutant that loops forever (a lexer's `j++` removed) is stopped after this much more than
  // its tests' own time, and counts as killed. The tests it reruns take milliseconds; the margin
  // is for a loaded machine. (10 s made the timeouts most of a run's time.)
  timeoutMS: 3000,
  // `npx stryker run --incremental` reuses this file's results for mutants whose code and tests
  // did not change (minutes become seconds while writing tests); a plain run ignores it.
  incrementalFile: 'reports/stryker-incremental.json',
  tempDirName: '.stryker-tmp',
  cleanTempDir: true,
};

// Test projects: `unit` (pure logic, no GPU, fast), `gpu` (the real thing on a real WebGPU
// adapter through Dawn), `fuzz` (differential fuzzing on the adapter), `e2e` (demo pages in
// headless Chromium), and `load` (workers and kernels on shared pages for LOAD_MS, 2 s here;
// `npm run load` runs it longer). GPU tests run one file at a time: a software adapter uses
// every core, and Dawn keeps a device per file.
import { defineConfig } from 'vitest/config';
import { selfReference } from './vite.config.ts';

const onAdapter = {
  environment: 'node' as const,
  pool: 'forks' as const,
  fileParallelism: false,
  hookTimeout: 120_000,
  globalSetup: ['tests/gpu/globalSetup.ts'],
};

// The bounded load test: workers and kernels on shared pages for LOAD_MS (docs/concurrency.md).
const loadMs = Number(process.env.LOAD_MS ?? 2000);

export default defineConfig({
  // `webgpu-hmm` (the bench imports the package by name) is the source here, as in tsconfig.json;
  // every project `extends` this root config to get it.
  resolve: { alias: selfReference },
  test: {
    projects: [
      { extends: true, test: { name: 'unit', include: ['tests/unit/**/*.test.ts'], environment: 'node' } },
      { extends: true, test: { name: 'gpu', include: ['tests/gpu/**/*.test.ts'], ...onAdapter, testTimeout: 120_000 } },
      // Differential fuzzing against a plain model, on the real adapter (tests/fuzz/).
      { extends: true, test: { name: 'fuzz', include: ['tests/fuzz/**/*.test.ts'], ...onAdapter, testTimeout: 3_600_000 } },
      { extends: true, test: { name: 'load', include: ['tests/load/**/*.test.ts'], ...onAdapter, testTimeout: loadMs + 120_000 } },
      {
        // Demo pages in headless Chromium with software WebGPU (DESIGN §6).
        extends: true,
        test: { name: 'e2e', include: ['tests/e2e/**/*.test.ts'], environment: 'node', fileParallelism: false, testTimeout: 300_000 },
      },
      {
        // The packed package installed in a temporary folder and used as users do: plain node, a
        // Vite app in headless Chromium, a type-check; publint and attw (tests/consumer/).
        extends: true,
        test: {
          name: 'consumer',
          include: ['tests/consumer/**/*.test.ts'],
          environment: 'node',
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 240_000,
        },
      },
    ],
  },
});

// Four test projects: `unit` (pure logic, no GPU, fast), `gpu` (the real thing on a real
// WebGPU adapter through Dawn), `fuzz` (differential fuzzing on the adapter) and `e2e` (demo
// pages in headless Chromium). GPU tests run one
// file at a time: a software adapter uses every core, and Dawn keeps a device per file.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['tests/unit/**/*.test.ts'], environment: 'node' } },
      {
        test: {
          name: 'gpu',
          include: ['tests/gpu/**/*.test.ts'],
          environment: 'node',
          pool: 'forks',
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
          globalSetup: ['tests/gpu/globalSetup.ts'],
        },
      },
      {
        // Differential fuzzing against a plain model, on the real adapter (tests/fuzz/).
        test: {
          name: 'fuzz',
          include: ['tests/fuzz/**/*.test.ts'],
          environment: 'node',
          pool: 'forks',
          fileParallelism: false,
          testTimeout: 3_600_000,
          hookTimeout: 120_000,
          globalSetup: ['tests/gpu/globalSetup.ts'],
        },
      },
      {
        // Demo pages in headless Chromium with software WebGPU (DESIGN §6).
        test: { name: 'e2e', include: ['tests/e2e/**/*.test.ts'], environment: 'node', fileParallelism: false, testTimeout: 300_000 },
      },
    ],
  },
});

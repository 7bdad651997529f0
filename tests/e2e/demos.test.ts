// End to end in a real browser: headless Chromium (Debian's /usr/bin/chromium) with software
// WebGPU runs the vector-add demo, served by `vite` and by `vite preview` after a build, and
// the result is read from the page (not merely "no error"). Screenshots go to test-results/.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

function checkDemo(args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, ['scripts/check-demo.mjs', ...args], { encoding: 'utf8', timeout: 240_000 });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}

describe('vector-add demo in Chromium', () => {
  it('computes a correct result on the dev server, cross-origin isolated', () => {
    const r = checkDemo(['--port', '5191', '--n', '16384', '--shot', 'test-results/vector-add-dev.png']);
    expect(r.out).toMatch(/#result: result: correct \(16384 elements\)/);
    expect(r.out).toContain('crossOriginIsolated=true');
    expect(r.status).toBe(0);
  });

  it('computes a correct result from a production build served by vite preview', () => {
    const r = checkDemo(['--preview', '--port', '5192', '--n', '4096', '--shot', 'test-results/vector-add-preview.png']);
    expect(r.out).toMatch(/#result: result: correct \(4096 elements\)/);
    expect(r.status).toBe(0);
  });
});

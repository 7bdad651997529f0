// The README's examples run as written (they are the files the README shows), so the
// documentation cannot drift from the code.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

function run(file: string): { status: number | null; out: string } {
  const tsx = 'node_modules/tsx/dist/cli.mjs';
  const r = spawnSync(process.execPath, [tsx, file], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
}

describe('examples', () => {
  it('examples/double.ts doubles every value through the device', () => {
    const r = run('examples/double.ts');
    expect(r.out).toContain('ok: out[4095] = 8190');
    expect(r.status).toBe(0);
  });

  it('examples/fault-driven.ts walks a CPU-built list on the GPU, fault-driven', () => {
    const r = run('examples/fault-driven.ts');
    expect(r.out).toMatch(/sum 32640 \(expected 32640\) in \d+ rounds/);
    expect(r.status).toBe(0);
  });
});

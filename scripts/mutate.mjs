// npm run mutate [-- STRYKER OPTIONS]: Stryker over the pure modules (stryker.config.mjs,
// docs/testing.md), then a short JSON summary beside its full report: the score per file and in
// all, the mutants by status, and the run's wall time, in reports/mutation/summary.json (and as a
// Markdown table on stdout, the one docs/testing.md shows). Exits with Stryker's status, so the
// run still fails below the configured threshold.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';

const REPORT = 'reports/mutation/mutation.json';
const SUMMARY = 'reports/mutation/summary.json';

const started = Date.now();
const run = spawnSync('npx', ['stryker', 'run', ...process.argv.slice(2)], { stdio: 'inherit' });
const seconds = Math.round((Date.now() - started) / 1000);

if (!existsSync(REPORT) || statSync(REPORT).mtimeMs < started) {
  console.error(`mutate: no fresh ${REPORT} (stryker exited ${run.status}); no summary written`);
  process.exit(run.status ?? 1);
}

const report = JSON.parse(readFileSync(REPORT, 'utf8'));
const DETECTED = ['Killed', 'Timeout'];
const UNDETECTED = ['Survived', 'NoCoverage'];
/** Stryker's mutation score: detected / (detected + undetected); ignored and invalid mutants do not count. */
const score = (c) => {
  const detected = DETECTED.reduce((n, s) => n + (c[s] ?? 0), 0);
  const valid = detected + UNDETECTED.reduce((n, s) => n + (c[s] ?? 0), 0);
  return valid === 0 ? 100 : Math.round((1000 * detected) / valid) / 10;
};

const files = {};
const total = {};
for (const [file, { mutants }] of Object.entries(report.files)) {
  const counts = {};
  for (const m of mutants) {
    counts[m.status] = (counts[m.status] ?? 0) + 1;
    total[m.status] = (total[m.status] ?? 0) + 1;
  }
  files[file] = { mutants: mutants.length, ...counts, score: score(counts) };
}
const mutantCount = Object.values(files).reduce((n, f) => n + f.mutants, 0);
const summary = {
  date: new Date(started).toISOString(),
  wallSeconds: seconds,
  threshold: report.thresholds?.break ?? null,
  total: { mutants: mutantCount, ...total, score: score(total) },
  files,
};
writeFileSync(SUMMARY, `${JSON.stringify(summary, null, 2)}\n`);

const row = (name, f) =>
  `| ${name} | ${f.mutants} | ${(f.Killed ?? 0) + (f.Timeout ?? 0)} | ${f.Survived ?? 0} | ${f.NoCoverage ?? 0} | ${f.score.toFixed(1)} % |`;
console.log(`\n${SUMMARY} (${Math.floor(seconds / 60)} min ${seconds % 60} s):\n`);
console.log('| File | Mutants | Killed | Survived | No coverage | Score |\n|---|---|---|---|---|---|');
for (const [file, f] of Object.entries(files).sort(([a], [b]) => a.localeCompare(b))) console.log(row(`\`${file}\``, f));
console.log(row('**all**', summary.total));
process.exit(run.status ?? 1);

// `npm run bench`: the bench in Node (Dawn), with a progress bar, the tables on stdout, and
// --json / --html files; --browser also runs the same suite in headless Chromium (browser.ts)
// and prints its tables too; --policy FILE loads a user's policy set and runs it beside the
// built-in strategies (policyModules.ts); --doc FILE runs nothing and fills docs/PERFORMANCE.md's
// generated tables from a JSON it wrote (markdown.ts). The JSON records the commit it ran
// (and whether the tree had uncommitted changes), so a document says which code made its
// figures. Exit status 1 when a goal could not be measured or a
// workload gave a wrong result; unmet goals are results, not failures; 2 for bad options or a
// policy module that cannot be used.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';
import { BenchArgError, parseArgs, USAGE, type BenchOptions } from './args.ts';
import { renderHtmlReport } from './html.ts';
import { asBenchJson, DocError, fillDoc } from './markdown.ts';
import { loadPolicyModules, PolicyModuleError, type LoadedPolicy } from './policyModules.ts';
import { formatText, toJson } from './report.ts';
import { runBench, type BenchResult, type Progress } from './runner.ts';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A progress bar on stderr (stdout keeps only the tables). */
function progressBar(title: string): { update: (p: Progress) => void; stop: () => void } {
  const bar = new cliProgress.SingleBar(
    {
      format: `${title} [{bar}] {percentage}% | {value}/{total} | {eta_formatted} left | {label}`,
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 20,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(p) {
      if (!started) {
        bar.start(p.total, p.done, { label: p.label });
        started = true;
      } else bar.update(p.done, { label: p.label });
    },
    stop: () => bar.stop(),
  };
}

/** uPlot's JS and CSS, and the plotting code as plain JS (TypeScript's own transpiler, no bundler). */
async function htmlAssets(): Promise<{ uplotJs: string; uplotCss: string; plotJs: string }> {
  const ts = (await import('typescript')).default;
  const src = readFileSync(join(repo, 'src/bench/plots.ts'), 'utf8');
  const plotJs = ts.transpileModule(src, { compilerOptions: { target: ts.ScriptTarget.ES2020, module: ts.ModuleKind.CommonJS } }).outputText;
  return {
    uplotJs: readFileSync(join(repo, 'node_modules/uplot/dist/uPlot.iife.min.js'), 'utf8'),
    uplotCss: readFileSync(join(repo, 'node_modules/uplot/dist/uPlot.min.css'), 'utf8'),
    plotJs,
  };
}

function failures(r: BenchResult): string[] {
  return [
    ...Object.values(r.goals).flatMap((g) => (g?.error ? [`${g.id}: ${g.error}`] : [])),
    ...r.workloads.flatMap((c) => (c.error ? [`${c.workload} / ${c.strategy}: ${c.error}`] : [])),
  ];
}

/** The commit this tree is at, and whether it has uncommitted changes; undefined outside a git checkout. */
function source(): { commit: string; dirty: boolean } | undefined {
  try {
    const git = (...args: string[]): string => execFileSync('git', args, { cwd: repo, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return { commit: git('rev-parse', 'HEAD'), dirty: git('status', '--porcelain', '--untracked-files=no', '--', 'src', 'shaders').length > 0 };
  } catch {
    return undefined;
  }
}

/** --doc: fill PERFORMANCE.md's generated blocks from a bench JSON (no bench runs). */
function renderDoc(opts: BenchOptions): number {
  const here = process.env.INIT_CWD ?? process.cwd();
  const read = (f: string, role: 'run' | 'before') => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(resolve(here, f), 'utf8'));
    } catch (e) {
      throw new DocError(`${f}: ${e instanceof Error ? e.message : String(e)}`);
    }
    return asBenchJson(parsed, f, role);
  };
  const out = opts.docOut ?? join(repo, 'docs/PERFORMANCE.md');
  const template = out !== '-' && existsSync(resolve(here, out)) ? resolve(here, out) : join(repo, 'docs/PERFORMANCE.md');
  try {
    const filled = fillDoc(readFileSync(template, 'utf8'), read(opts.doc!, 'run'), opts.docBefore ? read(opts.docBefore, 'before') : undefined);
    if (out === '-') process.stdout.write(filled);
    else {
      writeFileSync(resolve(here, out), filled);
      console.log(`bench: ${out} filled from ${opts.doc}${opts.docBefore ? ` (before: ${opts.docBefore})` : ''}`);
    }
    return 0;
  } catch (e) {
    if (e instanceof DocError) {
      console.error(`bench: ${e.message}`);
      return 2;
    }
    throw e;
  }
}

async function main(argv: string[]): Promise<number> {
  let opts: BenchOptions;
  try {
    opts = parseArgs(argv);
  } catch (e) {
    if (e instanceof BenchArgError) {
      console.error(`bench: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    throw e;
  }
  if (opts.help) {
    console.log(USAGE);
    return 0;
  }
  if (opts.doc !== undefined) return renderDoc(opts);
  let loaded: LoadedPolicy[] = [];
  try {
    // relative to where the user typed the command: npm runs scripts in the package root, and says where it was started in INIT_CWD
    loaded = await loadPolicyModules(opts.policy ?? [], process.env.INIT_CWD ?? process.cwd());
  } catch (e) {
    if (e instanceof PolicyModuleError) {
      console.error(`bench: ${e.message}`);
      return 2;
    }
    throw e;
  }
  if (loaded.length > 0 && opts.only === 'goals') console.error('bench: note: --only goals runs no workloads, so the --policy sets do not run');
  if (loaded.length > 0 && opts.browser) console.error('bench: note: --policy sets run in Node only; the Chromium run has the built-in strategies');
  const nodeBar = progressBar('node');
  let node: BenchResult;
  try {
    node = await runBench(opts, nodeBar.update, { policies: loaded.map((l) => l.set) });
  } finally {
    nodeBar.stop();
  }
  node.policies?.forEach((p, i) => (p.source = loaded[i]!.source));
  console.log(formatText(node));
  let browser: BenchResult | undefined;
  if (opts.browser) {
    const { runInBrowser } = await import('./browser.ts');
    const bar = progressBar('chromium');
    try {
      browser = await runInBrowser({ ...opts, policy: undefined }, bar.update);
    } finally {
      bar.stop();
    }
    console.log(`\n${formatText(browser)}`);
  }
  const src = source();
  const result = { ...node, ...(browser ? { browser } : {}), ...(src ? { source: src } : {}) };
  if (opts.json) {
    writeFileSync(opts.json, toJson(result));
    console.log(`\njson: ${opts.json}`);
  }
  if (opts.html) {
    writeFileSync(opts.html, renderHtmlReport(browser ? [node, browser] : [node], await htmlAssets()));
    console.log(`html: ${opts.html}`);
  }
  const bad = [...failures(node), ...(browser ? failures(browser).map((f) => `browser ${f}`) : [])];
  if (bad.length > 0) {
    console.error(`\nbench: ${bad.length} measurement(s) failed:\n  ${bad.join('\n  ')}`);
    return 1;
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exit(1);
  },
);

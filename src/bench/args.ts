// Command-line options of the bench (`npm run bench -- ...`), parsed without Node so the perf
// page can feed its URL parameters through the same rules. Bad input is a BenchArgError that
// says which option was wrong and what it accepts.

export type Only = 'all' | 'goals' | 'workloads';

export interface BenchOptions {
  /** Small sizes and few repetitions: finishes in minutes on a software adapter. */
  quick: boolean;
  /** Size of the streaming data (goals G4/G5) in MiB; every other size follows from it. */
  mib?: number;
  /** Repetitions of every measurement (the median is reported, with min and max). */
  reps?: number;
  /** Untimed runs before the timed ones. */
  warmup?: number;
  only: Only;
  /** Write the result as JSON here. */
  json?: string;
  /** Write a self-contained HTML report with plots here. */
  html?: string;
  /** Also run the suite in headless Chromium and print both tables. */
  browser: boolean;
  help: boolean;
  /**
   * Policy modules (`--policy FILE`, repeatable or a comma list): each default-exports a
   * PolicySet, run on every workload as strategy `policy:<name>` beside the built-ins. The CLI
   * loads them (policyModules.ts) and hands the sets to runBench.
   */
  policy?: string[];
  /**
   * `--doc FILE`: run nothing; render docs/PERFORMANCE.md's generated blocks from this bench
   * JSON (markdown.ts), with `--doc-before FILE` (the same command on the code before a change)
   * as extra columns, into `--doc-out FILE` (default docs/PERFORMANCE.md; '-' prints it).
   */
  doc?: string;
  docBefore?: string;
  docOut?: string;
}

export class BenchArgError extends Error {
  override name = 'BenchArgError';
}

export const USAGE = `usage: npm run bench -- [options]

  --quick            small sizes, few repetitions (minutes on a software adapter)
  --mib N            streaming data size in MiB (default 256, quick 4); other sizes follow
  --reps N           repetitions per measurement (default 20, quick 3)
  --warmup N         untimed runs before the timed ones (default 1, quick 0)
  --only WHAT        goals | workloads | all (default all)
  --json FILE        write the result as JSON
  --html FILE        write a self-contained HTML report with plots
  --browser          also run the suite in headless Chromium, print both tables
  --policy FILE      a policy module (default export: a PolicySet, e.g. examples/policies/lru.ts),
                     run fault-driven on every workload as strategy policy:<name> beside the
                     built-ins; repeat it or give a comma list for several (Node only)
  --doc FILE         run nothing: fill docs/PERFORMANCE.md's generated tables from this JSON
                     (what --json wrote); --doc-before FILE adds that run's medians as a
                     "before" column; --doc-out FILE writes elsewhere ('-': stdout)
  --help             this text`;

const FLAGS = new Set(['quick', 'browser', 'help']);
const VALUED = new Set(['mib', 'reps', 'warmup', 'only', 'json', 'html', 'policy', 'doc', 'doc-before', 'doc-out']);
/** Options that may be given more than once (their values add up). */
const REPEATABLE = new Set(['policy']);

function integer(name: string, raw: string, min: number, max: number): number {
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw new BenchArgError(`--${name} ${raw}: expected an integer from ${min} to ${max}`);
  return n;
}

/** Parse argv (without the node and script names). */
export function parseArgs(argv: readonly string[]): BenchOptions {
  const opts: BenchOptions = { quick: false, only: 'all', browser: false, help: false };
  const seen = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) throw new BenchArgError(`unexpected argument '${arg}' (options start with --; see --help)`);
    const eq = arg.indexOf('=');
    const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    if (!FLAGS.has(name) && !VALUED.has(name)) throw new BenchArgError(`unknown option --${name} (see --help)`);
    if (seen.has(name) && !REPEATABLE.has(name)) throw new BenchArgError(`--${name} given twice`);
    seen.add(name);
    if (FLAGS.has(name)) {
      if (eq >= 0) throw new BenchArgError(`--${name} takes no value`);
      opts[name as 'quick' | 'browser' | 'help'] = true;
      continue;
    }
    let value: string;
    if (eq >= 0) value = arg.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new BenchArgError(`--${name} needs a value`);
      value = next;
      i++;
    }
    switch (name) {
      case 'mib': {
        const n = Number(value);
        // powers of two below 1 MiB keep every derived size a whole number of pages
        if (value.trim() === '' || !Number.isFinite(n) || n < 0.25 || n > 1024 || (n < 1 && ![0.25, 0.5].includes(n)) || (n >= 1 && !Number.isInteger(n)))
          throw new BenchArgError(`--mib ${value}: expected 0.25, 0.5 or an integer from 1 to 1024`);
        opts.mib = n;
        break;
      }
      case 'reps':
        opts.reps = integer(name, value, 1, 1000);
        break;
      case 'warmup':
        opts.warmup = integer(name, value, 0, 100);
        break;
      case 'only':
        if (value !== 'all' && value !== 'goals' && value !== 'workloads') throw new BenchArgError(`--only ${value}: expected goals, workloads or all`);
        opts.only = value;
        break;
      case 'json':
      case 'html':
        if (value.trim() === '') throw new BenchArgError(`--${name} needs a file name`);
        opts[name] = value;
        break;
      case 'doc':
      case 'doc-before':
      case 'doc-out':
        if (value.trim() === '') throw new BenchArgError(`--${name} needs a file name`);
        opts[name === 'doc' ? 'doc' : name === 'doc-before' ? 'docBefore' : 'docOut'] = value;
        break;
      case 'policy': {
        const files = value.split(',').map((f) => f.trim());
        if (files.some((f) => f === '')) throw new BenchArgError(`--policy ${value}: expected a module file, or a comma list of them`);
        for (const f of files) {
          if (opts.policy?.includes(f)) throw new BenchArgError(`--policy ${f} given twice`);
          (opts.policy ??= []).push(f);
        }
        break;
      }
    }
  }
  if ((opts.docBefore !== undefined || opts.docOut !== undefined) && opts.doc === undefined)
    throw new BenchArgError(`--${opts.docBefore !== undefined ? 'doc-before' : 'doc-out'} goes with --doc FILE (the run to render)`);
  return opts;
}

/** The same options from URL parameters (?quick=1&reps=3&mib=4&only=goals): the perf page. */
export function argsFromQuery(params: URLSearchParams): string[] {
  const argv: string[] = [];
  for (const [k, v] of params) {
    if (FLAGS.has(k)) {
      if (v === '' || v === '1' || v === 'true') argv.push(`--${k}`);
      else if (v !== '0' && v !== 'false') throw new BenchArgError(`?${k}=${v}: expected 1 or 0`);
    } else argv.push(`--${k}=${v}`);
  }
  return argv;
}

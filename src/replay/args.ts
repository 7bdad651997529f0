// Command-line options of `npm run replay` (cli.ts): bad input is an HmmError (EINVAL) that
// says which option was wrong.

import { HmmError } from '../errors.ts';

export const USAGE = `usage: npm run replay -- TRACE.json [options]

  --policy FILE      a policy module (default-exports a PolicySet); repeatable, or a comma list
  --per-dispatch     also print each dispatch's fault rounds, pages in and evictions
  --json FILE        also write the replays as JSON
  --help             this text

Record a trace with sys.startRecording() ... recording.stop() (examples/record-trace.ts).`;

export interface ReplayOptions {
  trace?: string;
  policies: string[];
  perDispatch: boolean;
  json?: string;
  help: boolean;
}

export function parseReplayArgs(argv: readonly string[]): ReplayOptions {
  const o: ReplayOptions = { policies: [], perDispatch: false, help: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new HmmError('EINVAL', `${a} needs a value`);
      return v;
    };
    if (a === '--policy')
      o.policies.push(
        ...value()
          .split(',')
          .filter((s) => s !== ''),
      );
    else if (a.startsWith('--policy='))
      o.policies.push(
        ...a
          .slice(9)
          .split(',')
          .filter((s) => s !== ''),
      );
    else if (a === '--per-dispatch') o.perDispatch = true;
    else if (a === '--json') o.json = value();
    else if (a === '--help' || a === '-h') o.help = true;
    else if (a.startsWith('-')) throw new HmmError('EINVAL', `unknown option ${a}`);
    else if (o.trace === undefined) o.trace = a;
    else throw new HmmError('EINVAL', `one trace at a time (got ${o.trace} and ${a})`);
  }
  return o;
}

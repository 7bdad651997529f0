// `npm run replay -- trace.json [--policy FILE ...]`: replay a recorded fault trace against the
// built-in policies it ran under and against each policy module given, in the simulator (no
// GPU), and print one table: the recorded run, the built-ins replayed (and how far from the
// recording), each module. Exit status 2 for bad arguments, an unreadable trace or an unusable
// module; 1 when a policy failed in its replay (its error is printed under the table).

import { readFileSync, writeFileSync } from 'node:fs';
import { HmmError } from '../errors.ts';
import { USAGE, parseReplayArgs, type ReplayOptions } from './args.ts';
import type { PolicySet } from '../policy/types.ts';
import { parseFaultTrace, type FaultTrace } from './format.ts';
import { loadPolicySet } from './policyModule.ts';
import { describeTrace, formatPerDispatch, formatReplay, replayJson } from './report.ts';
import { replayTrace, type ReplayResult } from './simulate.ts';

async function main(argv: string[]): Promise<number> {
  let o: ReplayOptions;
  try {
    o = parseReplayArgs(argv);
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (o.help || o.trace === undefined) {
    console.log(USAGE);
    return o.help ? 0 : 2;
  }
  let trace: FaultTrace;
  const sets: PolicySet[] = [];
  try {
    let text: string;
    try {
      text = readFileSync(o.trace, 'utf8');
    } catch (e) {
      throw new HmmError('EINVAL', `${o.trace}: cannot read it (${(e as Error).message})`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new HmmError('EINVAL', `${o.trace}: not JSON (${(e as Error).message})`);
    }
    trace = parseFaultTrace(json, o.trace);
    for (const f of o.policies) sets.push(await loadPolicySet(f));
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  const replays: ReplayResult[] = [];
  const errors: { name: string; error: string }[] = [];
  for (const set of [undefined, ...sets]) {
    try {
      replays.push(replayTrace(trace, set));
    } catch (e) {
      errors.push({ name: set?.name ?? 'built-ins', error: (e as Error).message });
    }
  }
  console.log(describeTrace(trace, o.trace));
  console.log();
  console.log(formatReplay(trace, replays, errors));
  if (o.perDispatch) {
    console.log();
    console.log(formatPerDispatch(replays));
  }
  if (o.json) writeFileSync(o.json, JSON.stringify(replayJson(trace, replays), null, 2));
  return errors.length > 0 ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));

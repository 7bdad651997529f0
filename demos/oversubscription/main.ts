// Oversubscription: a 2 MiB working set on a device with 1 MiB of memory. A replayable kernel
// streams over the data chunk by chunk, twice, and reads a small hot table on every launch;
// fault service migrates pages in and evicts (4 KiB, 64 KiB or 2 MiB units, chosen on the
// page) when the pool is full. A live plot follows faults, evictions and bytes moved; the
// CPU reads the whole working set back at the end and checks it byte for byte.

import { PAGE_SIZE, createSystem, type System } from 'webgpu-hmm';
import { checkEnvironment, describeError, reportUnhandledErrors, setResult, showSource } from '../common.ts';
import { CounterTable } from '../widgets/counterTable.ts';
import { LiveChart } from '../widgets/liveChart.ts';
import { ResidencyMap } from '../widgets/residencyMap.ts';
import kernelSource from './stream.wgsl?raw';

const MiB = 1 << 20;
const WORDS_PER_PAGE = PAGE_SIZE / 4;
const DEVICE_PAGES = 256; // 1 MiB of device memory
const WORKING_PAGES = 512; // 2 MiB: twice the device
const HOT_PAGES = 16; // the table every launch reads
const STREAM_PAGES = WORKING_PAGES - HOT_PAGES;
const CHUNK_PAGES = 24; // one launch; not a multiple of 16, so 4 KiB and 64 KiB units differ
const PASSES = 2;
const WORKGROUP_SIZE = 64;
/** 2 MiB aligned, so the working set is exactly one 2 MiB eviction unit. */
const BASE = 0x0100_0000;
const SAMPLE_MS = 50;
const HISTORY_KEY = 'webgpu-hmm:oversubscription-runs';

type EvictionBytes = 4096 | 65536 | 2097152;
const UNIT_NAMES: Record<EvictionBytes, string> = { 4096: '4 KiB', 65536: '64 KiB', 2097152: '2 MiB' };

interface Settings {
  evictionBytes: EvictionBytes;
  prefetch: boolean;
}

/** ?evict= and ?prefetch=, validated; defaults otherwise. The form shows what runs. */
function settings(): Settings {
  const q = new URLSearchParams(location.search);
  const evict = Number(q.get('evict') ?? 65536);
  if (evict !== 4096 && evict !== 65536 && evict !== 2097152) throw new Error(`?evict=${q.get('evict')}: use 4096, 65536 or 2097152`);
  const pf = q.get('prefetch') ?? 'on';
  if (pf !== 'on' && pf !== 'off') throw new Error(`?prefetch=${pf}: use on or off`);
  document.querySelector<HTMLSelectElement>('select[name=evict]')!.value = String(evict);
  document.querySelector<HTMLSelectElement>('select[name=prefetch]')!.value = pf;
  return { evictionBytes: evict, prefetch: pf === 'on' };
}

/** The launches of the run, in order: the stream chunk each one covers (first page, pages). */
function launches(): { page: number; pages: number }[] {
  const list: { page: number; pages: number }[] = [];
  for (let pass = 0; pass < PASSES; pass++)
    for (let page = 0; page < STREAM_PAGES; page += CHUNK_PAGES) list.push({ page, pages: Math.min(CHUNK_PAGES, STREAM_PAGES - page) });
  return list;
}

/** Initial words (a hash of the index, so misplaced pages show), and what they must become. */
function initialAndExpected(): { initial: Uint32Array; expected: Uint32Array } {
  const initial = new Uint32Array(WORKING_PAGES * WORDS_PER_PAGE);
  for (let i = 0; i < initial.length; i++) initial[i] = Math.imul(i, 2654435761) >>> 8;
  const expected = initial.slice();
  const hotWords = HOT_PAGES * WORDS_PER_PAGE;
  // Replay the kernel on the CPU: word j of a chunk adds hot[j % hotWords].
  for (const { page, pages } of launches()) {
    const first = (HOT_PAGES + page) * WORDS_PER_PAGE;
    for (let j = 0; j < pages * WORDS_PER_PAGE; j++) expected[first + j] = (expected[first + j]! + initial[j % hotWords]!) >>> 0;
  }
  return { initial, expected };
}

// ---------------------------------------------------------------------------- history

interface RunRecord {
  unit: string;
  prefetch: string;
  faults: number;
  rounds: number;
  evictions: number;
  mib: number;
  ms: number;
  status: string;
}

function loadHistory(): RunRecord[] {
  try {
    return JSON.parse(sessionStorage.getItem(HISTORY_KEY) ?? '[]') as RunRecord[];
  } catch {
    return [];
  }
}

function showHistory(runs: RunRecord[]): void {
  const rows = runs.map((r) => {
    const tr = document.createElement('tr');
    const cells: [string, string?][] = [
      [r.unit],
      [r.prefetch],
      [r.faults.toLocaleString('en-US'), 'num'],
      [r.rounds.toLocaleString('en-US'), 'num'],
      [r.evictions.toLocaleString('en-US'), 'num'],
      [r.mib.toFixed(2), 'num'],
      [`${(r.ms / 1000).toFixed(1)} s`, 'num'],
      [r.status],
    ];
    for (const [text, cls] of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      if (cls) td.className = cls;
      tr.append(td);
    }
    return tr;
  });
  document.querySelector('#history tbody')!.replaceChildren(...rows);
}

function remember(run: RunRecord): void {
  const runs = [run, ...loadHistory()].slice(0, 8);
  sessionStorage.setItem(HISTORY_KEY, JSON.stringify(runs));
  showHistory(runs);
}

// ---------------------------------------------------------------------------- the demo

/** Distinct GPU page faults so far: misses reported by kernels, less the repeats in a round. */
const distinctFaults = (s: Record<string, number>): number => (s.faultsReported ?? 0) - (s.faultsDeduplicated ?? 0);
const bytesMoved = (s: Record<string, number>): number => (s.bytesToDevice ?? 0) + (s.bytesToSystem ?? 0);

async function run({ evictionBytes, prefetch }: Settings): Promise<void> {
  const deviceBytes = DEVICE_PAGES * PAGE_SIZE;
  const workingBytes = WORKING_PAGES * PAGE_SIZE;
  document.getElementById('setup')!.textContent =
    `Device memory ${deviceBytes / MiB} MiB (${DEVICE_PAGES} frames); working set ${workingBytes / MiB} MiB ` +
    `(${HOT_PAGES} hot pages + ${STREAM_PAGES} stream pages); ${launches().length} launches of ${CHUNK_PAGES} pages, ` +
    `${PASSES} passes; eviction unit ${UNIT_NAMES[evictionBytes]}; prefetch ${prefetch ? 'on' : 'off'}; thrashing detection off.`;

  const sys: System = await createSystem({
    systemRamBytes: 16 * MiB,
    devices: [{ memoryBytes: deviceBytes, evictionBytes, prefetch: { enabled: prefetch } }],
    // Off: a stream page evicted and faulted back soon after looks like a page bouncing
    // between RAM and the device, and pinning it in RAM would mix a second policy into the
    // figures this page compares (the ping-pong demo shows thrashing detection).
    thrashing: { enabled: false },
  });
  const chart = new LiveChart(
    document.getElementById('chart')!,
    'Fault service over time',
    [
      { label: 'GPU page faults', colour: '#1a73e8' },
      { label: 'pages evicted', colour: '#d93025' },
      { label: 'MiB moved', colour: '#188038', scale: 'y2' },
    ],
    { x: 'ms since start', y: 'pages', y2: 'MiB' },
  );
  const counters = new CounterTable(document.getElementById('counters') as HTMLTableElement);
  let map: ResidencyMap | undefined;
  let sampler: ReturnType<typeof setInterval> | undefined;
  try {
    const dev = sys.devices[0]!;
    document.getElementById('adapter')!.textContent = `GPU adapter: ${dev.adapterName}`;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const va = mm.mmap(workingBytes, { addr: BASE });
    const hot = va;
    const stream = va + HOT_PAGES * PAGE_SIZE;
    map = new ResidencyMap(document.getElementById('residency')!, mm, [
      { name: 'hot', va: hot, bytes: HOT_PAGES * PAGE_SIZE },
      { name: 'stream', va: stream, bytes: STREAM_PAGES * PAGE_SIZE },
    ]);
    map.start(100);

    const { initial, expected } = initialAndExpected();
    await mm.write(va, new Uint8Array(initial.buffer));
    const kernel = await dev.createKernel({ code: kernelSource, workgroupSize: WORKGROUP_SIZE, label: 'stream' });

    const t0 = performance.now();
    const sample = (): void => {
      const s = sys.stats();
      chart.push(performance.now() - t0, [distinctFaults(s), s.evictions ?? 0, bytesMoved(s) / MiB]);
      counters.show([['now', s]]);
    };
    sample();
    sampler = setInterval(sample, SAMPLE_MS);

    let rounds = 0;
    for (const { page, pages } of launches()) {
      const words = pages * WORDS_PER_PAGE;
      const r = await m.dispatch(kernel, {
        mode: 'replayable',
        workgroups: Math.ceil(words / WORKGROUP_SIZE),
        uniforms: new Uint32Array([stream + page * PAGE_SIZE, hot, words, HOT_PAGES * WORDS_PER_PAGE]),
      });
      rounds += r.rounds;
      sample();
    }
    // The CPU reads everything: the pages still on the device fault home first.
    const out = new Uint32Array((await mm.read(va, workingBytes)).buffer);
    clearInterval(sampler);
    sample();
    map.stop();
    const ms = performance.now() - t0;

    let bad = -1;
    let mismatches = 0;
    for (let i = 0; i < out.length; i++) {
      if (out[i] !== expected[i]) {
        if (bad < 0) bad = i;
        mismatches++;
      }
    }
    const s = sys.stats();
    const figures = {
      granularity: String(evictionBytes),
      prefetch: prefetch ? 'on' : 'off',
      deviceBytes: String(deviceBytes),
      workingSetBytes: String(workingBytes),
      faults: String(distinctFaults(s)),
      faultRounds: String(s.gpuFaults ?? 0),
      evictions: String(s.evictions ?? 0),
      bytesMoved: String(bytesMoved(s)),
      prefetchedPages: String(s.prefetchedPages ?? 0),
      launches: String(launches().length),
      rounds: String(rounds),
      samples: String(chart.length),
      ms: ms.toFixed(0),
    };
    Object.assign(document.getElementById('result')!.dataset, figures);
    document.getElementById('detail')!.textContent =
      `${figures.faults} GPU page faults in ${figures.faultRounds} fault rounds (${rounds} launches with replays), ` +
      `${figures.evictions} pages evicted, ${(bytesMoved(s) / MiB).toFixed(2)} MiB moved ` +
      `(${((s.bytesToDevice ?? 0) / MiB).toFixed(2)} to the device, ${((s.bytesToSystem ?? 0) / MiB).toFixed(2)} back), ` +
      `${figures.prefetchedPages} pages prefetched, in ${(ms / 1000).toFixed(1)} s.`;

    let status: 'pass' | 'fail';
    if (bad >= 0) {
      const page = Math.floor(bad / WORDS_PER_PAGE);
      setResult(`result: wrong: word ${bad} (page ${page}) is ${out[bad]}, expected ${expected[bad]}; ${mismatches} of ${out.length} words differ`, 'fail');
      status = 'fail';
    } else if ((s.evictions ?? 0) === 0 || bytesMoved(s) <= deviceBytes) {
      setResult(`result: the data is right, but the device was never oversubscribed (${figures.evictions} evictions)`, 'fail');
      status = 'fail';
    } else {
      setResult(
        `result: correct (${workingBytes / MiB} MiB byte for byte through a ${deviceBytes / MiB} MiB device; ${figures.evictions} pages evicted)`,
        'pass',
      );
      status = 'pass';
    }
    remember({
      unit: UNIT_NAMES[evictionBytes],
      prefetch: figures.prefetch,
      faults: distinctFaults(s),
      rounds: s.gpuFaults ?? 0,
      evictions: s.evictions ?? 0,
      mib: bytesMoved(s) / MiB,
      ms,
      status,
    });
  } finally {
    if (sampler !== undefined) clearInterval(sampler);
    map?.stop();
    sys.destroy();
  }
}

async function main(): Promise<void> {
  reportUnhandledErrors();
  showSource('stream.wgsl', kernelSource);
  showHistory(loadHistory());
  if (!checkEnvironment()) {
    setResult('error: this page cannot run here (see above)', 'error');
    return;
  }
  setResult('running…', 'running');
  try {
    await run(settings());
  } catch (e) {
    console.error(e);
    setResult(`error: ${describeError(e)}`, 'error');
  }
}

void main();

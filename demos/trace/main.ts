// Trace: run a small workload in four phases (a sparse read the prefetcher grows, a kernel over
// more memory than the device holds, the CPU reading everything back, a CPU/GPU ping-pong
// until thrashing detection pins the pages) with the TraceLog on, then draw its events as a
// timeline, list totals per kind, and offer the log as Chrome trace-event JSON (Perfetto).

import { PAGE_SIZE, createSystem, type TraceEvent, type TraceKind } from 'webgpu-hmm';
import { checkEnvironment, describeError, reportUnhandledErrors, setResult, showSource } from '../common.ts';
import { CounterTable } from '../widgets/counterTable.ts';
import { ResidencyMap } from '../widgets/residencyMap.ts';
import scaleSource from './scale.wgsl?raw';
import sparseSource from './sparse_read.wgsl?raw';
import { KIND_ORDER, Timeline, type Phase } from './timeline.ts';

const KiB = 1024;
const WORDS_PER_PAGE = PAGE_SIZE / 4;
const DEVICE_PAGES = 64; // 256 KiB
const BUFFER_PAGES = 96; // 384 KiB: more than the device holds
const BUFFER_VA = 0x0100_0000; // 64 KiB aligned, so prefetch grows faults to whole big pages
const SPARSE_STRIDE = 8; // the sparse read touches every 8th page
const PING_PAGES = 4;
const PING_TURNS = 4;
const WORKGROUP_SIZE = 64;
/** The kinds this workload must produce; the page fails if one is missing. */
const EXPECTED_KINDS: TraceKind[] = ['kernel', 'gpu-fault-round', 'prefetch', 'migrate-to-device', 'evict', 'migrate-to-system', 'cpu-fault', 'thrash'];

interface Checked {
  ok: boolean;
  what: string;
}

/** Index of the first word that differs, or -1. */
function firstDifference(got: Uint32Array, want: Uint32Array): number {
  for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) return i;
  return -1;
}

const scaled = (words: Uint32Array): Uint32Array => words.map((x) => (3 * x + 1) >>> 0);

async function run(): Promise<{ events: TraceEvent[]; phases: Phase[]; json: string; checks: Checked[] }> {
  const sys = await createSystem({
    systemRamBytes: 4 << 20,
    devices: [{ memoryBytes: DEVICE_PAGES * PAGE_SIZE }],
    // Off until the ping-pong phase: in the eviction phases a page evicted and faulted back
    // soon after would count as bouncing. A bounce is two opposite moves within a second (a
    // software GPU is slow), and a thrashing page then stays in RAM for the rest of the run.
    thrashing: { enabled: false, windowMs: 1000, pinMs: 60_000 },
  });
  let map: ResidencyMap | undefined;
  const counters = new CounterTable(document.getElementById('counters') as HTMLTableElement);
  try {
    const dev = sys.devices[0]!;
    document.getElementById('adapter')!.textContent = `GPU adapter: ${dev.adapterName}`;
    const mm = sys.createAddressSpace();
    const m = dev.mirror(mm);
    const buffer = mm.mmap(BUFFER_PAGES * PAGE_SIZE, { addr: BUFFER_VA });
    const sparseCount = BUFFER_PAGES / SPARSE_STRIDE;
    const out = mm.mmap(PAGE_SIZE);
    const ping = mm.mmap(PING_PAGES * PAGE_SIZE);
    map = new ResidencyMap(document.getElementById('residency')!, mm, [
      { name: 'buffer', va: buffer, bytes: BUFFER_PAGES * PAGE_SIZE },
      { name: 'out', va: out, bytes: PAGE_SIZE },
      { name: 'ping', va: ping, bytes: PING_PAGES * PAGE_SIZE },
    ]);
    map.start(50);
    const scale = await dev.createKernel({ code: scaleSource, workgroupSize: WORKGROUP_SIZE, label: 'scale' });
    const sparse = await dev.createKernel({ code: sparseSource, workgroupSize: WORKGROUP_SIZE, label: 'sparse_read' });

    const initial = Uint32Array.from({ length: BUFFER_PAGES * WORDS_PER_PAGE }, (_, i) => Math.imul(i, 2654435761) >>> 0);
    await mm.write(buffer, new Uint8Array(initial.buffer));
    counters.show([['now', sys.stats()]]);
    sys.trace().clear(); // the timeline starts with the first phase

    const phases: Phase[] = [];
    const phase = async (label: string, body: () => Promise<void>): Promise<void> => {
      const start = performance.now();
      await body();
      phases.push({ label, start, end: performance.now() });
      counters.show([['now', sys.stats()]]);
    };

    await phase('1 sparse read', async () => {
      await m.dispatch(sparse, {
        mode: 'replayable',
        workgroups: 1,
        uniforms: new Uint32Array([buffer, out, sparseCount, SPARSE_STRIDE]),
      });
    });
    await phase('2 scale', async () => {
      const words = BUFFER_PAGES * WORDS_PER_PAGE;
      await m.dispatch(scale, { mode: 'replayable', workgroups: Math.ceil(words / WORKGROUP_SIZE), uniforms: new Uint32Array([buffer, words]) });
    });
    const checks: Checked[] = [];
    await phase('3 CPU reads', async () => {
      const got = new Uint32Array((await mm.read(buffer, BUFFER_PAGES * PAGE_SIZE)).buffer);
      const bad = firstDifference(got, scaled(initial));
      checks.push({ ok: bad < 0, what: bad < 0 ? 'scale: every word right' : `scale: word ${bad} is ${got[bad]}, expected ${scaled(initial)[bad]}` });
      const sparseGot = new Uint32Array((await mm.read(out, sparseCount * 4)).buffer);
      const sparseWant = Uint32Array.from({ length: sparseCount }, (_, i) => initial[i * SPARSE_STRIDE * WORDS_PER_PAGE]!);
      const badSparse = firstDifference(sparseGot, sparseWant);
      checks.push({
        ok: badSparse < 0,
        what: badSparse < 0 ? 'sparse read: right' : `sparse read: out[${badSparse}] is ${sparseGot[badSparse]}, expected ${sparseWant[badSparse]}`,
      });
    });
    await phase('4 ping-pong', async () => {
      mm.thrash.config = { ...mm.thrash.config, enabled: true };
      const words = PING_PAGES * WORDS_PER_PAGE;
      let data = Uint32Array.from({ length: words }, (_, i) => i);
      let right = 0;
      for (let turn = 1; turn <= PING_TURNS; turn++) {
        await mm.write(ping, new Uint8Array(data.buffer)); // the CPU's turn
        await m.dispatch(scale, { mode: 'replayable', prefetch: false, workgroups: words / WORKGROUP_SIZE, uniforms: new Uint32Array([ping, words]) });
        const got = new Uint32Array((await mm.read(ping, words * 4)).buffer); // pages fault home
        if (firstDifference(got, scaled(data)) < 0) right++;
        data = got.map((x) => x ^ turn);
      }
      checks.push({ ok: right === PING_TURNS, what: `ping-pong: ${right} of ${PING_TURNS} turns right` });
    });
    map.stop();

    // The export, exactly as the download button gives it.
    const json = JSON.stringify(sys.trace().toChromeTrace());
    return { events: sys.trace().events(), phases, json, checks };
  } finally {
    map?.stop();
    sys.destroy();
  }
}

function showTotals(events: TraceEvent[]): void {
  const totals = new Map<TraceKind, { count: number; pages: number; bytes: number; ms: number }>();
  for (const e of events) {
    const t = totals.get(e.kind) ?? { count: 0, pages: 0, bytes: 0, ms: 0 };
    t.count++;
    t.pages += e.pages ?? 0;
    t.bytes += e.bytes ?? 0;
    t.ms += e.dur ?? 0;
    totals.set(e.kind, t);
  }
  const rows = KIND_ORDER.filter(([k]) => totals.has(k)).map(([kind, colour]) => {
    const t = totals.get(kind)!;
    const tr = document.createElement('tr');
    const name = document.createElement('td');
    const swatch = document.createElement('span');
    swatch.className = 'page';
    swatch.style.background = colour;
    name.append(swatch, ` ${kind}`);
    tr.append(name);
    for (const text of [String(t.count), String(t.pages), String(t.bytes / KiB), `${t.ms.toFixed(1)} ms`]) {
      const td = document.createElement('td');
      td.className = 'num';
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  });
  document.querySelector('#totals tbody')!.replaceChildren(...rows);
}

function offerDownload(json: string): void {
  const button = document.getElementById('download') as HTMLButtonElement;
  document.getElementById('download-size')!.textContent = `${(json.length / KiB).toFixed(1)} KiB; open it in ui.perfetto.dev`;
  button.disabled = false;
  button.addEventListener('click', () => {
    const url = URL.createObjectURL(new Blob([json], { type: 'application/json' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = 'webgpu-hmm-trace.json';
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  });
}

async function main(): Promise<void> {
  reportUnhandledErrors();
  showSource('sparse_read.wgsl', sparseSource);
  showSource('scale.wgsl', scaleSource);
  if (!checkEnvironment()) {
    setResult('error: this page cannot run here (see above)', 'error');
    return;
  }
  setResult('running…', 'running');
  try {
    const { events, phases, json, checks } = await run();
    const timeline = new Timeline(document.getElementById('timeline')!, events, phases);
    showTotals(events);
    offerDownload(json);

    // The export must parse, with one trace event per logged event (plus lane metadata).
    const exported = JSON.parse(json) as { traceEvents?: { ph?: string; name?: string }[] };
    const traceEvents = Array.isArray(exported.traceEvents) ? exported.traceEvents : [];
    // one 'X' (span) or 'i' (instant) per logged event; beside them flow arrows ('s'/'f': a fault
    // round to the moves it caused) and counter tracks ('C'), which are not log events
    const exportedEvents = traceEvents.filter((e) => e.ph === 'X' || e.ph === 'i');
    const flowEvents = traceEvents.filter((e) => e.ph === 's' || e.ph === 'f');
    const counterEvents = traceEvents.filter((e) => e.ph === 'C');
    const kinds = new Set(events.map((e) => e.kind));
    const exportedKinds = new Set(exportedEvents.map((e) => e.name));
    const missing = EXPECTED_KINDS.filter((k) => !kinds.has(k) || !exportedKinds.has(k));

    Object.assign(document.getElementById('result')!.dataset, {
      events: String(events.length),
      kinds: [...kinds].join(','),
      exportEvents: String(exportedEvents.length),
      flowEvents: String(flowEvents.length),
      counterEvents: String(counterEvents.length),
      exportBytes: String(json.length),
      lanes: timeline.lanes.join(','),
    });
    document.getElementById('detail')!.textContent =
      `${events.length} events of ${kinds.size} kinds in ${phases.length} phases; ${checks.map((c) => c.what).join('; ')}.`;

    const wrong = checks.filter((c) => !c.ok);
    if (wrong.length > 0) setResult(`result: wrong data: ${wrong.map((c) => c.what).join('; ')}`, 'fail');
    else if (!Array.isArray(exported.traceEvents) || exportedEvents.length !== events.length)
      setResult(`result: the export has ${exportedEvents.length} events, the log ${events.length}`, 'fail');
    else if (missing.length > 0) setResult(`result: the trace has no ${missing.join(', ')} events`, 'fail');
    else setResult(`result: correct (${events.length} events of ${kinds.size} kinds; the export parses)`, 'pass');
  } catch (e) {
    console.error(e);
    setResult(`error: ${describeError(e)}`, 'error');
  }
}

void main();

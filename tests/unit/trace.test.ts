// TraceLog: ring buffer bounds, enable switch, span timing, ordering, Chrome trace export, summary.
import { describe, expect, it } from 'vitest';
import { TraceLog, type TraceEvent } from '../../src/trace/trace.ts';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

type ChromeEvent = {
  name: string;
  ph: string;
  pid: number;
  tid: number;
  ts: number;
  dur?: number;
  s?: string;
  cat?: string;
  args: Record<string, unknown>;
};

function chrome(log: TraceLog): ChromeEvent[] {
  return log.toChromeTrace().traceEvents as ChromeEvent[];
}

describe('TraceLog ring buffer', () => {
  it('keeps everything below capacity', () => {
    const log = new TraceLog(4);
    for (let i = 0; i < 3; i++) log.record({ kind: 'evict', ts: i, pages: i });
    expect(log.events().map((e) => e.pages)).toEqual([0, 1, 2]);
    expect(log.dropped).toBe(0);
    expect(log.length).toBe(3);
  });

  it('drops the oldest events when full and counts them', () => {
    const log = new TraceLog(3);
    for (let i = 0; i < 10; i++) log.record({ kind: 'copy', ts: i, pages: i });
    expect(log.events().map((e) => e.pages)).toEqual([7, 8, 9]);
    expect(log.length).toBe(3);
    expect(log.dropped).toBe(7);
  });

  it('capacity 1 holds just the newest', () => {
    const log = new TraceLog(1);
    log.record({ kind: 'copy', ts: 1 });
    log.record({ kind: 'evict', ts: 2 });
    expect(log.events().map((e) => e.kind)).toEqual(['evict']);
    expect(log.dropped).toBe(1);
  });

  it('defaults to 100 000 events', () => {
    const log = new TraceLog();
    expect(log.capacity).toBe(100_000);
  });

  it('rejects a capacity that is not a positive integer', () => {
    expect(() => new TraceLog(0)).toThrow(RangeError);
    expect(() => new TraceLog(-1)).toThrow(RangeError);
    expect(() => new TraceLog(2.5)).toThrow(RangeError);
  });

  it('clear empties the log and resets dropped', () => {
    const log = new TraceLog(2);
    for (let i = 0; i < 5; i++) log.record({ kind: 'copy', ts: i });
    log.clear();
    expect(log.events()).toEqual([]);
    expect(log.length).toBe(0);
    expect(log.dropped).toBe(0);
    log.record({ kind: 'kernel', ts: 9 });
    expect(log.events()).toEqual([{ kind: 'kernel', ts: 9 }]);
  });
});

describe('TraceLog recording', () => {
  it('defaults ts to performance.now()', () => {
    const log = new TraceLog();
    const before = performance.now();
    log.record({ kind: 'cpu-fault', va: 0x1000 });
    const after = performance.now();
    const [ev] = log.events();
    expect(ev!.ts).toBeGreaterThanOrEqual(before);
    expect(ev!.ts).toBeLessThanOrEqual(after);
  });

  it('keeps a given ts and dur', () => {
    const log = new TraceLog();
    log.record({ kind: 'migrate-to-device', ts: 12.5, dur: 3, pages: 4, bytes: 16384, device: 0 });
    expect(log.events()).toEqual([{ kind: 'migrate-to-device', ts: 12.5, dur: 3, pages: 4, bytes: 16384, device: 0 }]);
  });

  it('records nothing while disabled, and again once re-enabled', async () => {
    const log = new TraceLog();
    log.enabled = false;
    log.record({ kind: 'evict', pages: 1 });
    const v = await log.span('kernel', {}, async () => 42);
    expect(v).toBe(42);
    await expect(
      log.span('kernel', {}, async () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(log.events()).toEqual([]);
    expect(log.summary()).toEqual({});
    log.enabled = true;
    log.record({ kind: 'evict', pages: 1 });
    expect(log.events()).toHaveLength(1);
  });

  it('is enabled by default', () => {
    expect(new TraceLog().enabled).toBe(true);
  });

  it('events() returns a copy', () => {
    const log = new TraceLog();
    log.record({ kind: 'copy', ts: 1, pages: 1 });
    const evs = log.events();
    evs[0]!.pages = 99;
    evs.push({ kind: 'evict', ts: 2 });
    expect(log.events()).toEqual([{ kind: 'copy', ts: 1, pages: 1 }]);
  });

  it('does not keep a reference to the caller’s object', () => {
    const log = new TraceLog();
    const ev = { kind: 'copy' as const, ts: 1, pages: 1 };
    log.record(ev);
    ev.pages = 7;
    expect(log.events()[0]!.pages).toBe(1);
  });
});

describe('TraceLog.span', () => {
  it('times an async operation and returns its value', async () => {
    const log = new TraceLog();
    const before = performance.now();
    const v = await log.span('migrate-to-device', { pages: 8, device: 1, detail: 'range' }, async () => {
      await sleep(5);
      return 'done';
    });
    expect(v).toBe('done');
    const [ev] = log.events();
    expect(ev!.kind).toBe('migrate-to-device');
    expect(ev!.ts).toBeGreaterThanOrEqual(before);
    expect(ev!.dur).toBeGreaterThanOrEqual(4);
    expect(ev).toMatchObject({ pages: 8, device: 1, detail: 'range' });
  });

  it('records a failed span with the message appended and rethrows the same error', async () => {
    const log = new TraceLog();
    const err = new Error('out of device memory');
    let caught: unknown;
    try {
      await log.span('migrate-to-device', { pages: 2, detail: 'batch 3' }, async () => {
        await sleep(5);
        throw err;
      });
    } catch (e) {
      caught = e;
    }
    expect(caught).toBe(err);
    const [ev] = log.events();
    expect(ev!.detail).toBe('batch 3 failed: out of device memory');
    expect(ev!.dur).toBeGreaterThanOrEqual(4);
    expect(ev!.pages).toBe(2);
  });

  it('a failed span without detail gets just the failure', async () => {
    const log = new TraceLog();
    await expect(
      log.span('kernel', {}, async () => {
        throw new Error('lost');
      }),
    ).rejects.toThrow('lost');
    expect(log.events()[0]!.detail).toBe('failed: lost');
  });

  it('non-Error throws are rethrown unchanged too', async () => {
    const log = new TraceLog();
    await expect(
      log.span('copy', {}, async () => {
        throw 'plain string';
      }),
    ).rejects.toBe('plain string');
    expect(log.events()[0]!.detail).toBe('failed: plain string');
  });

  it('does not mutate the fields object', async () => {
    const log = new TraceLog();
    const fields = { detail: 'x' };
    await log
      .span('copy', fields, async () => {
        throw new Error('e');
      })
      .catch(() => {});
    expect(fields).toEqual({ detail: 'x' });
  });
});

describe('TraceLog ordering', () => {
  it('returns events oldest first by ts, even when recorded out of order', () => {
    const log = new TraceLog();
    log.record({ kind: 'copy', ts: 30 });
    log.record({ kind: 'evict', ts: 10 });
    log.record({ kind: 'kernel', ts: 20 });
    expect(log.events().map((e) => e.ts)).toEqual([10, 20, 30]);
  });

  it('keeps recording order for equal ts', () => {
    const log = new TraceLog();
    log.record({ kind: 'copy', ts: 5, detail: 'a' });
    log.record({ kind: 'copy', ts: 5, detail: 'b' });
    log.record({ kind: 'copy', ts: 5, detail: 'c' });
    expect(log.events().map((e) => e.detail)).toEqual(['a', 'b', 'c']);
  });

  it('a span that encloses an instant comes first (ts = its start)', async () => {
    const log = new TraceLog();
    await log.span('gpu-fault-round', { device: 0 }, async () => {
      await sleep(2);
      log.record({ kind: 'migrate-to-device', pages: 1, device: 0 });
    });
    expect(log.events().map((e) => e.kind)).toEqual(['gpu-fault-round', 'migrate-to-device']);
  });

  it('keeps order after the ring wraps', () => {
    const log = new TraceLog(4);
    for (let i = 0; i < 11; i++) log.record({ kind: 'copy', ts: i });
    expect(log.events().map((e) => e.ts)).toEqual([7, 8, 9, 10]);
  });
});

describe('TraceLog.toChromeTrace', () => {
  function sample(): TraceLog {
    const log = new TraceLog();
    log.record({ kind: 'cpu-fault', ts: 100, va: 0x10000, pages: 1, mm: 1 });
    log.record({ kind: 'migrate-to-device', ts: 101, dur: 2.5, pages: 16, bytes: 65536, device: 0, va: 0x20000 });
    log.record({ kind: 'kernel', ts: 102, dur: 7, device: 1, detail: 'saxpy' });
    log.record({ kind: 'evict', ts: 103, pages: 4, bytes: 16384 });
    log.record({ kind: 'invalidate', ts: 104, va: 0x30000, pages: 2 });
    log.record({ kind: 'gpu-fault-round', ts: 105, dur: 0.25, device: 0, pages: 3 });
    return log;
  }

  it('has the top-level shape', () => {
    const t = sample().toChromeTrace();
    expect(t.displayTimeUnit).toBe('ms');
    expect(Array.isArray(t.traceEvents)).toBe(true);
  });

  it('every event has the required fields with integer pid/tid', () => {
    for (const e of chrome(sample())) {
      expect(typeof e.name).toBe('string');
      expect(['X', 'i', 'M']).toContain(e.ph);
      expect(e.pid).toBe(1);
      expect(Number.isInteger(e.tid)).toBe(true);
      expect(e.tid).toBeGreaterThanOrEqual(0);
      expect(typeof e.args).toBe('object');
      if (e.ph !== 'M') {
        expect(e.cat).toBe('hmm');
        expect(typeof e.ts).toBe('number');
        expect(e.ts).toBeGreaterThanOrEqual(0);
      }
    }
  });

  it('spans are X events with ts and dur in microseconds', () => {
    const xs = chrome(sample()).filter((e) => e.ph === 'X');
    expect(xs.map((e) => e.name)).toEqual(['migrate-to-device', 'kernel', 'gpu-fault-round']);
    const [mig, kernel, round] = xs;
    expect(mig!.ts).toBeCloseTo(1000, 6); // 1 ms after the first event
    expect(mig!.dur).toBeCloseTo(2500, 6);
    expect(kernel!.dur).toBeCloseTo(7000, 6);
    expect(round!.ts).toBeCloseTo(5000, 6);
    expect(round!.dur).toBeCloseTo(250, 6);
  });

  it('instants are i events with thread scope and no dur', () => {
    const is = chrome(sample()).filter((e) => e.ph === 'i');
    expect(is.map((e) => e.name)).toEqual(['cpu-fault', 'evict', 'invalidate']);
    for (const e of is) {
      expect(e.s).toBe('t');
      expect(e.dur).toBeUndefined();
    }
    expect(is[0]!.ts).toBe(0);
  });

  it('assigns lanes: cpu for cpu-fault/invalidate, gpu<d> for a device, host otherwise', () => {
    const evs = chrome(sample());
    const names = new Map<number, string>();
    for (const e of evs) if (e.ph === 'M' && e.name === 'thread_name') names.set(e.tid, e.args.name as string);
    const laneOf = (name: string) => names.get(evs.find((e) => e.name === name && e.ph !== 'M')!.tid);
    expect(laneOf('cpu-fault')).toBe('cpu');
    expect(laneOf('invalidate')).toBe('cpu');
    expect(laneOf('migrate-to-device')).toBe('gpu0');
    expect(laneOf('gpu-fault-round')).toBe('gpu0');
    expect(laneOf('kernel')).toBe('gpu1');
    expect(laneOf('evict')).toBe('host');
  });

  it('names every lane that has events, and the process', () => {
    const evs = chrome(sample());
    const meta = evs.filter((e) => e.ph === 'M');
    const threadNames = meta.filter((e) => e.name === 'thread_name');
    expect(threadNames.map((e) => e.args.name).sort()).toEqual(['cpu', 'gpu0', 'gpu1', 'host']);
    // one tid per lane, distinct
    expect(new Set(threadNames.map((e) => e.tid)).size).toBe(4);
    // every non-metadata event's tid has a thread_name
    const named = new Set(threadNames.map((e) => e.tid));
    for (const e of evs) if (e.ph !== 'M') expect(named.has(e.tid)).toBe(true);
    const proc = meta.find((e) => e.name === 'process_name');
    expect(proc).toMatchObject({ pid: 1, args: { name: 'webgpu-hmm' } });
  });

  it('lane tids are stable across exports and logs', () => {
    const a = new TraceLog();
    a.record({ kind: 'kernel', ts: 0, device: 2 });
    const b = new TraceLog();
    b.record({ kind: 'evict', ts: 0 });
    b.record({ kind: 'cpu-fault', ts: 1 });
    b.record({ kind: 'kernel', ts: 2, device: 2 });
    const tidOf = (log: TraceLog) => chrome(log).find((e) => e.name === 'kernel')!.tid;
    expect(tidOf(a)).toBe(tidOf(b));
    expect(tidOf(b)).toBe(tidOf(b));
  });

  it('carries the remaining fields in args, va as hex', () => {
    const evs = chrome(sample());
    const fault = evs.find((e) => e.name === 'cpu-fault')!;
    expect(fault.args).toEqual({ va: '0x00010000', pages: 1, mm: 1 });
    const mig = evs.find((e) => e.name === 'migrate-to-device')!;
    expect(mig.args).toMatchObject({ pages: 16, bytes: 65536, va: '0x00020000' });
    const kernel = evs.find((e) => e.name === 'kernel')!;
    expect(kernel.args.detail).toBe('saxpy');
  });

  it('round-trips through JSON.stringify', () => {
    const t = sample().toChromeTrace();
    expect(JSON.parse(JSON.stringify(t))).toEqual(t);
  });

  it('keeps timestamps non-negative with real performance.now() times', async () => {
    const log = new TraceLog();
    await log.span('kernel', { device: 0 }, async () => {
      log.record({ kind: 'cpu-fault' });
      await sleep(1);
    });
    for (const e of chrome(log)) expect(e.ts).toBeGreaterThanOrEqual(0);
  });

  it('an empty log exports just the process name', () => {
    const t = new TraceLog().toChromeTrace();
    expect(t.traceEvents).toEqual([expect.objectContaining({ ph: 'M', name: 'process_name' })]);
  });
});

describe('TraceLog.summary', () => {
  it('aggregates count, pages, bytes and span time per kind that occurred', () => {
    const log = new TraceLog();
    const evs: TraceEvent[] = [
      { kind: 'migrate-to-device', ts: 0, dur: 2, pages: 4, bytes: 16384, device: 0 },
      { kind: 'migrate-to-device', ts: 1, dur: 3, pages: 2, bytes: 8192, device: 0 },
      { kind: 'cpu-fault', ts: 2, pages: 1 },
      { kind: 'cpu-fault', ts: 3 },
      { kind: 'evict', ts: 4, pages: 8, bytes: 32768 },
    ];
    for (const e of evs) log.record(e);
    expect(log.summary()).toEqual({
      'migrate-to-device': { count: 2, pages: 6, bytes: 24576, totalMs: 5 },
      'cpu-fault': { count: 2, pages: 1, bytes: 0, totalMs: 0 },
      evict: { count: 1, pages: 8, bytes: 32768, totalMs: 0 },
    });
  });

  it('only counts events still held after the ring wraps', () => {
    const log = new TraceLog(2);
    log.record({ kind: 'copy', ts: 0, pages: 100 });
    log.record({ kind: 'copy', ts: 1, pages: 1 });
    log.record({ kind: 'copy', ts: 2, pages: 1 });
    expect(log.summary()).toEqual({ copy: { count: 2, pages: 2, bytes: 0, totalMs: 0 } });
  });

  it('is empty for an empty log', () => {
    expect(new TraceLog().summary()).toEqual({});
  });
});

// DeviceHolds (src/mm/deviceHolds.ts) on its own, without a GPU: who holds which page for
// which launch, the age rule (an operation waits only for older ones, an interest protects
// nothing from its own operation), yieldTo, and waiting for holds to end. The rules the header
// of deviceHolds.ts gives for freedom from deadlock and livelock, one by one. Written while
// mutation testing (docs/testing.md) found them reached by no unit test.
import { describe, expect, it } from 'vitest';
import { DeviceHolds, nextTicket } from '../../src/mm/deviceHolds.ts';

const settled = async (p: Promise<unknown> | null): Promise<boolean> => {
  let done = false;
  void p?.then(() => (done = true));
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return done;
};

describe('tickets', () => {
  it('each operation is younger than the one before', () => {
    const a = nextTicket();
    const b = nextTicket();
    expect(b).toBeGreaterThan(a);
    expect(a).toBeGreaterThan(0); // 0 is the CPU's and fork's age: older than every device operation
  });
});

describe('a hold', () => {
  it('is a plain hold by default: not exclusive, CPU accesses wait for it', () => {
    const holds = new DeviceHolds(7);
    const h = holds.hold(1, [5], 10);
    expect([h.space, h.device, h.ticket, h.exclusive, h.cpuWaits]).toEqual([7, 1, 10, false, true]);
    const x = holds.hold(1, [5], 10, { exclusive: true, interest: false });
    expect([x.exclusive, x.cpuWaits]).toEqual([true, true]);
    const i = holds.hold(1, [5], 10, { interest: true });
    expect([i.exclusive, i.cpuWaits]).toEqual([false, false]);
  });

  it('holds its pages until released; another hold of the same page is kept apart', () => {
    const holds = new DeviceHolds(1);
    const a = holds.hold(0, [1, 2], 5);
    const b = holds.hold(1, [2], 6);
    expect([holds.has(1, a), holds.has(2, a), holds.has(2, b), holds.has(1, b)]).toEqual([true, true, true, false]);
    a.release();
    expect([holds.has(1, a), holds.has(2, a), holds.has(2, b)]).toEqual([false, false, true]);
    expect(holds.isHeld(1)).toBe(false);
    expect(holds.isHeld(2)).toBe(true);
    a.release(); // twice: harmless, b keeps its page
    expect(holds.has(2, b)).toBe(true);
  });

  it('a page listed twice is held once and let go cleanly', () => {
    const holds = new DeviceHolds(1);
    const h = holds.hold(0, [4, 4], 5);
    expect(holds.isHeld(4)).toBe(true);
    expect(() => h.release()).not.toThrow();
    expect(holds.isHeld(4)).toBe(false);
  });

  it('isHeld(p, device): held by anyone but that device', () => {
    const holds = new DeviceHolds(1);
    holds.hold(0, [1], 5);
    expect([holds.isHeld(1), holds.isHeld(1, 0), holds.isHeld(1, 1), holds.isHeld(2)]).toEqual([true, false, true, false]);
    expect(holds.some(1, (h) => h.ticket === 5)).toBe(true);
    expect(holds.some(1, (h) => h.ticket === 6)).toBe(false);
    expect(holds.some(3, () => true)).toBe(false);
  });

  it('extend adds the pages it does not hold yet, held at once', () => {
    const holds = new DeviceHolds(1);
    const h = holds.hold(0, [1], 5, { interest: true });
    h.extend([1, 2, 3]);
    expect(h.pages).toEqual([1, 2, 3]);
    expect([1, 2, 3].map((p) => holds.has(p, h))).toEqual([true, true, true]);
  });

  it('extend of a released hold only remembers the pages: nothing is held until it holds again', async () => {
    const holds = new DeviceHolds(1);
    const h = holds.hold(0, [1], 5);
    let go!: () => void;
    const other = new Promise<void>((r) => (go = r));
    const yielded = h.yieldTo(other);
    h.extend([2]);
    expect(holds.isHeld(2)).toBe(false);
    expect(holds.isHeld(1)).toBe(false);
    go();
    await yielded;
    expect([holds.has(1, h), holds.has(2, h)]).toEqual([true, true]);
  });

  it('ended resolves when released, and a released hold that yields holds again afterwards', async () => {
    const holds = new DeviceHolds(1);
    const h = holds.hold(0, [1], 5);
    const first = h.ended;
    expect(await settled(first)).toBe(false);
    h.release();
    expect(await settled(first)).toBe(true);
  });

  it('yieldTo lets go while it waits, and holds again even if what it waited for failed', async () => {
    const holds = new DeviceHolds(1);
    const h = holds.hold(0, [1], 5);
    const before = h.ended;
    await expect(h.yieldTo(Promise.reject(new Error('older op failed')))).rejects.toThrow('older op failed');
    expect(await settled(before)).toBe(true); // the wait let go of the pages
    expect(holds.has(1, h)).toBe(true);
    expect(await settled(h.ended)).toBe(false); // held again: a new end to wait for
  });
});

describe('the age rule', () => {
  it("isHeldBy(p, device, ticket): an older operation's hold or interest, or one's own hold, protects; one's own interest does not", () => {
    const holds = new DeviceHolds(1);
    holds.hold(0, [1], 5);
    holds.hold(0, [2], 5, { interest: true });
    holds.hold(1, [3], 5);
    expect(holds.isHeldBy(1, 0, 6)).toBe(true); // older
    expect(holds.isHeldBy(1, 0, 5)).toBe(true); // its own hold
    expect(holds.isHeldBy(1, 0, 4)).toBe(false); // younger: its pages may go
    expect(holds.isHeldBy(2, 0, 6)).toBe(true); // an older operation's interest
    expect(holds.isHeldBy(2, 0, 5)).toBe(false); // its own interest: a stream evicts what it faulted earlier
    expect(holds.isHeldBy(3, 0, 6)).toBe(false); // another device's
    expect(holds.isHeldBy(4, 0, 6)).toBe(false); // nobody's
    expect(holds.isHeldBy(1, 0)).toBe(true); // any age
  });

  it("olderHolds(device, ticket, except): the device's holds older than ticket, each once, but except", () => {
    const holds = new DeviceHolds(1);
    const old = holds.hold(0, [1, 2], 3);
    const older = holds.hold(0, [3], 2);
    holds.hold(0, [4], 5); // same age
    holds.hold(0, [5], 9); // younger
    holds.hold(1, [6], 1); // another device
    expect(new Set(holds.olderHolds(0, 5))).toEqual(new Set([old, older]));
    expect(holds.olderHolds(0, 5)).toHaveLength(2);
    expect(holds.olderHolds(0, 5, older)).toEqual([old]);
    expect(holds.olderHolds(2, 100)).toEqual([]);
  });

  it('ended(pages, which): null when nothing selected holds them, else resolves when all of those end', async () => {
    const holds = new DeviceHolds(1);
    const a = holds.hold(0, [1], 3);
    const b = holds.hold(1, [2], 4);
    expect(holds.ended([9], () => true)).toBeNull();
    expect(holds.ended([1, 2], (h) => h.ticket > 10)).toBeNull();
    const both = holds.ended([1, 2], () => true);
    a.release();
    expect(await settled(both)).toBe(false);
    b.release();
    expect(await settled(both)).toBe(true);
    const onlyA = holds.hold(0, [1], 5);
    holds.hold(1, [1], 6);
    const waitA = holds.ended([1], (h) => h.device === 0);
    onlyA.release();
    expect(await settled(waitA)).toBe(true);
  });
});

import type { EventLoopUtilization } from "node:perf_hooks";
import { describe, expect, it } from "vitest";
import { IngestPressure } from "../../src/pipeline/ingest-pressure.js";

/** A fake event loop whose busy share over the next window the test sets. */
function fakeLoop() {
  let now = 0;
  let active = 0;
  const snapshot = (): EventLoopUtilization => ({ idle: now - active, active, utilization: 0 });
  return {
    now: () => now,
    /** Passes `ms` with the loop busy for `share` of it. */
    pass(ms: number, share: number) {
      now += ms;
      active += ms * share;
    },
    utilization: (current?: EventLoopUtilization, previous?: EventLoopUtilization) => {
      const end = current ?? snapshot();
      if (!previous) return end;
      const activeMs = end.active - previous.active;
      const idleMs = end.idle - previous.idle;
      return { active: activeMs, idle: idleMs, utilization: activeMs / (activeMs + idleMs) };
    },
  };
}

describe("IngestPressure", () => {
  it("reads busy only while callbacks arrive and the event loop is saturated", () => {
    const loop = fakeLoop();
    const pressure = new IngestPressure({ windowMs: 100, threshold: 0.9, ...loop });
    loop.pass(100, 0.95);
    expect(pressure.busy()).toBe(false); // saturated, but no callback came: the worker's own load
    pressure.noteArrival();
    loop.pass(100, 0.95);
    pressure.noteArrival();
    expect(pressure.busy()).toBe(true);
    loop.pass(100, 0.5);
    pressure.noteArrival();
    expect(pressure.busy()).toBe(false); // callbacks, but the loop has room
    loop.pass(100, 0.99);
    pressure.noteArrival();
    loop.pass(150, 0.99);
    expect(pressure.busy()).toBe(false); // saturated, but the last callback is a window old
  });

  it("reads busy while callbacks flood in even though the loop has room (the store is the narrow part)", () => {
    const loop = fakeLoop();
    const pressure = new IngestPressure({ windowMs: 100, floodPerSecond: 1000, ...loop });
    // 100 callbacks in 100 ms = 1,000 per second with the loop half idle (waiting on the store).
    for (let i = 0; i < 10; i++) {
      loop.pass(10, 0.5);
      for (let j = 0; j < 10; j++) pressure.noteArrival();
    }
    expect(pressure.busy()).toBe(true);
    // A steady trickle (99 per second) is no flood: the worker runs at full concurrency.
    for (let i = 0; i < 10; i++) {
      loop.pass(10, 0.5);
      if (i % 10 === 0) for (let j = 0; j < 10; j++) pressure.noteArrival();
    }
    loop.pass(1, 0.5);
    pressure.noteArrival();
    expect(pressure.busy()).toBe(false);
    // The rate is judged over the time since the last judgement, however long that was.
    loop.pass(1000, 0.1);
    for (let i = 0; i < 999; i++) pressure.noteArrival();
    expect(pressure.busy()).toBe(false);
  });
});

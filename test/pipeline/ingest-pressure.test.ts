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

  it("reads busy while callbacks flood into the inbox even though the loop has room (the store is the narrow part)", () => {
    const loop = fakeLoop();
    const pressure = new IngestPressure({ windowMs: 100, floodPerSecond: 1000, ...loop });
    /** `ms` pass with the loop half idle (waiting on the store), then `count` callbacks are stored. */
    const stored = (count: number, ms: number) => {
      loop.pass(ms, 0.5);
      for (let i = 0; i < count; i++) pressure.noteStored();
    };
    stored(100, 100); // 1,000 a second: the threshold itself
    expect(pressure.busy()).toBe(true);
    stored(99, 100); // just below it
    expect(pressure.busy()).toBe(false);
    stored(150, 100);
    expect(pressure.busy()).toBe(true);
    // The flood stopped: a window later the worker is free again, whatever the last rate.
    loop.pass(150, 0.5);
    expect(pressure.busy()).toBe(false);
    // The rate is judged over the time since the last judgement, however long that was:
    // 990 in the last second is below the threshold, though all came in its last window.
    loop.pass(900, 0.1);
    stored(990, 100);
    expect(pressure.busy()).toBe(false);
  });

  it("does not count refused requests toward a flood (a scanner must not hold checks back)", () => {
    const loop = fakeLoop();
    const pressure = new IngestPressure({ windowMs: 100, floodPerSecond: 1000, ...loop });
    for (let i = 0; i < 500; i++) {
      loop.pass(0.2, 0.5);
      pressure.noteArrival(); // 5,000 a second, every one refused (403, 401, 400)
    }
    expect(pressure.busy()).toBe(false);
  });
});

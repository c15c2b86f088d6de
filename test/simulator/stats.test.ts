import { describe, expect, it } from "vitest";
import { StatsRecorder } from "../../src/simulator/stats.js";

describe("StatsRecorder", () => {
  it("keeps the last 10,000 request ids, oldest first, however many came", () => {
    const stats = new StatsRecorder();
    for (let i = 0; i < 25_001; i++) stats.begin("dac", `rid-${i}`)();
    const ids = stats.snapshot(0).requestIds;
    expect(ids).toHaveLength(10_000);
    expect(ids[0]).toBe("rid-15001");
    expect(ids.at(-1)).toBe("rid-25000");
    expect(stats.snapshot(0).calls.dac).toBe(25_001);
  });

  it("counts peaks of requests in flight, each ended once", () => {
    const stats = new StatsRecorder();
    const ends = [stats.begin("kreditcheck", undefined), stats.begin("kreditcheck", undefined)];
    for (const end of ends) {
      end();
      end();
    }
    stats.begin("kreditcheck", undefined);
    expect(stats.snapshot(0).maxConcurrent.kreditcheck).toBe(2);
    expect(stats.snapshot(0).requestIds).toEqual([]);
  });

  it("starts a new peak at reset (a benchmark's next phase), from the requests still in flight", () => {
    const stats = new StatsRecorder();
    const ends = [1, 2, 3].map(() => stats.begin("dac", undefined));
    for (const end of ends.slice(1)) end();
    stats.reset();
    // One still in flight from before; one more now: the new phase's peak is 2, not 3.
    const end = stats.begin("dac", undefined);
    expect(stats.snapshot(0).maxConcurrent.dac).toBe(2);
    end();
    ends[0]?.();
    expect(stats.snapshot(0).calls.dac).toBe(1);
  });
});

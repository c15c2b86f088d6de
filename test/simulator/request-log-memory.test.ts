import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningSimulator, startSimulator } from "../../src/simulator/server.js";
import { authed, caseUrl, issuedCase, tokenOf } from "./helpers.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

describe("the simulator's request log on a long benchmark", () => {
  let sim: RunningSimulator;
  beforeAll(async () => {
    sim = await startSimulator();
  });
  afterAll(async () => {
    await sim.close();
  });

  it("keeps the first 1 KB of a long URL, not the whole URL behind it", async () => {
    const token = await tokenOf(sim);
    const long = `${caseUrl(sim, issuedCase("c1"))}?pad=${"x".repeat(15_000)}`;
    gc();
    const before = process.memoryUsage().heapUsed;
    // 2,000 × 15 kB (Node refuses URLs over 16 KB): 37 MB measured when each entry kept
    // its URL whole (a slice's hidden parent), 10 MB with the first 1 KB copied.
    for (let batch = 0; batch < 40; batch++) {
      await Promise.all(
        Array.from({ length: 50 }, () => fetch(long, authed(token)).then((res) => res.text())),
      );
    }
    gc();
    const grownMb = (process.memoryUsage().heapUsed - before) / 1024 / 1024;
    expect(sim.requests().length).toBeGreaterThanOrEqual(2_000);
    expect(grownMb).toBeLessThan(24);
  });
});

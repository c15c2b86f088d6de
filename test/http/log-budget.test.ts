import { describe, expect, it } from "vitest";
import { LogBudget } from "../../src/http/log-budget.js";
import { makeCallback, startHarness } from "../support/harness.js";

describe("LogBudget", () => {
  it("writes the first lines of each window, counts the rest, and says so in the next line", () => {
    let now = 0;
    const budget = new LogBudget(2, 1000, () => now);
    expect(budget.take()).toEqual({ write: true, notLogged: 0 });
    expect(budget.take()).toEqual({ write: true, notLogged: 0 });
    expect(budget.take()).toEqual({ write: false, notLogged: 0 });
    expect(budget.take()).toEqual({ write: false, notLogged: 0 });
    now = 999;
    expect(budget.take().write).toBe(false);
    now = 1000;
    expect(budget.take()).toEqual({ write: true, notLogged: 3 });
    expect(budget.take()).toEqual({ write: true, notLogged: 0 });
  });
});

describe("refused callbacks in the log", () => {
  it("logs the first 20 refusals a minute, counts every one, and the metric has them all", async () => {
    // Only 127.0.0.2 may call back: this test's requests come from 127.0.0.1.
    const harness = await startHarness({
      env: { ALLOWED_CIDRS: "127.0.0.2" },
      service: { worker: false },
    });
    try {
      for (let index = 0; index < 50; index++) {
        expect((await harness.post(makeCallback())).status).toBe(403);
      }
      const refusals = harness.logs
        .lines()
        .filter((line) => line.msg === "callback refused: address not in ALLOWED_CIDRS");
      expect(refusals).toHaveLength(20);
      const metrics = await (await fetch(`${harness.service.adminUrl}/metrics`)).text();
      expect(metrics).toMatch(/kreditcheck_callbacks_received_total\{outcome="forbidden"\} 50/);
    } finally {
      await harness.close();
    }
  });
});

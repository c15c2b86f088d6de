import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Callback } from "../../src/callback.js";
import { StoreUnavailableError } from "../../src/inbox/inbox.js";
import { SqliteInbox } from "../../src/inbox/sqlite/sqlite-inbox.js";
import { FIRST_PRUNE_DELAY_MS, Pruner, type PrunerOptions } from "../../src/pipeline/pruner.js";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";
import { type CapturedLogs, captureLogs } from "../support/log-capture.js";
import { waitFor } from "../support/wait-for.js";

const HOUR_MS = 3600 * 1000;

describe("Pruner", () => {
  let dir: string;
  let now: number;
  let inbox: SqliteInbox;
  let logs: CapturedLogs;
  let pruner: Pruner | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kcr-pruner-"));
    now = Date.parse("2026-11-26T10:00:00.000Z");
    inbox = new SqliteInbox({ path: join(dir, "inbox.db"), clock: () => now });
    logs = captureLogs();
  });
  afterEach(async () => {
    await pruner?.stop();
    pruner = undefined;
    await inbox.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** `count` jobs taken to `state` at the current time. */
  async function finished(state: "done" | "dead", count: number): Promise<void> {
    for (let index = 0; index < count; index++)
      await inbox.enqueue(makeCallback() as Callback, new Date(now));
    for (const job of await inbox.claim("worker-a", count, 60_000)) {
      if (state === "done") await inbox.complete(job.id, "worker-a", {});
      else await inbox.fail(job.id, "worker-a", { message: "broken" }, {});
    }
  }

  function createPruner(options: Partial<PrunerOptions> = {}): Pruner {
    pruner = new Pruner({
      inbox,
      retentionMs: { done: HOUR_MS, dead: null },
      intervalMs: 20,
      logger: logs.logger,
      clock: () => now,
      ...options,
    });
    return pruner;
  }

  it("prunes for the first time soon after start, not a whole interval later (a service restarted often still prunes)", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      await finished("done", 1);
      now += 2 * HOUR_MS;
      createPruner({ intervalMs: HOUR_MS }).start();
      await vi.advanceTimersByTimeAsync(FIRST_PRUNE_DELAY_MS);
    } finally {
      vi.useRealTimers();
    }
    // The run started at FIRST_PRUNE_DELAY_MS; its writes finish in real time.
    await waitFor(async () => (await inbox.countByState()).done === 0, "the first prune", 3000);
  });

  it("deletes a backlog batch by batch until a batch comes back short, and keeps a state whose retention is off", async () => {
    await finished("done", 5);
    await finished("dead", 2);
    now += 2 * HOUR_MS;
    const prune = vi.spyOn(inbox, "prune");
    const counted: [string, number][] = [];
    const result = await createPruner({
      batchSize: 2,
      onPruned: (state, count) => counted.push([state, count]),
    }).run();
    expect(result).toEqual({ done: 5, dead: 0 });
    expect(prune.mock.calls.map(([state, , limit]) => [state, limit])).toEqual([
      ["done", 2],
      ["done", 2],
      ["done", 2],
    ]);
    expect(counted).toEqual([
      ["done", 2],
      ["done", 2],
      ["done", 1],
    ]);
    expect(await inbox.countByState()).toMatchObject({ done: 0, dead: 2 });
    const line = logs
      .lines()
      .find((entry) => entry.msg === "pruned finished jobs past their retention");
    expect(line).toMatchObject({
      level: 30,
      done: 5,
      dead: 0,
      doneBefore: "2026-11-26T11:00:00.000Z",
    });
  });

  it("warns when the jobs it deleted include dead ones (checks never delivered)", async () => {
    await finished("dead", 2);
    now += 2 * HOUR_MS;
    const result = await createPruner({ retentionMs: { done: HOUR_MS, dead: HOUR_MS } }).run();
    expect(result).toEqual({ done: 0, dead: 2 });
    const line = logs.lines().find((entry) => String(entry.msg).startsWith("pruned finished"));
    expect(line).toMatchObject({ level: 40, dead: 2, deadBefore: "2026-11-26T11:00:00.000Z" });
    expect(String(line?.msg)).toContain("never delivered");
  });

  it("deletes dead jobs, which keep whole bundles, in smaller batches than done ones", async () => {
    await finished("done", 1);
    await finished("dead", 1);
    now += 2 * HOUR_MS;
    const prune = vi.spyOn(inbox, "prune");
    await createPruner({ retentionMs: { done: HOUR_MS, dead: HOUR_MS } }).run();
    expect(prune.mock.calls.map(([state, , limit]) => [state, limit])).toEqual([
      ["done", 500],
      ["dead", 50],
    ]);
  });

  it("warns when a run fails, counts the failure, and prunes again at the next interval", async () => {
    await finished("done", 1);
    now += 2 * HOUR_MS;
    vi.spyOn(inbox, "prune").mockRejectedValueOnce(new StoreUnavailableError("disk I/O error"));
    const runs: string[] = [];
    createPruner({ onRun: (result) => runs.push(result) }).start();
    await waitFor(async () => (await inbox.countByState()).done === 0, "the done job pruned");
    const warning = logs.lines().find((entry) => entry.level === 40);
    expect(warning?.msg).toMatch(/pruning finished jobs failed/);
    expect(JSON.stringify(warning?.err)).toContain("disk I/O error");
    await waitFor(() => runs.includes("success"), "a run that got through");
    expect(runs[0]).toBe("failure");
  });

  it("stops a run after its current batch when stopped, and runs no more, not even another state's", async () => {
    await finished("done", 4);
    await finished("dead", 1);
    now += 2 * HOUR_MS;
    let stopped: Promise<void> | undefined;
    const prune = inbox.prune.bind(inbox);
    const calls = vi.spyOn(inbox, "prune").mockImplementation((...args) => {
      stopped ??= pruner?.stop();
      return prune(...args);
    });
    createPruner({ batchSize: 1, retentionMs: { done: HOUR_MS, dead: HOUR_MS } }).start();
    await waitFor(() => stopped !== undefined, "the first batch");
    await stopped;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(calls).toHaveBeenCalledTimes(1);
    expect(await inbox.countByState()).toMatchObject({ done: 3, dead: 1 });
  });
});

describe("retention in the running service", () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it("deletes a done job once DONE_RETENTION_MS has passed, counts it, and then takes the same callback as new", async () => {
    harness = await startHarness({ env: { DONE_RETENTION_MS: "1", PRUNE_INTERVAL_MS: "50" } });
    const callback = makeCallback();
    const first = await harness.post(callback);
    expect(first).toMatchObject({ status: 202, body: { duplicate: false } });
    await harness.waitForBundle(String(callback.kreditCheckId));
    const service = harness.service;
    await waitFor(async () => (await service.inbox.get(String(first.body.id))) === null, "prune");
    const metrics = await (await fetch(`${service.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/^kreditcheck_jobs_pruned_total\{state="done"\} 1$/m);
    expect(
      harness.logs.lines().find((entry) => entry.component === "pruner" && entry.level === 30),
    ).toMatchObject({ done: 1 });
    // The bundle stays where the sink put it; only the inbox row goes.
    expect(await harness.readBundle(String(callback.kreditCheckId))).toBeDefined();
    const again = await harness.post(callback);
    expect(again).toMatchObject({ status: 202, body: { duplicate: false } });
    expect(again.body.id).not.toBe(first.body.id);
  });
});

import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type RunningSimulator, startSimulator } from "../src/simulator/server.js";
import { type ChildScript, freePort, serviceEnv, spawnService } from "./support/child-service.js";
import { makeCallback } from "./support/harness.js";
import { waitFor } from "./support/wait-for.js";

describe("graceful shutdown", () => {
  let dir: string;
  let simulator: RunningSimulator;
  let service: ChildScript | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kcr-shutdown-"));
    simulator = await startSimulator({ latencyMs: 1500 });
  });
  afterEach(async () => {
    service?.child.kill("SIGKILL");
    await simulator.close();
    await rm(dir, { recursive: true, force: true });
  });

  let ports: { PORT: string; ADMIN_PORT: string };
  const env = () =>
    serviceEnv(simulator, dir, {
      ...ports,
      WORKER_CONCURRENCY: "2",
      WORKER_POLL_MS: "50",
      SHUTDOWN_TIMEOUT_MS: "2500",
    });

  it("on SIGTERM during work exits 0 within SHUTDOWN_TIMEOUT_MS, gives unfinished jobs back, and loses nothing", async () => {
    ports = { PORT: String(await freePort()), ADMIN_PORT: String(await freePort()) };
    const adminUrl = `http://127.0.0.1:${ports.ADMIN_PORT}`;
    service = await spawnService(env(), { captureStdout: true });
    const callbacks = Array.from({ length: 6 }, () => makeCallback());
    for (const callback of callbacks) {
      const response = await fetch(`${service.url}/callbacks/kreditcheck`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(callback),
      });
      expect(response.status).toBe(202);
    }
    await waitFor(() => simulator.stats().calls.kreditcheck >= 2, "jobs in flight");

    const signalledAt = Date.now();
    service.child.kill("SIGTERM");
    // While draining, readiness says so (load balancers stop sending).
    const readiness = await fetch(`${adminUrl}/readyz`).catch(() => undefined);
    if (readiness) expect(readiness.status).toBe(503);
    expect(await service.exited).toBe(0);
    expect(Date.now() - signalledAt).toBeLessThan(2500);
    expect(
      service.lines.some((line) => line.includes("job given back unfinished because of shutdown")),
    ).toBe(true);

    // A restart finishes every accepted callback: nothing was lost or left locked.
    service = await spawnService(env());
    await waitFor(
      async () =>
        (await readdir(join(dir, "results")).catch(() => [])).filter((name) =>
          name.endsWith(".json"),
        ).length === 6,
      "all six bundles",
      30_000,
    );
    const names = await readdir(join(dir, "results"));
    for (const callback of callbacks) expect(names).toContain(`${callback.kreditCheckId}.json`);
  });
});

describe("shutdown while a token request hangs", () => {
  it("does not wait for finAPI's timeout: the job is given back at once, attempt refunded", async () => {
    const { startHarness } = await import("./support/harness.js");
    const harness = await startHarness({
      env: { FINAPI_TIMEOUT_MS: "20000", SHUTDOWN_TIMEOUT_MS: "1000" },
    });
    try {
      harness.simulator.failNext("token", 1, -1);
      const { body } = await harness.post(makeCallback());
      await waitFor(() => harness.simulator.stats().calls.token === 1, "the hanging token request");
      const startedAt = Date.now();
      await harness.service.close();
      expect(Date.now() - startedAt).toBeLessThan(3000);
      // The store is closed now; read the job through a fresh inbox on the same file.
      const { SqliteInbox } = await import("../src/inbox/sqlite/sqlite-inbox.js");
      const inbox = new SqliteInbox({ path: harness.config.store.sqlitePath });
      expect(await inbox.get(String(body.id))).toMatchObject({ state: "pending", attempts: 0 });
      await inbox.close();
    } finally {
      await harness.close();
    }
  });
});

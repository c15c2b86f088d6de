import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type RunningSimulator, startSimulator } from "../src/simulator/server.js";
import { type ChildService, spawnService } from "./support/child-service.js";
import { makeCallback } from "./support/harness.js";
import { waitFor } from "./support/wait-for.js";

describe("graceful shutdown", () => {
  let dir: string;
  let simulator: RunningSimulator;
  let service: ChildService | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kcr-shutdown-"));
    simulator = await startSimulator({ latencyMs: 1500 });
  });
  afterEach(async () => {
    service?.process.kill("SIGKILL");
    await simulator.close();
    await rm(dir, { recursive: true, force: true });
  });

  const env = () => ({
    HOST: "127.0.0.1",
    PORT: "0",
    ADMIN_PORT: "0",
    STORE_URL: `sqlite:${join(dir, "inbox.db")}`,
    FILE_SINK_DIR: join(dir, "results"),
    FINAPI_TOKEN_URL: simulator.tokenUrl,
    FINAPI_PROCESSCTRL_URL: simulator.processctrlUrl,
    FINAPI_DI_URL: simulator.diUrl,
    FINAPI_CLIENT_ID: simulator.clientId,
    FINAPI_CLIENT_SECRET: simulator.clientSecret,
    WORKER_CONCURRENCY: "2",
    WORKER_POLL_MS: "50",
    SHUTDOWN_TIMEOUT_MS: "2500",
  });

  it("on SIGTERM during work exits 0 within SHUTDOWN_TIMEOUT_MS, gives unfinished jobs back, and loses nothing", async () => {
    service = await spawnService(env());
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
    service.process.kill("SIGTERM");
    // While draining, readiness says so (load balancers stop sending).
    const readiness = await fetch(`${service.adminUrl}/readyz`).catch(() => undefined);
    if (readiness) expect(readiness.status).toBe(503);
    const { code } = await service.exited;
    expect(code).toBe(0);
    expect(Date.now() - signalledAt).toBeLessThan(2500);
    expect(
      service.logs().some((line) => line.msg === "job given back unfinished because of shutdown"),
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

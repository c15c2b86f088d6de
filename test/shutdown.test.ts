import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { request } from "node:http";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SqliteInbox } from "../src/inbox/sqlite/sqlite-inbox.js";
import { startService } from "../src/service.js";
import { type RunningSimulator, startSimulator } from "../src/simulator/server.js";
import type { Bundle, Sink } from "../src/sinks/sink.js";
import { childEnv } from "./support/child-env.js";
import {
  type ChildScript,
  freePort,
  NO_FINAPI,
  serviceEnv,
  spawnService,
} from "./support/child-service.js";
import { makeCallback, startHarness } from "./support/harness.js";
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
    // While draining, readiness says so (load balancers stop sending). Asked until the
    // service has taken the signal: a request that came in first was answered 200.
    const draining = await waitFor(async () => {
      const readiness = await fetch(`${adminUrl}/readyz`).catch(() => undefined);
      return readiness === undefined ? "closed" : readiness.status === 200 ? undefined : readiness;
    }, "readiness to change");
    if (draining !== "closed") expect(draining.status).toBe(503);
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

describe("shutdown while a sink ignores its abort", () => {
  it("gives the job back with its bundle and the sinks that have it: the next start neither asks finAPI again nor writes the file twice", async () => {
    let hangs = true;
    const delivered: string[] = [];
    // A module sink whose client library knows no abort signal.
    const queue: Sink = {
      name: "queue",
      deliver: (bundle) => {
        if (hangs) return new Promise<void>(() => undefined);
        delivered.push(bundle.callback.kreditCheckId);
        return Promise.resolve();
      },
    };
    const harness = await startHarness({
      env: { SHUTDOWN_TIMEOUT_MS: "200" },
      service: { extraSinks: [queue] },
    });
    try {
      const callback = makeCallback();
      const { body } = await harness.post(callback);
      await waitFor(
        async () => (await readdir(harness.resultsDir)).includes(`${callback.kreditCheckId}.json`),
        "the file sink's bundle",
      );
      const first = await stat(join(harness.resultsDir, `${callback.kreditCheckId}.json`));
      await harness.service.close();
      const inbox = new SqliteInbox({ path: harness.config.store.sqlitePath });
      const givenBack = await inbox.get(String(body.id));
      await inbox.close();
      expect(givenBack).toMatchObject({ state: "pending", attempts: 0 });
      expect(givenBack?.progress.deliveredSinks).toEqual(["file"]);
      expect((givenBack?.progress.bundle as Bundle | undefined)?.callback).toEqual(callback);
      // The new start asks for a token of its own; finAPI's results are not asked again.
      const { token: _token, ...fetches } = harness.simulator.stats().calls;
      hangs = false;
      const again = await startService(harness.config, {
        logger: harness.logs.logger,
        extraSinks: [queue],
      });
      try {
        await waitFor(
          async () => (await again.inbox.get(String(body.id)))?.state === "done",
          "the job done",
        );
      } finally {
        await again.close();
      }
      expect(delivered).toEqual([callback.kreditCheckId]);
      expect(harness.simulator.stats().calls).toMatchObject(fetches);
      // The same file, not a second one renamed over it.
      const after = await stat(join(harness.resultsDir, `${callback.kreditCheckId}.json`));
      expect(after.ino).toBe(first.ino);
    } finally {
      await harness.close();
    }
  });
});

describe("shutdown while a sink's close never settles", () => {
  it("closes the other sinks, the store and the ports within SHUTDOWN_TIMEOUT_MS, naming the sink that did not close", async () => {
    let otherClosed = false;
    const other: Sink = {
      name: "other",
      deliver: async () => undefined,
      close: async () => {
        otherClosed = true;
      },
    };
    const module = fileURLToPath(new URL("./fixtures/hung-close-sink.mjs", import.meta.url));
    const harness = await startHarness({
      env: { SINKS: `file,module:${module}`, SHUTDOWN_TIMEOUT_MS: "1000" },
      service: { extraSinks: [other] },
    });
    const started = performance.now();
    const outcome = await Promise.race([
      harness.service.close().then(() => "closed"),
      new Promise((resolve) => setTimeout(() => resolve("still closing after 5 s"), 5000)),
    ]);
    const elapsedMs = performance.now() - started;
    // A service still closing would hold harness.close() too: the simulator goes alone.
    await (outcome === "closed" ? harness.close() : harness.simulator.close());
    // The budget, and a moment for the store and the ports after the sinks.
    expect(outcome).toBe("closed");
    expect(elapsedMs).toBeLessThan(2000);
    expect(otherClosed).toBe(true);
    const warning = harness.logs.lines().find((line) => line.sink === "queue");
    expect(warning).toMatchObject({ level: 40, sink: "queue" });
    expect(String(warning?.msg)).toMatch(/^sink queue did not close within \d+ ms; carrying on/);
    // The admin port was closed after the sinks: nothing answers there any more.
    await expect(fetch(`${harness.service.adminUrl}/healthz`)).rejects.toThrow();
  });
});

/**
 * In a container node is PID 1, and the kernel drops a signal PID 1 has no handler for:
 * a SIGTERM during a slow start-up was ignored until the start-up finished, so `docker
 * stop` ended in SIGKILL. Here the child is not PID 1 (an unhandled SIGTERM kills it at
 * once, by signal); with the handler in place it exits by itself, with the shell's code.
 */
describe("a stop signal during start-up", () => {
  it.each([
    ["SIGTERM", 143],
    ["SIGINT", 130],
  ] as const)("%s ends start-up at once, exit %i", async (signal, code) => {
    // A PostgreSQL server that accepts and never answers: the connect waits for its 10 s timeout.
    const sockets: Socket[] = [];
    const silent = createServer((socket) => void sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const { port } = silent.address() as { port: number };
    const dir = await mkdtemp(join(tmpdir(), "kcr-startup-signal-"));
    const env = serviceEnv(NO_FINAPI, dir, {
      PORT: "0",
      STORE_URL: `postgres://app@127.0.0.1:${port}/db`,
    });
    const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: fileURLToPath(new URL("..", import.meta.url)),
      env: childEnv({ NODE_ENV: "production", ...env }),
      stdio: "ignore",
    });
    const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
    try {
      await waitFor(() => sockets.length > 0, "the service to connect to PostgreSQL");
      const signalledAt = Date.now();
      child.kill(signal);
      expect(await exited).toEqual([code, null]);
      expect(Date.now() - signalledAt).toBeLessThan(2000);
    } finally {
      child.kill("SIGKILL");
      for (const socket of sockets) socket.destroy();
      silent.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("graceful shutdown of the callback port", () => {
  it("lets a callback still arriving finish: stored and answered 202, not cut off", async () => {
    const harness = await startHarness({ service: { worker: false } });
    try {
      const body = JSON.stringify(makeCallback());
      const socket = connect(harness.service.port, "127.0.0.1");
      await once(socket, "connect");
      const answer = new Promise<string>((resolve) => {
        let text = "";
        socket.on("data", (chunk: Buffer) => {
          text += chunk.toString("utf8");
        });
        socket.on("close", () => resolve(text));
      });
      // Headers and half the body, then SIGTERM's close(), then the rest.
      socket.write(
        `POST /callbacks/kreditcheck HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, 20)}`,
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      const closed = harness.service.close();
      await new Promise((resolve) => setTimeout(resolve, 300));
      socket.end(body.slice(20));
      expect(await answer).toMatch(/^HTTP\/1\.1 202/);
      await closed;
      const inbox = new SqliteInbox({ path: join(harness.dir, "inbox.db") });
      expect((await inbox.countByState()).pending).toBe(1);
      await inbox.close();
    } finally {
      await harness.close();
    }
  });
});

/**
 * SHUTDOWN_DELAY_MS: between a stop signal and the closing of the port, a load balancer
 * (or Kubernetes, whose endpoints update after the SIGTERM) may still send callbacks here.
 */
describe("the shutdown delay", () => {
  let dir: string;
  let simulator: RunningSimulator;
  let service: ChildScript | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kcr-shutdown-delay-"));
    simulator = await startSimulator({});
  });
  afterEach(async () => {
    service?.child.kill("SIGKILL");
    await simulator.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function start(delayMs: number) {
    const ports = { PORT: String(await freePort()), ADMIN_PORT: String(await freePort()) };
    service = await spawnService(
      serviceEnv(simulator, dir, {
        ...ports,
        SHUTDOWN_DELAY_MS: String(delayMs),
        SHUTDOWN_TIMEOUT_MS: "2000",
      }),
      { captureStdout: true },
    );
    return { service, adminUrl: `http://127.0.0.1:${ports.ADMIN_PORT}` };
  }

  it("keeps accepting and delivering callbacks while readiness says 503, each answer closing its connection, then exits 0", async () => {
    const { service, adminUrl } = await start(2500);
    const signalledAt = Date.now();
    service.child.kill("SIGTERM");
    await waitFor(
      async () => (await fetch(`${adminUrl}/readyz`)).status === 503,
      "readiness to turn 503",
    );
    const callback = makeCallback();
    const answer = await postRaw(`${service.url}/callbacks/kreditcheck`, JSON.stringify(callback));
    expect(answer.status).toBe(202);
    expect(answer.connection).toBe("close");
    expect(await service.exited).toBe(0);
    expect(Date.now() - signalledAt).toBeGreaterThanOrEqual(2500);
    // Accepted during the delay and delivered by the still-running worker before the exit.
    expect(await readdir(join(dir, "results"))).toContain(`${callback.kreditCheckId}.json`);
  });

  it("counts one signal delivered twice at once (npm start passes it on too) as one stop", async () => {
    const { service, adminUrl } = await start(2000);
    const signalledAt = Date.now();
    service.child.kill("SIGINT");
    // npm's copy comes a moment later (two at once would merge into one in the kernel).
    await new Promise((resolve) => setTimeout(resolve, 50));
    service.child.kill("SIGINT");
    await waitFor(
      async () => (await fetch(`${adminUrl}/readyz`)).status === 503,
      "readiness to turn 503",
    );
    expect(await service.exited).toBe(0);
    expect(Date.now() - signalledAt).toBeGreaterThanOrEqual(2000);
    expect(service.lines.some((line) => line.includes("ending the shutdown delay"))).toBe(false);
  });

  it("ends the delay at a second signal", async () => {
    const { service, adminUrl } = await start(60_000);
    service.child.kill("SIGTERM");
    const firstAt = Date.now();
    await waitFor(
      async () => (await fetch(`${adminUrl}/readyz`)).status === 503,
      "readiness to turn 503",
    );
    // A person's second Ctrl-C, not the first one passed on by npm.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, firstAt + 500 - Date.now())));
    const secondAt = Date.now();
    service.child.kill("SIGTERM");
    expect(await service.exited).toBe(0);
    expect(Date.now() - secondAt).toBeLessThan(5000);
    expect(service.lines.some((line) => line.includes("ending the shutdown delay"))).toBe(true);
  });
});

/** A POST through node:http, which shows the Connection header fetch() hides. */
function postRaw(url: string, body: string): Promise<{ status: number; connection?: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: "POST", headers: { "Content-Type": "application/json" } },
      (res) => {
        res.resume();
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

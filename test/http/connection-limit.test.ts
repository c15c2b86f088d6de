import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";
import { waitFor } from "../support/wait-for.js";

/** A connection to the public port that sends nothing; resolves once it is open. */
function idleConnection(port: number): Promise<Socket & { closedByServer: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    // Read whatever comes (a 408): a paused socket would not see the server's end.
    socket.resume();
    const closedByServer = new Promise<void>((closed) => socket.once("close", () => closed()));
    socket.once("error", reject);
    socket.once("connect", () => resolve(Object.assign(socket, { closedByServer })));
  });
}

describe("MAX_CONNECTIONS on the public port", () => {
  let harness: Harness | undefined;
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await harness?.close();
    harness = undefined;
  });

  it("closes connections beyond the limit at once, counts and logs them, and takes callbacks again once one is free", async () => {
    harness = await startHarness({ env: { MAX_CONNECTIONS: "2" } });
    const { port } = harness.service;
    sockets.push(await idleConnection(port), await idleConnection(port));
    // The third is accepted by the kernel, then closed by the service without an answer.
    const third = await idleConnection(port);
    sockets.push(third);
    await third.closedByServer;

    const warning = await waitFor(
      () => harness?.logs.lines().find((line) => String(line.msg).includes("MAX_CONNECTIONS")),
      "the warning",
    );
    expect(warning).toMatchObject({ level: 40, maxConnections: 2, remoteAddress: "127.0.0.1" });
    const metrics = await (await fetch(`${harness.service.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/^kreditcheck_connections_dropped_total\{port="public"\} 1$/m);

    // One of the held connections goes: a callback gets through again.
    const first = sockets[0];
    first?.destroy();
    await waitFor(async () => {
      const answer = await harness?.post(makeCallback()).catch(() => undefined);
      return answer?.status === 202 ? answer : undefined;
    }, "a callback accepted");
  });

  it("closes a connection that sends nothing after REQUEST_TIMEOUT_MS, freeing its place", async () => {
    harness = await startHarness({ env: { MAX_CONNECTIONS: "1", REQUEST_TIMEOUT_MS: "1000" } });
    const idle = await idleConnection(harness.service.port);
    sockets.push(idle);
    // Node's headers timeout runs from the connection's start (1 s here, checked every
    // second); with Node's defaults (60 s, checked every 30 s) this waits until it fails.
    await Promise.race([
      idle.closedByServer,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error("the idle connection was not closed")), 8000),
      ),
    ]);
    expect((await harness.post(makeCallback())).status).toBe(202);
  });

  it("caps the admin port at 64 connections too, counted apart", async () => {
    harness = await startHarness({ service: { worker: false } });
    const adminPort = Number(new URL(harness.service.adminUrl).port);
    let closed = 0;
    for (let index = 0; index < 70; index += 1) {
      const socket = await idleConnection(adminPort);
      void socket.closedByServer.then(() => {
        closed += 1;
      });
      sockets.push(socket);
    }
    // At least the six beyond 64 (a keep-alive connection of this process may hold one).
    await waitFor(() => closed >= 6, "the connections beyond 64 closed");
    for (const socket of sockets.splice(0)) socket.destroy();
    const metrics = await waitFor(async () => {
      // Until the service has seen the held connections go, a new one is dropped too.
      const answer = await fetch(`${harness?.service.adminUrl}/metrics`).catch(() => undefined);
      return answer?.ok ? answer.text() : undefined;
    }, "the metrics");
    const dropped = (port: string) =>
      Number(
        new RegExp(`^kreditcheck_connections_dropped_total\\{port="${port}"\\} (\\d+)$`, "m").exec(
          metrics,
        )?.[1],
      );
    expect(dropped("admin")).toBeGreaterThanOrEqual(6);
    expect(dropped("public")).toBe(0);
  });
});

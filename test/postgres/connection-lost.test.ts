import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { PostgresInbox } from "../../src/inbox/postgres/postgres-inbox.js";
import { createPool } from "../../src/postgres/pool.js";
import { describePgError } from "../../src/postgres/sqlstate.js";

const HINT =
  "the connection to the PostgreSQL server closed or could not be opened in time: check host and port in the URL, that the server runs, and that no firewall drops the service's packets.";

describe("a PostgreSQL connection lost without a code", () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
    server = undefined;
  });

  it("names what to check when the server closes the connection at once (no PostgreSQL needed)", async () => {
    // Something listens but hangs up: a proxy or load balancer with nothing behind it.
    server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    await expect(
      PostgresInbox.open({ url: `postgres://u@127.0.0.1:${port}/db`, schema: "kcr_lost" }),
    ).rejects.toThrow(
      `the PostgreSQL inbox could not be opened: Connection terminated unexpectedly (${HINT})`,
    );
  });

  it("gives the driver's other words for it the same hint, and a message of the server none", () => {
    for (const message of ["Connection terminated due to connection timeout", "timeout expired"]) {
      expect(describePgError(new Error(message))).toBe(`${message} (${HINT})`);
    }
    expect(describePgError(new Error("Connection terminated unexpectedly, said someone"))).toBe(
      "Connection terminated unexpectedly, said someone",
    );
  });

  it("says a pool whose connections all stayed busy may be waiting on a lock", () => {
    const described = describePgError(new Error("timeout exceeded when trying to connect"));
    expect(described).toMatch(
      /^timeout exceeded when trying to connect \(every connection of the service's pool stayed busy that long/,
    );
    expect(described).toContain("CREATE INDEX without CONCURRENTLY");
  });

  it("gives up opening a connection after its connect timeout, also on a pool that waits longer for a free one", async () => {
    // Accepts the connection and never answers: a server that hangs, a half-open proxy.
    const sockets: Socket[] = [];
    server = createServer((socket) => {
      sockets.push(socket);
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    const pool = createPool({ url: `postgres://u@127.0.0.1:${port}/db`, schema: "kcr_lost" }, "t", {
      connectionTimeoutMs: 200,
      waitForConnectionMs: 30_000,
    });
    try {
      const startedAt = performance.now();
      const failure = await pool.query("SELECT 1").then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(describePgError(failure)).toBe(`timeout expired (${HINT})`);
      expect(performance.now() - startedAt).toBeLessThan(5000);
    } finally {
      await pool.end();
      for (const socket of sockets) socket.destroy();
    }
  });
});

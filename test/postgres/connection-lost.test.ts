import { createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { PostgresInbox } from "../../src/inbox/postgres/postgres-inbox.js";
import { createPool, splitUrlSettings } from "../../src/postgres/pool.js";
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

  it("sends the URL's password on every pool, also one that waits longer for a free connection", async () => {
    // A server that asks for a cleartext password, notes it, and ends the login there.
    const received: string[] = [];
    server = createServer((socket) => {
      let asked = false;
      socket.on("data", (data) => {
        if (!asked) {
          asked = true;
          const askForPassword = Buffer.alloc(9);
          askForPassword.write("R", 0);
          askForPassword.writeInt32BE(8, 1);
          askForPassword.writeInt32BE(3, 5); // AuthenticationCleartextPassword
          socket.write(askForPassword);
          return;
        }
        if (data[0] === 0x70) received.push(data.subarray(5, data.readInt32BE(1)).toString());
        socket.destroy();
      });
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    const target = { url: `postgres://kcr:s3cr%23t@127.0.0.1:${port}/db`, schema: "kcr_pw" };
    for (const options of [{}, { waitForConnectionMs: 30_000 }]) {
      const pool = createPool(target, "t", { ...options, connectionTimeoutMs: 2000 });
      await pool.query("SELECT 1").catch(() => undefined);
      await pool.end();
    }
    expect(received).toEqual(["s3cr#t", "s3cr#t"]);
  });

  it("takes out of a URL what would replace the service's settings, leaving the rest as it was", () => {
    expect(splitUrlSettings("postgres://u:p@h/db")).toEqual({ url: "postgres://u:p@h/db" });
    expect(
      splitUrlSettings(
        "postgres://u:p%3Fq@h/db?sslmode=require&options=-c%20timezone%3DUTC&application_name=x",
      ),
    ).toEqual({
      url: "postgres://u:p%3Fq@h/db?sslmode=require&application_name=x",
      options: "-c timezone=UTC",
    });
    expect(splitUrlSettings("postgres://u@/db?options=endpoint%3Dep-1+x")).toEqual({
      url: "postgres://u@/db",
      options: "endpoint=ep-1 x",
    });
    // Timeouts the service sets per pool go before its own, as -c settings; query_timeout
    // (the client's) is used where the service sets none.
    expect(
      splitUrlSettings(
        "postgres://h/db?lock_timeout=0&statement_timeout=10min&query_timeout=0&host=/tmp",
      ),
    ).toEqual({
      url: "postgres://h/db?host=/tmp",
      options: "-c statement_timeout=10min -c lock_timeout=0",
      queryTimeoutMs: 0,
    });
    // An empty value is dropped (sent, the server would refuse every connection), any
    // whitespace is escaped, and a query_timeout that is no number of ms is dropped too
    // (left in the URL, pg would put "5s", a 1 ms timer, over every pool's own).
    expect(
      splitUrlSettings("postgres://h/db?lock_timeout=&statement_timeout=5%09s&query_timeout=5s"),
    ).toEqual({
      url: "postgres://h/db",
      options: "-c statement_timeout=5\\\ts",
    });
    expect(splitUrlSettings("postgres://h/db?query_timeout=&x=1")).toEqual({
      url: "postgres://h/db?x=1",
    });
    // What follows a # is no query, as node-postgres reads it.
    expect(splitUrlSettings("postgres://h/app#frag?options=x")).toEqual({
      url: "postgres://h/app#frag?options=x",
    });
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

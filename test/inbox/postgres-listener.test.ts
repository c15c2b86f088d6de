import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, expect, it } from "vitest";
import { NotificationListener } from "../../src/inbox/postgres/listener.js";
import { connectionConfig } from "../../src/postgres/pool.js";
import { adminQuery, describePostgres, testDatabaseUrl } from "../support/postgres.js";

/**
 * A relay to PostgreSQL that passes everything until the client sends its first statement
 * (a Query message), which it swallows with all that follows: a connection that dies, with
 * no word, right after it was opened.
 */
async function relayThatDiesAtTheFirstStatement(): Promise<{ server: Server; port: number }> {
  const target = new URL(testDatabaseUrl);
  const sockets: Socket[] = [];
  const server = createServer((client) => {
    const upstream = connect(Number(target.port || 5432), target.hostname);
    sockets.push(client, upstream);
    let dead = false;
    client.on("data", (data) => {
      // After the startup message every client message starts with its type: Q is a query.
      if (!dead && data[0] === 0x51) dead = true;
      if (!dead) upstream.write(data);
    });
    upstream.on("data", (data) => {
      if (!dead) client.write(data);
    });
    for (const socket of [client, upstream]) socket.on("error", () => undefined);
  });
  server.on("close", () => {
    for (const socket of sockets) socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as { port: number }).port };
}

describePostgres("PostgreSQL LISTEN connection", () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    server = undefined;
  });

  it("gives up a LISTEN that gets no answer, so start-up goes on and the reconnect loop takes over", async () => {
    const relay = await relayThatDiesAtTheFirstStatement();
    server = relay.server;
    const url = new URL(testDatabaseUrl);
    url.hostname = "127.0.0.1";
    url.port = String(relay.port);
    const errors: unknown[] = [];
    const listener = new NotificationListener({
      config: connectionConfig({ url: url.toString(), schema: "public" }, "kcr listen test"),
      channel: "kreditcheck_jobs",
      payload: "public",
      onNotify: () => undefined,
      onError: (error) => errors.push(error),
      listenTimeoutMs: 300,
    });
    const startedAt = performance.now();
    await listener.start();
    expect(performance.now() - startedAt).toBeLessThan(5000);
    expect(String(errors[0])).toMatch(/Query read timeout/);
    await listener.stop();
  });

  it("stays connected through the server's idle_session_timeout: no reconnect, no warning", async (ctx) => {
    const [server] = await adminQuery<{ version: number }>(
      "SELECT current_setting('server_version_num')::int AS version",
    );
    // Before 14 there is no such setting (and a URL that sets it is refused).
    if ((server?.version ?? 0) < 140000) ctx.skip();
    // The session default an ALTER DATABASE (or ROLE) … SET idle_session_timeout gives,
    // set through the URL so that the shared test database is left as it is.
    const url = new URL(testDatabaseUrl);
    url.searchParams.set("options", "-c idle_session_timeout=500");
    const errors: unknown[] = [];
    let notified = 0;
    const listener = new NotificationListener({
      config: connectionConfig({ url: url.toString(), schema: "public" }, "kcr listen test"),
      channel: "kreditcheck_jobs",
      payload: "kcr_idle_test",
      onNotify: () => notified++,
      onError: (error) => errors.push(error),
    });
    await listener.start();
    try {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(errors.map(String)).toEqual([]);
      await adminQuery("SELECT pg_notify('kreditcheck_jobs', 'kcr_idle_test')");
      await expect.poll(() => notified).toBe(1);
    } finally {
      await listener.stop();
    }
  });
});

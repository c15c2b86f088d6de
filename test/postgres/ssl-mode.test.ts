import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { openInbox } from "../../src/inbox/open-inbox.js";
import { connectionConfig } from "../../src/postgres/pool.js";
import { describePgError } from "../../src/postgres/sqlstate.js";
import { PostgresSink } from "../../src/sinks/postgres.js";
import { describePostgres, testDatabaseUrl } from "../support/postgres.js";
import { startPostgresTlsRelay, testCa } from "../support/tls-relay.js";

/** The TLS settings pg makes of the config connectionConfig gives, as for each connection. */
function tlsOf(url: string, env: NodeJS.ProcessEnv = {}) {
  const config = connectionConfig({ url, schema: "public" }, "kcr ssl test", env);
  // pg's types call it a boolean; it is the options for tls.connect, or false.
  return { config, parsed: { ssl: new pg.Client(config).ssl as unknown } };
}

describe("sslmode as libpq reads it", () => {
  it("encrypts without checking the certificate for require, checks it for verify-full, and leaves the rest to pg", () => {
    expect(tlsOf("postgres://u:pw@db/app?sslmode=require").parsed.ssl).toEqual({
      rejectUnauthorized: false,
    });
    // PGSSLMODE stands for a missing sslmode, as with libpq.
    expect(tlsOf("postgres://u:pw@db/app", { PGSSLMODE: "require" }).parsed.ssl).toEqual({
      rejectUnauthorized: false,
    });
    const full = tlsOf("postgres://u:pw@db/app?sslmode=verify-full").parsed.ssl;
    expect(full).toEqual({});
    expect(tlsOf("postgres://u:pw@db/app", { PGSSLMODE: "verify-full" }).parsed.ssl).toEqual({});
    // No sslmode, or pg's own uselibpqcompat: the URL goes to pg as it is.
    for (const url of [
      "postgres://u:pw@db/app?application_name=x",
      "postgres://u:pw@db/app?sslmode=require&uselibpqcompat=true",
    ]) {
      const { config } = tlsOf(url);
      expect(config.connectionString).toBe(url);
      expect(config.ssl).toBeUndefined();
    }
  });

  it("leaves pg's own TLS settings to pg: PGSSLMODE does not weaken ssl=true or a certificate file", () => {
    for (const url of [
      "postgres://u:pw@db/app?ssl=true",
      `postgres://u:pw@db/app?sslrootcert=${testCa.caFile}`,
    ]) {
      for (const PGSSLMODE of ["prefer", "require", "allow"]) {
        const { config } = tlsOf(url, { PGSSLMODE });
        expect(config.connectionString, `${url} ${PGSSLMODE}`).toBe(url);
        expect(config.stream).toBeUndefined();
      }
    }
  });

  it("keeps a certificate file's path whole in a URL pg re-encodes (a space, a bare %)", () => {
    for (const url of [
      "postgres://u:50%off@db/app?sslmode=require",
      "postgres://u:pw@db/app?sslmode=require&application_name=kcr one",
    ]) {
      const ssl = tlsOf(url, { PGSSLROOTCERT: testCa.caFile }).parsed.ssl as { ca?: string };
      expect(ssl.ca, url).toContain("BEGIN CERTIFICATE");
    }
  });

  it("asks for no TLS over a Unix socket, as libpq does (no server offers it there)", () => {
    for (const [url, env] of [
      ["postgres://u@/app?host=/var/run/postgresql&sslmode=require", {}],
      ["postgres://u@%2Fvar%2Frun%2Fpostgresql/app?sslmode=verify-full", {}],
      ["postgres://u@/app", { PGHOST: "/var/run/postgresql", PGSSLMODE: "require" }],
    ] as const) {
      const { config, parsed } = tlsOf(url, env);
      expect(parsed.ssl, url).toBe(false);
      expect(config.connectionString).not.toMatch(/sslmode/);
    }
  });

  it("checks verify-ca's chain against sslrootcert (or PGSSLROOTCERT) but not the host name", () => {
    for (const { parsed } of [
      tlsOf(`postgres://db/app?sslmode=verify-ca&sslrootcert=${testCa.caFile}`),
      tlsOf("postgres://db/app?sslmode=verify-ca", { PGSSLROOTCERT: testCa.caFile }),
      tlsOf("postgres://db/app", { PGSSLMODE: "verify-ca", PGSSLROOTCERT: testCa.caFile }),
    ]) {
      const ssl = parsed.ssl as {
        ca?: string;
        checkServerIdentity?: unknown;
        rejectUnauthorized?: boolean;
      };
      expect(ssl.ca).toContain("BEGIN CERTIFICATE");
      expect(ssl.rejectUnauthorized).toBeUndefined();
      expect(typeof ssl.checkServerIdentity).toBe("function");
    }
  });

  it("refuses verify-ca without a CA to check against, naming sslrootcert and no password", () => {
    const attempt = () => tlsOf("postgres://app:s3cret-pw@db/app?sslmode=verify-ca");
    expect(attempt).toThrow(
      /sslmode=verify-ca needs .*sslrootcert=<file> in the URL, or PGSSLROOTCERT/,
    );
    expect(attempt).not.toThrow(/s3cret-pw/);
  });

  it("takes sslmode=prefer out of pg's hands: TLS is asked for on each connection", () => {
    const { config, parsed } = tlsOf("postgres://u:pw@db/app?sslmode=prefer&application_name=x");
    expect(config.connectionString).toBe("postgres://u:pw@db/app?application_name=x");
    expect(parsed.ssl).toBe(false);
    expect(config.ssl).toBe(false);
    expect(typeof config.stream).toBe("function");
  });

  it("names sslrootcert and verify-full in the fix for a certificate that was not accepted", () => {
    const refused = Object.assign(new Error("self-signed certificate in certificate chain"), {
      code: "SELF_SIGNED_CERT_IN_CHAIN",
    });
    expect(describePgError(refused)).toMatch(
      /^\[SELF_SIGNED_CERT_IN_CHAIN\] self-signed certificate in certificate chain \(the PostgreSQL server's TLS certificate was not accepted: .*sslrootcert=<file>.*verify-full/,
    );
    expect(describePgError(new Error("The server does not support SSL connections"))).toMatch(
      /does not offer TLS.*sslmode=prefer/,
    );
  });
});

describePostgres("sslmode on a real connection", () => {
  const relays: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    await Promise.all(relays.splice(0).map((relay) => relay.close()));
  });

  async function relay(tls: boolean) {
    const target = new URL(testDatabaseUrl);
    const started = await startPostgresTlsRelay(
      { host: target.hostname, port: Number(target.port || 5432) },
      tls,
    );
    relays.push(started);
    return started;
  }

  /** The test database's URL through `port`, with `host` and the query given. */
  function urlVia(port: number, host: string, query: string): string {
    const url = new URL(testDatabaseUrl);
    url.hostname = host;
    url.port = String(port);
    url.search = query;
    return url.toString();
  }

  async function selectOne(url: string): Promise<unknown> {
    const client = new pg.Client(connectionConfig({ url, schema: "public" }, "kcr ssl test", {}));
    client.on("error", () => undefined);
    try {
      await client.connect();
      return (await client.query("SELECT 1 AS one")).rows;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  it("connects with sslmode=require to a server whose certificate comes from a private CA", async () => {
    const server = await relay(true);
    await expect(selectOne(urlVia(server.port, "127.0.0.1", "sslmode=require"))).resolves.toEqual([
      { one: 1 },
    ]);
    expect(server.encrypted).toBe(1);
  });

  it("connects with sslmode=prefer in plain text to a server without TLS, and encrypted to one with", async () => {
    const plain = await relay(false);
    await expect(selectOne(urlVia(plain.port, "127.0.0.1", "sslmode=prefer"))).resolves.toEqual([
      { one: 1 },
    ]);
    expect(plain.plain).toBe(1);
    const tls = await relay(true);
    await expect(selectOne(urlVia(tls.port, "127.0.0.1", "sslmode=prefer"))).resolves.toEqual([
      { one: 1 },
    ]);
    expect(tls.encrypted).toBe(1);
  });

  it("checks the name with verify-full, the CA alone with verify-ca", async () => {
    const server = await relay(true);
    const ca = `sslrootcert=${encodeURIComponent(testCa.caFile)}`;
    await expect(
      selectOne(urlVia(server.port, "localhost", `sslmode=verify-full&${ca}`)),
    ).resolves.toEqual([{ one: 1 }]);
    // The certificate is for localhost, not for 127.0.0.1.
    await expect(
      selectOne(urlVia(server.port, "127.0.0.1", `sslmode=verify-full&${ca}`)),
    ).rejects.toMatchObject({ code: "ERR_TLS_CERT_ALTNAME_INVALID" });
    await expect(
      selectOne(urlVia(server.port, "127.0.0.1", `sslmode=verify-ca&${ca}`)),
    ).resolves.toEqual([{ one: 1 }]);
  });

  it("stops start-up on a certificate it cannot check, naming STORE_URL, sslrootcert and no password", async () => {
    const server = await relay(true);
    const withPassword = new URL(urlVia(server.port, "localhost", "sslmode=verify-full"));
    withPassword.password = "s3cret-pw";
    const url = withPassword.toString();
    const failure = await openInbox({
      kind: "postgres",
      url,
      schema: "kcr_tls",
      sqlitePath: "",
    }).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    expect(failure?.message).toMatch(
      /^STORE_URL=postgres:\/\/[^:]*:\*\*\*@localhost:\d+\/\w+\?sslmode=verify-full: the PostgreSQL inbox could not be opened: \[\w+\] .*\(the PostgreSQL server's TLS certificate was not accepted: .*sslrootcert=<file>/,
    );
    expect(failure?.message).not.toContain("s3cret-pw");
  });

  it("says of the postgres sink's certificate it could not check that it is the certificate, not the network", async () => {
    const server = await relay(true);
    const failure = await PostgresSink.open({
      url: urlVia(server.port, "localhost", "sslmode=verify-full"),
      schema: "kcr_tls",
      variable: "POSTGRES_SINK_URL",
      timeoutMs: 5000,
    }).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    expect(failure?.message).toMatch(
      /^the postgres sink could not be set up: \[\w+\] .*\(the PostgreSQL server's TLS certificate was not accepted: .*sslrootcert=<file>/,
    );
    expect(failure?.message).not.toContain("check host and port");
  });
});

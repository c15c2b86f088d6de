import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { startService } from "../src/service.js";
import { freePort } from "./support/child-service.js";
import { captureLogs } from "./support/log-capture.js";

/**
 * A setting that passes validation but cannot work on this machine (a port in use, a
 * folder that cannot exist) stops start-up with a message that names the variable.
 */
describe("start-up failures name the variable to fix", () => {
  let dir: string;
  let blocker: Server | undefined;
  let env: Record<string, string>;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kcr-startup-"));
    // A regular file: no folder can be made below it.
    await writeFile(join(dir, "a-file"), "not a folder");
    env = {
      FINAPI_CLIENT_ID: "id",
      FINAPI_CLIENT_SECRET: "secret",
      HOST: "127.0.0.1",
      PORT: "0",
      ADMIN_PORT: "0",
      STORE_URL: `sqlite:${join(dir, "inbox.db")}`,
      FILE_SINK_DIR: join(dir, "results"),
    };
  });

  afterEach(async () => {
    await new Promise((resolve) => (blocker ? blocker.close(resolve) : resolve(undefined)));
    blocker = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  const start = (overrides: Record<string, string>) =>
    startService(loadConfig({ ...env, ...overrides }), { logger: captureLogs().logger });

  /** A port that another listener holds. */
  async function takenPort(): Promise<number> {
    const server = createServer();
    blocker = server;
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return (server.address() as { port: number }).port;
  }

  it("PORT in use", async () => {
    const port = await takenPort();
    await expect(start({ PORT: String(port) })).rejects.toThrow(
      new RegExp(
        `^PORT=${port}: cannot listen on 127\\.0\\.0\\.1:${port} .*set PORT to a free port`,
      ),
    );
  });

  it("ADMIN_PORT in use, after the public port was taken: that one is given back", async () => {
    const adminPort = await takenPort();
    const publicPort = await freePort();
    await expect(
      start({ PORT: String(publicPort), ADMIN_PORT: String(adminPort) }),
    ).rejects.toThrow(new RegExp(`^ADMIN_PORT=${adminPort}: .*set ADMIN_PORT to a free port`));
    // The public server was closed again: a second start can listen on the same port.
    const service = await start({ PORT: String(publicPort) });
    expect(service.port).toBe(publicPort);
    await service.close();
  });

  it("an IPv6 HOST is shown in brackets", async () => {
    const server = createServer();
    blocker = server;
    await new Promise<void>((resolve) => server.listen(0, "::1", resolve));
    const { port } = server.address() as { port: number };
    await expect(start({ HOST: "::1", PORT: String(port) })).rejects.toThrow(
      `PORT=${port}: cannot listen on [::1]:${port} `,
    );
  });

  it("STORE_URL pointing below a regular file", async () => {
    const url = `sqlite:${join(dir, "a-file", "inbox.db")}`;
    await expect(start({ STORE_URL: url })).rejects.toThrow(
      `STORE_URL=${url}: the SQLite inbox cannot be opened`,
    );
  });

  it("STORE_URL naming a file that is not a SQLite database", async () => {
    const url = `sqlite:${join(dir, "a-file")}`;
    await expect(start({ STORE_URL: url })).rejects.toThrow(
      /the SQLite inbox cannot be opened \(file is not a database\); the file is not a SQLite database/,
    );
  });

  it("STORE_URL naming an inbox of a newer release: its own advice, no folder hint", async () => {
    const path = join(dir, "newer.db");
    const db = new Database(path);
    db.pragma("user_version = 999");
    db.close();
    const error = await start({ STORE_URL: `sqlite:${path}` }).catch((thrown: unknown) => thrown);
    expect(String((error as Error).message)).toMatch(/newer than this release understands/);
    expect(String((error as Error).message)).not.toMatch(/folder the service can create/);
  });

  it("STORE_URL naming a PostgreSQL server that is not there, password hidden", async () => {
    const port = await freePort();
    const message = await start({ STORE_URL: `postgres://app:pw@127.0.0.1:${port}/db` }).then(
      () => "started",
      (thrown: unknown) => String((thrown as Error).message),
    );
    expect(message).toMatch(
      new RegExp(`^STORE_URL=postgres://app:\\*\\*\\*@127\\.0\\.0\\.1:${port}/db: .*ECONNREFUSED`),
    );
    expect(message).not.toContain(":pw@");
  });

  it("POSTGRES_SINK_URL naming a PostgreSQL server that is not there", async () => {
    const port = await freePort();
    const started = start({
      SINKS: "postgres",
      POSTGRES_SINK_URL: `postgres://app@127.0.0.1:${port}/db`,
    });
    await expect(started).rejects.toThrow(
      `POSTGRES_SINK_URL=postgres://app@127.0.0.1:${port}/db: the postgres sink could not be set up`,
    );
    await expect(started).rejects.toThrow("check host and port in POSTGRES_SINK_URL");
  });

  it("POSTGRES_SINK_URL naming a server that never answers: what to check, no password", async () => {
    // Accepts and never answers, as a wrong host behind a firewall that drops packets.
    const sockets: Socket[] = [];
    const silent = createServer((socket) => void sockets.push(socket));
    blocker = silent;
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const { port } = silent.address() as { port: number };
    const message = await start({
      SINKS: "postgres",
      POSTGRES_SINK_URL: `postgres://app:pw@127.0.0.1:${port}/db`,
      POSTGRES_SINK_TIMEOUT_MS: "300",
    }).then(
      () => "started",
      (thrown: unknown) => String((thrown as Error).message),
    );
    for (const socket of sockets) socket.destroy();
    expect(message).toMatch(
      new RegExp(
        `^POSTGRES_SINK_URL=postgres://app:\\*\\*\\*@127\\.0\\.0\\.1:${port}/db: the postgres sink could not be set up: .*check host and port in POSTGRES_SINK_URL`,
      ),
    );
    expect(message).not.toContain(":pw@");
  });

  it("STORE_URL unreachable with the postgres sink on it too: names the inbox, which every callback needs", async () => {
    const port = await freePort();
    const url = `postgres://app@127.0.0.1:${port}/db`;
    const started = start({ SINKS: "file,postgres", STORE_URL: url });
    await expect(started).rejects.toThrow(
      `STORE_URL=${url}: the PostgreSQL inbox could not be opened`,
    );
    await expect(started).rejects.toThrow("check host and port");
  });

  it("FILE_SINK_DIR that cannot be made", async () => {
    const target = join(dir, "a-file", "results");
    await expect(start({ FILE_SINK_DIR: target })).rejects.toThrow(
      `FILE_SINK_DIR=${target}: the file sink cannot write to ${target}`,
    );
  });

  it("FILE_SINK_DIR naming a file: says it is a file, not a folder", async () => {
    const target = join(dir, "a-file");
    await expect(start({ FILE_SINK_DIR: target })).rejects.toThrow(
      `FILE_SINK_DIR=${target}: the file sink cannot write to ${target} (${target} is a file, not a folder)`,
    );
  });

  // Node's recursive mkdir spins forever where mkdir answers ENOENT below a folder that
  // exists, as in /proc: start-up hung without a word (Linux only: it needs /proc).
  it.runIf(existsSync("/proc/self"))(
    "FILE_SINK_DIR or the SQLite folder where mkdir cannot work (/proc): an error, not a hang",
    async () => {
      await expect(start({ FILE_SINK_DIR: "/proc/kcr-nope/results" })).rejects.toThrow(
        "FILE_SINK_DIR=/proc/kcr-nope/results: the file sink cannot write to /proc/kcr-nope/results (ENOENT",
      );
      await expect(start({ STORE_URL: "sqlite:/proc/kcr-nope/inbox.db" })).rejects.toThrow(
        "STORE_URL=sqlite:/proc/kcr-nope/inbox.db: the SQLite inbox cannot be opened",
      );
    },
    10_000,
  );
});

describe("a bad variable, as the service prints it", () => {
  /** `node src/main.ts` with only `env` (no .env file in reach): exit code and stderr. */
  async function startFails(env: Record<string, string>) {
    const main = fileURLToPath(new URL("../src/main.ts", import.meta.url));
    const failed = await promisify(execFile)(process.execPath, ["--import", "tsx", main], {
      cwd: fileURLToPath(new URL(".", import.meta.url)),
      env: { PATH: process.env.PATH ?? "", ...env },
      timeout: 15_000,
    }).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );
    expect(failed).toBeDefined();
    return failed as { code: number; stderr: string };
  }

  it("a URL without a scheme is named, with every other problem of the run, exit 1", async () => {
    const { code, stderr } = await startFails({
      FINAPI_CLIENT_ID: "",
      FINAPI_CLIENT_SECRET: "secret",
      SINKS: "http",
      HTTP_SINK_URL: "127.0.0.1:3490/h",
      HTTP_SINK_SECRET: "a-signing-secret",
      FINAPI_DI_URL: "di-sandbox",
    });
    expect(code).toBe(1);
    expect(stderr).not.toContain("Invalid URL");
    expect(stderr).toContain("kreditcheck-receiver: Invalid configuration:");
    expect(stderr).toContain(
      "  - HTTP_SINK_URL: must be an http(s) URL, with http:// or https:// in front",
    );
    expect(stderr).toContain(
      "  - FINAPI_DI_URL: must be an http(s) URL, with http:// or https:// in front",
    );
    expect(stderr).toContain("  - FINAPI_CLIENT_ID is required");
  }, 20_000);
});

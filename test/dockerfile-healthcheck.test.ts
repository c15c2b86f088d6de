import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpServer } from "node:http";
import { createServer as createTcpServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { childEnv } from "./support/child-env.js";
import { type Harness, startHarness } from "./support/harness.js";

/**
 * No Docker engine here, so the image cannot be built; its HEALTHCHECK is a plain node
 * command, and that command's script is run against the real admin server.
 */
async function healthcheckCommand(): Promise<string[]> {
  const dockerfile = await readFile(new URL("../Dockerfile", import.meta.url), "utf8");
  const match = /^HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])$/m.exec(dockerfile);
  if (!match?.[1]) throw new Error("no HEALTHCHECK ... CMD [...] in the Dockerfile");
  return JSON.parse(match[1]) as string[];
}

/**
 * The image runs the compiled dist/<name>.js (tsconfig.build.json compiles src/ to dist/);
 * here its source runs through tsx, so the test needs no build and cannot pass on a stale one.
 */
async function probeArgs(): Promise<string[]> {
  const [command, script, ...rest] = await healthcheckCommand();
  expect(command).toBe("node");
  const name = /^dist\/([\w/-]+)\.js$/.exec(script ?? "")?.[1];
  if (!name) throw new Error(`the HEALTHCHECK runs ${script}, not a script of dist/`);
  return ["--import", "tsx", `src/${name}.ts`, ...rest];
}

const repo = fileURLToPath(new URL("..", import.meta.url));

/**
 * Runs the probe in `cwd` (the repository unless given), tsx and the script by path; its
 * exit code, and its stderr into `stderr` when given.
 */
async function probe(env: Record<string, string>, cwd = repo, stderr?: string[]): Promise<number> {
  const [, loader, script, ...rest] = await probeArgs();
  const args = [
    "--import",
    pathToFileURL(join(repo, "node_modules", loader ?? "", "dist", "loader.mjs")).href,
    join(repo, script ?? ""),
    ...rest,
  ];
  try {
    await promisify(execFile)(process.execPath, args, {
      cwd,
      env: childEnv(env, cwd),
      timeout: 10_000,
    });
    return 0;
  } catch (error) {
    stderr?.push(String((error as { stderr?: string }).stderr ?? ""));
    return (error as { code?: number }).code ?? -1;
  }
}

describe("the Dockerfile's HEALTHCHECK", () => {
  let harness: Harness;
  let adminPort: string;
  beforeAll(async () => {
    harness = await startHarness();
    adminPort = new URL(harness.service.adminUrl).port;
  });
  afterAll(async () => {
    await harness.close();
  });

  it("passes against a running service, on the default and on a wildcard ADMIN_HOST", async () => {
    expect(await probe({ ADMIN_PORT: adminPort })).toBe(0);
    expect(await probe({ ADMIN_PORT: adminPort, ADMIN_HOST: "0.0.0.0" })).toBe(0);
    expect(await probe({ ADMIN_PORT: adminPort, ADMIN_HOST: "127.0.0.1" })).toBe(0);
  });

  it("reads ADMIN_PORT from the .env in its working folder, as the service does; the environment wins", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kcr-healthcheck-"));
    try {
      await writeFile(join(dir, ".env"), `ADMIN_PORT=${adminPort}\n`);
      expect(await probe({}, dir)).toBe(0);
      expect(await probe({ ADMIN_PORT: "1" }, dir)).toBe(1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("fails saying why when .env cannot be read or ADMIN_PORT is no port, not probing a default", async () => {
    const dir = await mkdtemp(join(tmpdir(), "kcr-healthcheck-env-"));
    try {
      await mkdir(join(dir, ".env"));
      const output: string[] = [];
      expect(await probe({ ADMIN_PORT: adminPort }, dir, output)).toBe(1);
      expect(output.join("")).toBe(
        `unhealthy: cannot read .env (${join(dir, ".env")}): it is a folder: put a file there, or remove it\n`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const output: string[] = [];
    expect(await probe({ ADMIN_PORT: "abc" }, repo, output)).toBe(1);
    expect(output.join("")).toMatch(/^unhealthy: ADMIN_PORT=abc is not a port/);
  });

  it("reads ADMIN_HOST and ADMIN_PORT as the service does: trimmed, blank as unset", async () => {
    expect(await probe({ ADMIN_PORT: ` ${adminPort}\n`, ADMIN_HOST: " 127.0.0.1 " })).toBe(0);
    expect(await probe({ ADMIN_PORT: adminPort, ADMIN_HOST: " " })).toBe(0);
  });

  it("finds an admin server on IPv6 loopback, ADMIN_HOST bracketed or not", async () => {
    const ipv6 = await startHarness({ env: { ADMIN_HOST: "::1" } });
    try {
      const port = new URL(ipv6.service.adminUrl).port;
      expect(await probe({ ADMIN_PORT: port, ADMIN_HOST: "::1" })).toBe(0);
      expect(await probe({ ADMIN_PORT: port, ADMIN_HOST: "[::1]" })).toBe(0);
      expect(await probe({ ADMIN_PORT: ` ${port} `, ADMIN_HOST: " [::1]\n" })).toBe(0);
    } finally {
      await ipv6.close();
    }
  });

  it("fails when nothing answers on ADMIN_HOST:ADMIN_PORT, saying so for the health log", async () => {
    // The admin server listens on 127.0.0.1 only: another loopback address gets no answer.
    expect(await probe({ ADMIN_PORT: adminPort, ADMIN_HOST: "127.0.0.2" })).toBe(1);
    // fetch refuses port 1 by itself ("bad port"): a port nothing listens on instead.
    const closed = createTcpServer();
    const port = await listenOnLoopback(closed);
    await new Promise((resolve) => closed.close(resolve));
    const output: string[] = [];
    expect(await probe({ ADMIN_PORT: port }, repo, output)).toBe(1);
    expect(output.join("")).toBe(
      `unhealthy: GET http://127.0.0.1:${port}/healthz failed: ECONNREFUSED\n`,
    );
  });

  it("fails on an answer other than 200, and on no answer within its own timeout", async () => {
    const unwell = createHttpServer((_req, res) => res.writeHead(503).end());
    // Something else on the port: a redirect or an empty answer is not the service's "ok".
    const elsewhere = createHttpServer((_req, res) =>
      res.writeHead(302, { Location: "http://127.0.0.1/" }).end(),
    );
    const empty = createHttpServer((_req, res) => res.writeHead(204).end());
    // Accepts connections, never answers: a service stuck in a loop.
    const silent = createTcpServer(() => undefined);
    try {
      expect(await probe({ ADMIN_PORT: await listenOnLoopback(unwell) })).toBe(1);
      expect(await probe({ ADMIN_PORT: await listenOnLoopback(elsewhere) })).toBe(1);
      expect(await probe({ ADMIN_PORT: await listenOnLoopback(empty) })).toBe(1);
      // 1, not -1: the probe gave up by itself, execFile's 10 s timeout did not kill it.
      expect(await probe({ ADMIN_PORT: await listenOnLoopback(silent) })).toBe(1);
    } finally {
      unwell.close();
      elsewhere.close();
      empty.close();
      silent.close();
    }
  });
});

/** Listens on an ephemeral port of 127.0.0.1; the port, as ADMIN_PORT takes it. */
async function listenOnLoopback(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return String((server.address() as { port: number }).port);
}

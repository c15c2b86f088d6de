import { execFile } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";

const run = promisify(execFile);

/** Runs the CLI as `npm run cli --` does; its exit code, stdout and stderr. */
async function cli(adminUrl: string, ...args: string[]) {
  try {
    const { stdout, stderr } = await run(
      process.execPath,
      ["--import", "tsx", "src/cli.ts", ...args],
      { env: { ...process.env, ADMIN_URL: adminUrl, ADMIN_TOKEN: "" } },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/**
 * An admin API with two dead jobs: the first is put back, the second is refused with a
 * 409 (it was retried by someone else meanwhile), as the service answers then.
 */
async function adminWithOneRefusal(): Promise<{ url: string; server: Server }> {
  const dead = [
    { id: "00000000-0000-7000-8000-000000000001", lastError: "finapi_forbidden: x" },
    { id: "00000000-0000-7000-8000-000000000002", lastError: "finapi_forbidden: y" },
  ];
  const server = createServer((req, res) => {
    res.setHeader("content-type", "application/json");
    if (req.method === "GET" && req.url?.startsWith("/admin/jobs?")) {
      res.end(JSON.stringify({ jobs: dead, next: null }));
    } else if (req.method === "POST" && req.url?.endsWith("0001/retry?ifState=dead")) {
      res.end(
        JSON.stringify({ requeued: true, id: dead[0]?.id, previousState: "dead", ifState: "dead" }),
      );
    } else {
      res.statusCode = 409;
      res.end(JSON.stringify({ error: "conflict", details: "the job is pending, not dead" }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

describe("the CLI's exit status, for scripts and cron jobs", () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    server = undefined;
  });

  it("refuses, with exit 2, a list of other checks' jobs from a service too old to look up one check", async () => {
    // Such a service ignores processToken and answers its latest jobs, of every check.
    server = createServer((_req, res) => {
      res.setHeader("content-type", "application/json");
      res.end(
        JSON.stringify({
          jobs: [{ id: "x", processToken: "pt-other", kreditCheckId: "kc-other" }],
        }),
      );
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const result = await cli(url, "jobs", "--process-token", "pt-asked");
    expect(result).toMatchObject({ code: 2, stdout: "" });
    expect(result.stderr).toContain(
      "the admin API answered jobs of other checks: the service is older than --process-token and --kreditcheck-id (update it)",
    );
  });

  it("stops retry --all-pending at the first job a service too old for ifState replayed", async () => {
    // Such a service ignores ifState=pending: a job done meanwhile is replayed (200).
    const pending = [
      "00000000-0000-7000-8000-00000000000a",
      "00000000-0000-7000-8000-00000000000b",
    ];
    const posted: string[] = [];
    server = createServer((req, res) => {
      res.setHeader("content-type", "application/json");
      if (req.method === "GET") {
        res.end(
          JSON.stringify({ jobs: pending.map((id) => ({ id, lastError: null })), next: null }),
        );
        return;
      }
      posted.push(String(req.url));
      res.end(JSON.stringify({ requeued: true, id: "x", previousState: "done" }));
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const result = await cli(url, "retry", "--all-pending");
    expect(result.code).toBe(1);
    expect(posted).toEqual([`/admin/jobs/${pending[0]}/retry?ifState=pending`]);
    expect(JSON.parse(result.stdout).error).toBe(
      `the admin API retried job ${pending[0]} without applying ifState=pending (it was done): the service is older than retry --all-pending; update it`,
    );
  });

  it("stops retry --all-dead at the first job a service too old for ifState=dead replayed", async () => {
    // Such a service ignores ifState=dead: a job another operator retried meanwhile, done
    // since, is replayed (200).
    const dead = ["00000000-0000-7000-8000-00000000000c", "00000000-0000-7000-8000-00000000000d"];
    const posted: string[] = [];
    server = createServer((req, res) => {
      res.setHeader("content-type", "application/json");
      if (req.method === "GET") {
        res.end(JSON.stringify({ jobs: dead.map((id) => ({ id, lastError: null })), next: null }));
        return;
      }
      posted.push(String(req.url));
      res.end(JSON.stringify({ requeued: true, id: "x", previousState: "done" }));
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const result = await cli(url, "retry", "--all-dead");
    expect(result.code).toBe(1);
    expect(posted).toEqual([`/admin/jobs/${dead[0]}/retry?ifState=dead`]);
    expect(JSON.parse(result.stdout).error).toBe(
      `the admin API retried job ${dead[0]} without applying ifState=dead (it was done): the service is older than retry --all-dead; update it`,
    );
  });

  it("tells a service of the release before ifState=dead to be updated, exit 2", async () => {
    // That release takes ifState=pending only, and says so.
    const dead = ["00000000-0000-7000-8000-00000000000e"];
    server = createServer((req, res) => {
      res.setHeader("content-type", "application/json");
      if (req.method === "GET") {
        res.end(JSON.stringify({ jobs: dead.map((id) => ({ id, lastError: null })), next: null }));
        return;
      }
      res.statusCode = 400;
      res.end(
        JSON.stringify({
          error: "invalid_query",
          details: [{ field: "ifState", message: "must be pending" }],
        }),
      );
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const result = await cli(url, "retry", "--all-dead");
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("the admin API does not take ifState=dead");
    expect(result.stderr).toContain(
      "the service is older than retry --all-dead; update it, or retry jobs one by one",
    );
  });

  it("exits 1 when retry --all-dead could not put every job back, listing the ones it could not", async () => {
    const admin = await adminWithOneRefusal();
    server = admin.server;
    const result = await cli(admin.url, "retry", "--all-dead");
    expect(result.code).toBe(1);
    const printed = JSON.parse(result.stdout) as { requeued: number; failed: { id: string }[] };
    expect(printed.requeued).toBe(1);
    expect(printed.failed.map((failure) => failure.id)).toEqual([
      "00000000-0000-7000-8000-000000000002",
    ]);
  });

  it("exits 2 when retry --all-dead meets a service too old to page (no cursor), having done nothing", async () => {
    // It ignores `after`: paging on would list the same jobs for ever.
    const posted: string[] = [];
    server = createServer((req, res) => {
      res.setHeader("content-type", "application/json");
      if (req.method === "POST") posted.push(String(req.url));
      res.end(
        JSON.stringify({
          jobs: [{ id: "00000000-0000-7000-8000-000000000001", lastError: "finapi_forbidden: x" }],
          counts: {},
        }),
      );
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const result = await cli(url, "retry", "--all-dead");
    expect(result).toEqual({
      code: 2,
      stdout: "",
      stderr:
        "kreditcheck-receiver cli: the admin API answered without a paging cursor (next): the service is older than this CLI; update it, or retry jobs one by one\n",
    });
    expect(posted).toEqual([]);
  });

  it("exits 2, naming the call and the setting, for a 200 that is not JSON (a proxy's login page)", async () => {
    server = createServer((_req, res) => {
      res.setHeader("content-type", "text/html");
      res.end("<html>proxy login</html>");
    });
    await new Promise<void>((resolve) => server?.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const notTheApi = (call: string) =>
      `kreditcheck-receiver cli: ${call} → 200: the answer is not JSON (Content-Type text/html): is ADMIN_URL (${url}) the service's admin API, and not a proxy or another server?\n`;
    expect(await cli(url, "jobs", "--state", "dead")).toEqual({
      code: 2,
      stdout: "",
      stderr: notTheApi("GET /admin/jobs?state=dead"),
    });
    // retry --all-dead: its first page, before any job was touched.
    expect(await cli(url, "retry", "--all-dead")).toEqual({
      code: 2,
      stdout: "",
      stderr: notTheApi(
        "GET /admin/jobs?state=dead&limit=1000&after=00000000-0000-0000-0000-000000000000",
      ),
    });
  });

  it("exits 2 with the usage when no command is given, and 0 for --help", async () => {
    const none = await cli("http://127.0.0.1:9");
    expect(none.code).toBe(2);
    expect(none.stdout).toMatch(/usage|Usage/);
    const help = await cli("http://127.0.0.1:9", "--help");
    expect(help.code).toBe(0);
    expect(help.stdout).toBe(none.stdout);
  });
});

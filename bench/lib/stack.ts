import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { loadConfig } from "../../src/config.js";
import {
  type ChildScript,
  freePort,
  type SpawnOptions,
  serviceEnv,
  spawnScript,
  spawnService,
} from "../../test/support/child-service.js";
import { until } from "./inbox-file.js";

export type { ChildScript } from "../../test/support/child-service.js";

export interface SimulatorProcess extends ChildScript {
  tokenUrl: string;
  processctrlUrl: string;
  diUrl: string;
  clientId: string;
  clientSecret: string;
  control(path: string, body?: unknown): Promise<unknown>;
}

/**
 * Builds dist/ (npm run build), so that the service runs as `npm start` runs it: plain
 * JavaScript, without tsx's loader thread and on-the-fly compilation.
 */
export function buildDist(): void {
  console.log("building dist/ (npm run build) so the service runs as npm start runs it ...");
  execFileSync("npm", ["run", "--silent", "build"], { stdio: "inherit" });
}

/**
 * The finAPI simulator in its own process, started with CLI flags; from dist/ when
 * `script` says so (after buildDist), from the TypeScript source otherwise.
 */
export async function startSimulatorProcess(
  flags: string[] = [],
  nodeArgs: string[] = [],
  script = "src/simulator/cli.ts",
): Promise<SimulatorProcess> {
  const port = await freePort();
  const child = await spawnScript(
    script,
    port,
    {},
    {
      args: ["--port", String(port), ...flags],
      nodeArgs,
    },
  );
  return {
    ...child,
    tokenUrl: `${child.url}/api/v2/oauth/token`,
    processctrlUrl: `${child.url}/processctrl/api/v1`,
    diUrl: `${child.url}/di/api/v1`,
    clientId: "demo-client",
    clientSecret: "demo-secret",
    async control(path, body) {
      const response = await fetch(`${child.url}/_control/${path}`, {
        method: body === undefined ? "GET" : "POST",
        headers: { "Content-Type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return response.json();
    },
  };
}

export interface ServiceProcess extends ChildScript {
  dir: string;
  /** The SQLite file when STORE_URL is SQLite; undefined for other stores. */
  sqlitePath: string | undefined;
  callbackUrl: string;
  /** Its admin port (health, metrics, jobs API). */
  adminUrl: string;
  /** The PostgreSQL schema of its inbox when the benchmark made it (see ownSchema). */
  pgSchema: string | undefined;
  cleanup(): Promise<void>;
}

let workRoot: string | undefined;

/**
 * Where the benchmarked services keep their inbox and bundle files: BENCH_DIR, else
 * bench/.work in the checkout (a user's data folder is on that disk too, not in /tmp).
 *
 * The folder gets ext4's `T` flag (chattr +T), so each run's folder lands in a block group
 * of its own. Without it, every run's files share the groups that earlier runs (and the
 * tests) just emptied, and ext4 without a journal (as on these machines) steps over each
 * inode freed in the last minutes: creating a file then cost 0.2 to 1 ms of kernel CPU
 * instead of 0.02 ms, which a service writing files into a steady folder never pays.
 * Best effort: elsewhere (other file systems, no chattr) nothing changes.
 */
function benchWorkRoot(): string {
  if (workRoot) return workRoot;
  workRoot = process.env.BENCH_DIR ?? fileURLToPath(new URL("../.work", import.meta.url));
  mkdirSync(workRoot, { recursive: true });
  try {
    execFileSync("chattr", ["+T", workRoot], { stdio: "ignore" });
  } catch {
    // Not ext4, or no e2fsprogs: the runs share block groups, as before.
  }
  return workRoot;
}

/**
 * The node flags of `npm start` (package.json), so a benchmarked service runs with the
 * same heap settings as a user's, from source or from dist/.
 */
export function startScriptNodeFlags(): string[] {
  const packageJson = JSON.parse(
    readFileSync(new URL("../../package.json", import.meta.url), "utf8"),
  ) as { scripts: { start: string } };
  return packageJson.scripts.start.split(/\s+/).filter((word) => word.startsWith("--"));
}

/**
 * The service in its own process against `simulator`, with the node flags of `npm start`.
 * STORE_URL from the environment is passed through when set; otherwise a fresh SQLite file
 * in a fresh folder under benchWorkRoot().
 */
export async function startServiceProcess(
  simulator: SimulatorProcess,
  env: Record<string, string> = {},
  options: SpawnOptions & {
    entry?: string;
    /** Reuse this directory (inbox and results) instead of a fresh one: a restart. */
    dir?: string;
    beforeStart?: (dir: string) => Promise<void>;
  } = {},
): Promise<ServiceProcess> {
  const dir = options.dir ?? (await mkdtemp(join(benchWorkRoot(), "kcr-bench-")));
  await options.beforeStart?.(dir);
  const port = await freePort();
  const adminPort = await freePort();
  const store = process.env.STORE_URL;
  const overrides = serviceOverrides();
  // A schema of its own on PostgreSQL, dropped at cleanup: a table that kept every earlier
  // run's rows (and, where autovacuum is off, their dead versions) made each run slower
  // than the one before, and /metrics' counts scan it.
  const ownSchema =
    store?.startsWith("postgres") && !env.PG_SCHEMA && !overrides.PG_SCHEMA
      ? `bench_${process.pid.toString(36)}_${Date.now().toString(36)}`
      : undefined;
  const fullEnv = serviceEnv(simulator, dir, {
    PORT: String(port),
    ADMIN_PORT: String(adminPort),
    // As users run it: info logs, one line per accepted callback (to /dev/null here).
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? "info",
    ...(store ? { STORE_URL: store } : {}),
    ...(ownSchema ? { PG_SCHEMA: ownSchema } : {}),
    ...env,
    ...overrides,
  });
  const child = await spawnService(fullEnv, {
    ...options,
    nodeArgs: [...startScriptNodeFlags(), ...(options.nodeArgs ?? [])],
  });
  const storeUrl = fullEnv.STORE_URL ?? "";
  return {
    ...child,
    dir,
    sqlitePath: storeUrl.startsWith("sqlite:") ? storeUrl.slice("sqlite:".length) : undefined,
    callbackUrl: `${child.url}/callbacks/kreditcheck`,
    adminUrl: `http://127.0.0.1:${fullEnv.ADMIN_PORT}`,
    pgSchema: ownSchema,
    async cleanup() {
      await child.stop();
      await rm(dir, { recursive: true, force: true });
      if (store && ownSchema) await dropSchema(store, ownSchema);
    },
  };
}

/**
 * BENCH_SERVICE_<NAME>=value sets the service's <NAME> (e.g. BENCH_SERVICE_SINKS=stdout,
 * BENCH_SERVICE_LOG_LEVEL=warn), for finding out what a part of the service costs.
 */
function serviceOverrides(): Record<string, string> {
  const prefix = "BENCH_SERVICE_";
  return Object.fromEntries(
    Object.entries(process.env)
      .filter(([name, value]) => name.startsWith(prefix) && value !== undefined)
      .map(([name, value]) => [name.slice(prefix.length), value as string]),
  );
}

/** Resident set size of a process in MB (Linux /proc), or undefined where unavailable. */
export async function rssMb(pid: number | undefined): Promise<number | undefined> {
  return procStatusMb(pid, "VmRSS");
}

/**
 * The highest RSS a process has had since it started, in MB, as the kernel recorded it
 * (VmHWM): a peak between two samples of rssMb is not missed.
 */
export async function peakRssMb(pid: number | undefined): Promise<number | undefined> {
  return procStatusMb(pid, "VmHWM");
}

async function procStatusMb(pid: number | undefined, field: string): Promise<number | undefined> {
  if (pid === undefined) return undefined;
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const kb = Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1]);
    return Number.isFinite(kb) ? kb / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Drops a benchmark's own schema; a failure is reported, not thrown (the figures stand). */
async function dropSchema(url: string, schema: string): Promise<void> {
  await withClient(url, (client) =>
    client.query(`DROP SCHEMA IF EXISTS ${client.escapeIdentifier(schema)} CASCADE`),
  ).catch((error: unknown) =>
    console.error(`could not drop the benchmark's schema ${schema}: ${(error as Error).message}`),
  );
}

/** The rows of a benchmark's own PostgreSQL inbox (see ownSchema). */
export async function countPostgresJobs(url: string, schema: string): Promise<number> {
  return withClient(url, async (client) => {
    const { rows } = await client.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${client.escapeIdentifier(schema)}.kreditcheck_jobs`,
    );
    return Number(rows[0]?.n);
  });
}

async function withClient<T>(url: string, use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
    return await use(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Waits until the service's inbox holds no pending or running job, read from its admin
 * port's metrics (SQLite and PostgreSQL alike); false if that takes longer than timeoutMs.
 */
export function waitForDrain(adminUrl: string, timeoutMs: number): Promise<boolean> {
  return until(
    async () => {
      const text = await (await fetch(`${adminUrl}/metrics`)).text();
      const count = (state: string) =>
        Number(new RegExp(`^kreditcheck_jobs\\{state="${state}"\\} (\\d+)$`, "m").exec(text)?.[1]);
      return count("pending") === 0 && count("running") === 0;
    },
    timeoutMs,
    200,
  );
}

/**
 * BENCH_CPU_PROF=<dir>: node flags that write a V8 CPU profile of a process there.
 * BENCH_PERF=1 instead: --perf-basic-prof, so that Linux `perf record` names JavaScript
 * functions. Its samples count only time on a CPU, which the V8 profile cannot tell apart
 * from time spent waiting for one when the machine is busy.
 */
export function cpuProfileFlags(): string[] {
  if (process.env.BENCH_PERF) return ["--perf-basic-prof"];
  const dir = process.env.BENCH_CPU_PROF;
  return dir ? ["--cpu-prof", "--cpu-prof-dir", dir] : [];
}

/**
 * CPU time (user + system) a process has used so far, in ms (Linux /proc), or NaN. With
 * `thread`, only that thread's (the process's own id names its main thread: JavaScript).
 */
export async function cpuMs(pid: number | undefined, thread?: number): Promise<number> {
  if (pid === undefined) return Number.NaN;
  try {
    const path = thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`;
    const stat = await readFile(path, "utf8");
    // Fields after the command name (which may hold spaces) start after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    // USER_HZ is 100 on every Linux we run on.
    return ticks * 10;
  } catch {
    return Number.NaN;
  }
}

/**
 * Exits 0 with a message when STORE_URL names a store this checkout cannot open yet
 * (PostgreSQL is being added in parallel): a benchmark of it is not possible, not failed.
 */
export async function requireSupportedStore(): Promise<void> {
  const store = process.env.STORE_URL;
  if (!store || store.startsWith("sqlite:")) return;
  try {
    loadConfig({ STORE_URL: store, FINAPI_CLIENT_ID: "x", FINAPI_CLIENT_SECRET: "x" });
  } catch (error) {
    // Only a complaint about STORE_URL itself means "not here yet"; anything else is a bug.
    if (!/STORE_URL/.test((error as Error).message)) throw error;
    console.log(
      `STORE_URL=${store.replace(/\/\/[^@]*@/, "//***@")} is not supported by this checkout yet (${(error as Error).message.trim()}); nothing to measure, exiting 0.`,
    );
    process.exit(0);
  }
}

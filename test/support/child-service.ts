import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { childEnv } from "./child-env.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface ChildScript {
  child: ChildProcess;
  url: string;
  /** Every stdout line so far, when stdout is captured (logs and stdout-sink bundles alike). */
  lines: string[];
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnOptions {
  /** Extra node flags, e.g. --cpu-prof. */
  nodeArgs?: string[];
  /** A command that runs node, e.g. ["prlimit", "--nofile=256:256", "--"]. */
  prefix?: string[];
  args?: string[];
  /** Keep stdout lines in `lines`; otherwise stdout is discarded (cheaper under load). */
  captureStdout?: boolean;
  readyTimeoutMs?: number;
}

/** A port that was free a moment ago, so a restarted process can keep its URL. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/**
 * Runs a TypeScript entry point of this repository in its own process
 * (`node --import tsx <script>`) and resolves once `port` answers HTTP at all.
 */
export async function spawnScript(
  script: string,
  port: number,
  env: Record<string, string>,
  options: SpawnOptions = {},
): Promise<ChildScript> {
  const [command, ...prefixArgs] = [...(options.prefix ?? []), process.execPath];
  const child = spawn(
    command ?? process.execPath,
    [
      ...prefixArgs,
      ...(options.nodeArgs ?? []),
      // Built JavaScript (dist/) runs as it is; TypeScript sources through tsx.
      ...(script.endsWith(".js") ? [] : ["--import", "tsx"]),
      script,
      ...(options.args ?? []),
    ],
    {
      cwd: ROOT,
      env: childEnv({ NODE_ENV: "production", ...env }),
      stdio: ["ignore", options.captureStdout ? "pipe" : "ignore", "pipe"],
    },
  );
  const lines: string[] = [];
  let partial = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop() ?? "";
    lines.push(...parts);
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + (options.readyTimeoutMs ?? 20_000);
  for (;;) {
    try {
      await (await fetch(url, { signal: AbortSignal.timeout(1000) })).arrayBuffer();
      break;
    } catch {
      if (child.exitCode !== null || Date.now() > deadline) {
        child.kill("SIGKILL");
        throw new Error(`${script} did not start (exit ${child.exitCode}): ${stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
  return {
    child,
    url,
    lines,
    exited,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The service as users run it: its own process, every setting from the environment. */
export function spawnService(
  env: Record<string, string>,
  options: SpawnOptions & { entry?: string } = {},
): Promise<ChildScript> {
  const port = Number(env.PORT);
  if (!port) throw new Error("spawnService needs a fixed PORT (see freePort)");
  return spawnScript(options.entry ?? "src/main.ts", port, env, options);
}

const DISCARD = "http://127.0.0.1:9";

/** finAPI for a child service that never gets as far as calling it (port 9: nothing there). */
export const NO_FINAPI = {
  tokenUrl: DISCARD,
  processctrlUrl: DISCARD,
  diUrl: DISCARD,
  clientId: "id",
  clientSecret: "s",
};

/** Env for a child service against a simulator, in `dir`. */
export function serviceEnv(
  simulator: {
    tokenUrl: string;
    processctrlUrl: string;
    diUrl: string;
    clientId: string;
    clientSecret: string;
  },
  dir: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    HOST: "127.0.0.1",
    // Children run with NODE_ENV=production, which requires an explicit allowlist.
    ALLOWED_CIDRS: "127.0.0.1/32,::1/128",
    ADMIN_PORT: "0",
    STORE_URL: `sqlite:${dir}/inbox.db`,
    FILE_SINK_DIR: `${dir}/results`,
    FINAPI_TOKEN_URL: simulator.tokenUrl,
    FINAPI_PROCESSCTRL_URL: simulator.processctrlUrl,
    FINAPI_DI_URL: simulator.diUrl,
    FINAPI_CLIENT_ID: simulator.clientId,
    FINAPI_CLIENT_SECRET: simulator.clientSecret,
    LOG_LEVEL: "info",
    ...extra,
  };
}

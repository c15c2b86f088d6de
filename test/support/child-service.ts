import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface ChildService {
  child: ChildProcess;
  url: string;
  /** Every stdout line so far (logs and stdout-sink bundles alike). */
  lines: string[];
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/** A port that was free a moment ago, so a restarted service can keep its URL. */
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
 * The service as users run it: its own process (`node --import tsx src/main.ts`), all
 * settings from the environment. Resolves once it logs that it listens, which needs
 * LOG_LEVEL info or lower.
 */
export async function spawnService(
  env: Record<string, string>,
  options: { nodeArgs?: string[]; readyTimeoutMs?: number } = {},
): Promise<ChildService> {
  const child = spawn(
    process.execPath,
    [...(options.nodeArgs ?? []), "--import", "tsx", "src/main.ts"],
    {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", NODE_ENV: "production", ...env },
      stdio: ["ignore", "pipe", "pipe"],
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
    stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  let port: number | undefined;
  const deadline = Date.now() + (options.readyTimeoutMs ?? 20_000);
  while (port === undefined) {
    const listening = lines.find((line) => line.includes("kreditcheck-receiver listening"));
    if (listening) port = (JSON.parse(listening) as { port: number }).port;
    else if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`the service did not start (exit ${child.exitCode}): ${stderr.slice(-2000)}`);
    } else await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return {
    child,
    url: `http://127.0.0.1:${port}`,
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
    PORT: "0",
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

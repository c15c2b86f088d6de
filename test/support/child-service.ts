import { type ChildProcess, spawn } from "node:child_process";
import { waitFor } from "./wait-for.js";

export interface ChildService {
  process: ChildProcess;
  url: string;
  adminUrl: string;
  /** Parsed JSON log lines so far. */
  logs: () => Record<string, unknown>[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The service as users run it: its own process (`src/main.ts` through tsx), env only. */
export async function spawnService(env: Record<string, string>): Promise<ChildService> {
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: Record<string, unknown>[] = [];
  let buffered = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    buffered += chunk.toString("utf8");
    const complete = buffered.split("\n");
    buffered = complete.pop() ?? "";
    for (const line of complete) {
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        lines.push({ raw: line });
      }
    }
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  let exitedEarly = false;
  void exited.then(() => {
    exitedEarly = true;
  });
  const listening = await waitFor(
    () => {
      if (exitedEarly) throw new Error(`service exited during start-up: ${stderr}`);
      return lines.find((line) => line.msg === "kreditcheck-receiver listening");
    },
    "the service to listen",
    20_000,
  );
  return {
    process: child,
    url: `http://127.0.0.1:${listening.port}`,
    adminUrl: `http://127.0.0.1:${listening.adminPort}`,
    logs: () => lines,
    exited,
  };
}

import { readFile, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { callbackSchema } from "./callback.js";
import { loadConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { startService } from "./service.js";
import { startSimulator } from "./simulator/server.js";

/**
 * `npm run demo`: the built-in finAPI simulator and the real service (SQLite inbox + file
 * sink) on loopback; posts examples/callback.json over HTTP and waits for the bundle.
 */
const RESULTS_DIR = "./data/demo/results";
const STORE_PATH = "./data/demo/receiver.db";
const TIMEOUT_MS = 30_000;

async function demo(): Promise<void> {
  const callback = callbackSchema.parse(
    JSON.parse(await readFile("examples/callback.json", "utf8")),
  );
  const bundlePath = resolve(join(RESULTS_DIR, `${callback.kreditCheckId}.json`));
  // A fresh inbox each run, so the example callback is processed again, not a duplicate;
  // its own folder, so the demo never touches what `npm start` wrote.
  await rm("./data/demo", { recursive: true, force: true });

  const simulator = await startSimulator();
  const config = loadConfig({
    HOST: "127.0.0.1",
    PORT: "0",
    STORE_URL: `sqlite:${STORE_PATH}`,
    FILE_SINK_DIR: RESULTS_DIR,
    FINAPI_TOKEN_URL: simulator.tokenUrl,
    FINAPI_PROCESSCTRL_URL: simulator.processctrlUrl,
    FINAPI_DI_URL: simulator.diUrl,
    FINAPI_CLIENT_ID: simulator.clientId,
    FINAPI_CLIENT_SECRET: simulator.clientSecret,
    WORKER_POLL_MS: "100",
    ADMIN_PORT: "0",
    LOG_LEVEL: process.env.LOG_LEVEL ?? "info",
  });
  const logger = createLogger({ level: config.log.level, pretty: process.stdout.isTTY });
  const service = await startService(config, { logger });
  try {
    const response = await fetch(`${service.url}${config.http.callbackPath}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(callback),
    });
    console.log(`POST ${config.http.callbackPath} → ${response.status} ${await response.text()}`);
    if (response.status !== 202) throw new Error("the service did not accept the callback");

    const bundle = await waitForFile(bundlePath, TIMEOUT_MS);
    const verdict = (bundle as { kreditCheck?: { overallVerdict?: string } }).kreditCheck
      ?.overallVerdict;
    console.log(`bundle written: ${bundlePath}`);
    console.log(`overall verdict: ${verdict ?? "(none)"}`);
  } finally {
    await service.close();
    await simulator.close();
  }
}

async function waitForFile(path: string, timeoutMs: number): Promise<unknown> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      return JSON.parse(await readFile(path, "utf8"));
    } catch {
      await new Promise((resolveWait) => setTimeout(resolveWait, 100));
    }
  }
  throw new Error(`no bundle at ${path} after ${timeoutMs} ms`);
}

demo().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(`demo failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  },
);

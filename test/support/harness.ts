import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Config, loadConfig } from "../../src/config.js";
import type { Job, JobState } from "../../src/inbox/inbox.js";
import { type RunningService, type ServiceOptions, startService } from "../../src/service.js";
import {
  type RunningSimulator,
  type SimulatorOptions,
  startSimulator,
} from "../../src/simulator/server.js";
import type { Bundle } from "../../src/sinks/sink.js";
import { type CapturedLogs, captureLogs } from "./log-capture.js";
import { waitFor } from "./wait-for.js";

export interface Harness {
  simulator: RunningSimulator;
  service: RunningService;
  config: Config;
  dir: string;
  resultsDir: string;
  logs: CapturedLogs;
  env: Record<string, string>;
  /** POSTs a callback as finAPI would, over real HTTP. */
  post(
    body: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: Record<string, unknown> }>;
  readBundle(kreditCheckId: string): Promise<Bundle | undefined>;
  waitForBundle(kreditCheckId: string, timeoutMs?: number): Promise<Bundle>;
  /** Waits until the job is in `state` (the bundle file is written just before `done`). */
  waitForJob(id: unknown, state: JobState, timeoutMs?: number): Promise<Job>;
  /** The service's start-up log line ("kreditcheck-receiver listening"). */
  startupLine(): Record<string, unknown> | undefined;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** Service variables over the defaults below; a function gets the simulator's addresses. */
  env?: Record<string, string> | ((simulator: RunningSimulator) => Record<string, string>);
  simulator?: SimulatorOptions;
  service?: Partial<ServiceOptions>;
}

/** The real service on an ephemeral loopback port against the simulator; its own temp dir. */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), "kcr-test-"));
  const simulator = await startSimulator(options.simulator);
  const resultsDir = join(dir, "results");
  const env: Record<string, string> = {
    HOST: "127.0.0.1",
    PORT: "0",
    STORE_URL: `sqlite:${join(dir, "inbox.db")}`,
    FILE_SINK_DIR: resultsDir,
    FINAPI_TOKEN_URL: simulator.tokenUrl,
    FINAPI_PROCESSCTRL_URL: simulator.processctrlUrl,
    FINAPI_DI_URL: simulator.diUrl,
    FINAPI_CLIENT_ID: simulator.clientId,
    FINAPI_CLIENT_SECRET: simulator.clientSecret,
    FINAPI_TIMEOUT_MS: "2000",
    WORKER_POLL_MS: "20",
    BACKOFF_BASE_MS: "20",
    BACKOFF_MAX_MS: "200",
    LEASE_MS: "5000",
    ADMIN_PORT: "0",
    SHUTDOWN_TIMEOUT_MS: "2000",
    ...(typeof options.env === "function" ? options.env(simulator) : options.env),
  };
  const config = loadConfig(env);
  const logs = captureLogs();
  const service = await startService(config, { logger: logs.logger, ...options.service });

  const readBundle = async (kreditCheckId: string) => {
    try {
      return JSON.parse(
        await readFile(join(resultsDir, `${kreditCheckId}.json`), "utf8"),
      ) as Bundle;
    } catch {
      return undefined;
    }
  };

  return {
    simulator,
    service,
    config,
    dir,
    resultsDir,
    logs,
    env,
    startupLine: () => logs.lines().find((line) => line.msg === "kreditcheck-receiver listening"),
    async post(body, headers = {}) {
      const response = await fetch(`${service.url}${config.http.callbackPath}`, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...headers },
        body: typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body),
      });
      const text = await response.text();
      return {
        status: response.status,
        body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
      };
    },
    readBundle,
    waitForJob: (id, state, timeoutMs = 15_000) =>
      waitFor(
        async () => {
          const job = await service.inbox.get(String(id));
          return job?.state === state ? job : undefined;
        },
        `job ${String(id)} to be ${state}`,
        timeoutMs,
      ),
    waitForBundle: (kreditCheckId, timeoutMs = 15_000) =>
      waitFor(() => readBundle(kreditCheckId), `bundle ${kreditCheckId}`, timeoutMs),
    async close() {
      await service.close();
      await simulator.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

let counter = 0;
/** A valid callback with fresh ids. */
export function makeCallback(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  counter += 1;
  const suffix = `${process.pid}-${Date.now().toString(36)}-${counter}`;
  return {
    processToken: `pt-${suffix}`,
    kreditCheckId: `kc-${suffix}`,
    status: "SUCCESSFUL",
    clientReference: `CU-${counter}`,
    errorMessage: null,
    ...overrides,
  };
}

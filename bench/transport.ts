import http from "node:http";
import https from "node:https";
import axios, { type Axios } from "axios";
import pino from "pino";
import { AuthorizedClient } from "../src/finapi/authorized-client.js";
import { finapiCallLimits } from "../src/finapi/call-limits.js";
import { DataIntelligenceClient } from "../src/finapi/di.js";
import { ProcessCtrlClient } from "../src/finapi/processctrl.js";
import { caseIdsOf } from "../src/finapi/schemas.js";
import { ClientCredentialsTokenProvider } from "../src/finapi/token.js";
import { createTransport } from "../src/http-transport.js";
import { median, type Row, saveResults, table } from "./lib/report.js";
import { buildDist, startSimulatorProcess } from "./lib/stack.js";

/**
 * Transport: the service's finAPI fetch path (token, KreditCheck, then its DAC reports in
 * parallel, JSON checked by zod, info logs to /dev/null) in this process, against the
 * simulator (50 ms latency) in its own, C checks in flight. It alternates the service's
 * transport (axios sending through undici) with axios' own Node adapter configured as the
 * service configured it before, and prints the CPU this process spent per check on each.
 * Why undici is a dependency: this is the figure it moved.
 */
const N = Number(process.env.BENCH_CALLBACKS ?? 1000);
const C = Number(process.env.BENCH_CONCURRENCY ?? 64);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const LATENCY_MS = 50;

function axiosNodeAdapter(maxSockets: number): Axios {
  return axios.create({
    timeout: 10_000,
    maxRedirects: 0,
    responseType: "text",
    transformResponse: [(body: unknown) => body],
    validateStatus: () => true,
    httpAgent: new http.Agent({ keepAlive: true, maxSockets }),
    httpsAgent: new https.Agent({ keepAlive: true, maxSockets }),
    headers: { Accept: "application/json" },
  });
}

buildDist();
const simulator = await startSimulatorProcess(
  ["--latency-ms", String(LATENCY_MS)],
  [],
  "dist/simulator/cli.js",
);
const logger = pino({ level: "info" }, pino.destination("/dev/null"));

function fetchPath(httpClient: Axios) {
  // As the service sets them, for both clients' 10 s timeout.
  const limits = finapiCallLimits(10_000);
  const tokens = new ClientCredentialsTokenProvider({
    http: httpClient,
    limits,
    tokenUrl: simulator.tokenUrl,
    clientId: simulator.clientId,
    clientSecret: simulator.clientSecret,
    refreshMarginMs: 60_000,
    logger,
  });
  const client = new AuthorizedClient({ http: httpClient, limits, tokens, retries: 2 });
  return {
    processCtrl: new ProcessCtrlClient(
      client,
      simulator.processctrlUrl,
      "/checks/{processToken}/kreditcheck/{kreditCheckId}",
    ),
    di: new DataIntelligenceClient(client, simulator.diUrl),
  };
}

const undiciTransport = createTransport({ timeoutMs: 10_000, maxSockets: C * 4 });
const variants = {
  "axios on undici (the service)": fetchPath(undiciTransport.http),
  "axios' Node adapter": fetchPath(axiosNodeAdapter(C * 4)),
};

let sequence = 0;
async function fetchChecks(path: ReturnType<typeof fetchPath>, count: number): Promise<void> {
  let started = 0;
  await Promise.all(
    Array.from({ length: C }, async () => {
      while (started++ < count) {
        const id = sequence++;
        const controller = new AbortController();
        const ctx = { logger: logger.child({ jobId: id }), signal: controller.signal };
        const check = await path.processCtrl.getKreditCheck(`pt-${id}`, `kc-${id}`, ctx);
        await Promise.all(
          caseIdsOf(check).map((caseId) =>
            path.di.getDacReports(caseId, { ...ctx, logger: ctx.logger.child({ caseId }) }),
          ),
        );
      }
    }),
  );
}

const samples: Record<string, number[]> = Object.fromEntries(
  Object.keys(variants).map((name) => [name, [] as number[]]),
);
try {
  // Warm-up (JIT, sockets, token): not counted.
  for (const path of Object.values(variants)) await fetchChecks(path, 200);
  for (let round = 0; round < ROUNDS; round++) {
    const order = Object.entries(variants);
    if (round % 2 === 1) order.reverse();
    for (const [name, path] of order) {
      const before = process.cpuUsage();
      await fetchChecks(path, N);
      const used = process.cpuUsage(before);
      samples[name]?.push((used.user + used.system) / 1000 / N);
    }
  }
  const rows: Row[] = Object.entries(samples).map(([name, values]) => ({
    transport: name,
    "CPU ms/check (median)": median(values).toFixed(2),
    rounds: values.map((value) => value.toFixed(2)).join(" "),
  }));
  console.log(
    `\ntransport: ${N} checks x ${ROUNDS} rounds per transport, ${C} in flight, 1 KreditCheck + 3 DAC reports each, finAPI latency ${LATENCY_MS} ms; CPU of this process\n`,
  );
  console.log(table(rows));
  const [ours, theirs] = Object.values(samples).map((values) => median(values));
  if (ours !== undefined && theirs !== undefined) {
    console.log(`\nCPU per check, undici / axios' Node adapter: ${(ours / theirs).toFixed(2)}`);
  }
  console.log(`figures written to ${await saveResults("transport", samples)}`);
} finally {
  await undiciTransport.close();
  await simulator.stop();
}

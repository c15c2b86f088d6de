import { join } from "node:path";
import type { LoggedRequest, SimulatorStats } from "../src/simulator/server.js";
import { inboxReader, prefillInbox, until } from "./lib/inbox-file.js";
import { type Row, saveResults, table } from "./lib/report.js";
import {
  buildDist,
  cpuMs,
  cpuProfileFlags,
  startServiceProcess,
  startSimulatorProcess,
} from "./lib/stack.js";
import { formatSteal, startStealMeter } from "./lib/steal.js";

/**
 * Pipeline: 1,000 callbacks already in the inbox, finAPI (the simulator) answering every
 * call in 50 ms, the worker at concurrency C. Measured: from the worker's first finAPI
 * request (its token request, as seen by the simulator) to the last job marked done (its
 * bundle is on disk by then). The ideal is ceil(N/C) x 2 x 50 ms: the KreditCheck first,
 * then the three DAC reports in parallel.
 */
const N = Number(process.env.BENCH_CALLBACKS ?? 1000);
const LATENCY_MS = 50;
const CONCURRENCIES = (process.env.BENCH_CONCURRENCY ?? "4,16,64").split(",").map(Number);
const GOAL_RATIO = 1.15;
// BENCH_CPU_PROF=<dir>: V8 CPU profiles of the service and the simulator, for finding hot spots.
const cpuProf = cpuProfileFlags();

// The pipeline is measured on the SQLite inbox it fills itself; STORE_URL is for bench:ingest.
delete process.env.STORE_URL;
// Both run as built JavaScript, as users run them (npm start, node dist/simulator/cli.js).
buildDist();
const simulator = await startSimulatorProcess(
  ["--latency-ms", String(LATENCY_MS)],
  cpuProf,
  "dist/simulator/cli.js",
);
const rows: Row[] = [];
const figures: Record<string, unknown>[] = [];
try {
  for (const concurrency of CONCURRENCIES) {
    await simulator.control("reset", {});
    const simulatorCpuBefore = await cpuMs(simulator.child.pid);
    // The service's own temp dir holds the file sink; the inbox file is filled before start.
    const service = await startServiceProcess(
      simulator,
      { WORKER_CONCURRENCY: String(concurrency), DAC_CONCURRENCY: "4" },
      {
        entry: "dist/main.js",
        nodeArgs: cpuProf,
        beforeStart: (dir) => prefillInbox(join(dir, "inbox.db"), N),
      },
    );
    try {
      // From "ready": start-up (module loading) is not counted, the first jobs may be.
      const serviceCpuBefore = await cpuMs(service.child.pid);
      const stolen = startStealMeter();
      const reader = inboxReader(join(service.dir, "inbox.db"));
      const ideal = Math.ceil(N / concurrency) * 2 * LATENCY_MS;
      const finished = await until(() => reader.done() === N, ideal * 10 + 30_000);
      const lastFinishedAt = reader.lastFinishedAt() ?? Number.NaN;
      const stolenPercent = stolen();
      const serviceCpuPerCheck = ((await cpuMs(service.child.pid)) - serviceCpuBefore) / N;
      const simulatorCpuPerCheck = ((await cpuMs(simulator.child.pid)) - simulatorCpuBefore) / N;
      reader.close();
      const log = (await simulator.control("requests")) as LoggedRequest[];
      const stats = (await simulator.control("stats")) as SimulatorStats;
      const firstRequestAt = Math.min(...log.map((entry) => entry.receivedAt));
      const makespan = lastFinishedAt - firstRequestAt;
      const ratio = makespan / ideal;
      const figure = {
        concurrency,
        callbacks: N,
        finished,
        makespanMs: makespan,
        idealMs: ideal,
        ratio,
        tokenRequests: stats.calls.token,
        kreditcheckCalls: stats.calls.kreditcheck,
        dacCalls: stats.calls.dac,
        maxConcurrentDac: stats.maxConcurrent.dac,
        serviceCpuMsPerCheck: serviceCpuPerCheck,
        simulatorCpuMsPerCheck: simulatorCpuPerCheck,
        stolenCpuPercent: stolenPercent,
      };
      figures.push(figure);
      rows.push({
        C: concurrency,
        "makespan ms": finished ? makespan : "unfinished",
        "ideal ms": ideal,
        ratio: ratio.toFixed(3),
        "goal ratio": `<= ${GOAL_RATIO}`,
        "token requests": stats.calls.token,
        "max DAC in flight": stats.maxConcurrent.dac,
        "CPU ms/check service": serviceCpuPerCheck.toFixed(2),
        "CPU ms/check simulator": simulatorCpuPerCheck.toFixed(2),
        "CPU stolen": formatSteal(stolenPercent),
        met: finished && ratio <= GOAL_RATIO && stats.calls.token === 1 ? "yes" : "NO",
      });
    } finally {
      await service.cleanup();
    }
  }
  console.log(
    `\npipeline: ${N} callbacks (3 DAC reports each) pre-enqueued, finAPI latency ${LATENCY_MS} ms, DAC_CONCURRENCY 4;\nmakespan = worker's first finAPI request -> last job done\n`,
  );
  console.log(table(rows));
  console.log(`\nfigures written to ${await saveResults("pipeline", figures)}`);
} finally {
  await simulator.stop();
}

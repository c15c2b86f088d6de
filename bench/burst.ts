import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { inboxReader, until } from "./lib/inbox-file.js";
import { postCallbacks } from "./lib/load.js";
import { type Row, saveResults, table } from "./lib/report.js";
import {
  buildDist,
  peakRssMb,
  rssMb,
  type ServiceProcess,
  startServiceProcess,
  startSimulatorProcess,
} from "./lib/stack.js";

/**
 * Burst: 10,000 callbacks as fast as autocannon sends them while finAPI (the simulator)
 * answers every call in 2 s. The service runs as `npm start` runs it (built dist/main.js,
 * default settings) in its own process; its RSS is sampled every 100 ms, and the kernel's
 * own peak (VmHWM) is read at the end, so a peak between samples is not missed. A
 * warm-up of 2,000 distinct callbacks (a few hundred, or one callback repeated, left the
 * insert path cold: the "idle" p99 came out above the burst's), then ingest p99 on the
 * idle service with 2,000 more, then during the burst, all with the same connections.
 * "Idle": the warm-up's jobs wait in the inbox, but at WORKER_CONCURRENCY 4 with 2 s per
 * finAPI call the worker starts about one check a second and uses next to no CPU.
 *
 * Draining the 14,000 checks at the default WORKER_CONCURRENCY of 4 would take about 3 hours
 * (two sequential 2 s calls per check), so to bound the runtime the service is then
 * restarted on the same inbox with WORKER_CONCURRENCY raised (200 by default, about 4
 * minutes): the durable inbox makes that a plain restart. Its RSS is reported separately:
 * memory grows with the number of checks in flight (at 500, ~190 MB), not with the backlog.
 */
const BURST = Number(process.env.BENCH_BURST ?? 10_000);
const IDLE = Number(process.env.BENCH_IDLE ?? 2000);
const WARM_UP = Number(process.env.BENCH_WARM_UP ?? 2000);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const DRAIN_CONCURRENCY = Number(process.env.BENCH_DRAIN_CONCURRENCY ?? 200);
const LATENCY_MS = 2000;
const GOAL_RSS_MB = 150;
const GOAL_P99_FACTOR = 2;

// Measured on the SQLite inbox, which the bench reads to see the drain; STORE_URL is for bench:ingest.
delete process.env.STORE_URL;
buildDist();

const simulator = await startSimulatorProcess(["--latency-ms", String(LATENCY_MS)]);
const nodeOptions: Record<string, string> = process.env.BENCH_NODE_OPTIONS
  ? { NODE_OPTIONS: process.env.BENCH_NODE_OPTIONS }
  : {};
let service: ServiceProcess = await startServiceProcess(simulator, nodeOptions, {
  entry: "dist/main.js",
}).catch(async (error: unknown) => {
  await simulator.stop();
  throw error;
});
const dir = service.dir;
const alive = () => service.child.exitCode === null && service.child.signalCode === null;

/**
 * Peak RSS of the current service process while `during` runs: the samples' and the
 * kernel's (VmHWM, since the process started), whichever is higher; NaN where /proc
 * cannot be read, so that no goal reads as met on no figures.
 */
async function peakRssDuring<T>(during: () => Promise<T>): Promise<{ result: T; peak: number }> {
  let peak = Number.NaN;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const rss = await rssMb(service.child.pid);
      if (rss !== undefined) peak = Number.isNaN(peak) ? rss : Math.max(peak, rss);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  try {
    const result = await during();
    const kernelPeak = await peakRssMb(service.child.pid);
    if (kernelPeak !== undefined)
      peak = Number.isNaN(peak) ? kernelPeak : Math.max(peak, kernelPeak);
    return { result, peak };
  } finally {
    sampling = false;
    await sampler;
  }
}

/** The bundle files the file sink wrote (`<kreditCheckId>.json`; its temporaries start with a dot). */
async function bundleFiles(): Promise<number> {
  const names = await readdir(join(dir, "results")).catch(() => [] as string[]);
  return names.filter((name) => name.endsWith(".json") && !name.startsWith(".")).length;
}

try {
  const total = WARM_UP + IDLE + BURST;
  const warmUp = await postCallbacks(service.callbackUrl, {
    connections: CONNECTIONS,
    amount: WARM_UP,
  });
  const ingest = await peakRssDuring(async () => {
    const idle = await postCallbacks(service.callbackUrl, {
      connections: CONNECTIONS,
      amount: IDLE,
    });
    const burst = await postCallbacks(service.callbackUrl, {
      connections: CONNECTIONS,
      amount: BURST,
    });
    return { idle, burst };
  });
  const { idle, burst } = ingest.result;
  const reader = inboxReader(join(dir, "inbox.db"));
  const stored = reader.total();
  const doneBeforeRestart = reader.done();

  // Restart with a higher concurrency to drain in bounded time (SIGTERM: running jobs are
  // given back to the inbox, then taken up again by the new process).
  await service.stop();
  const drainStartedAt = Date.now();
  service = await startServiceProcess(
    simulator,
    { ...nodeOptions, WORKER_CONCURRENCY: String(DRAIN_CONCURRENCY), DAC_CONCURRENCY: "4" },
    { entry: "dist/main.js", dir },
  );
  const drain = await peakRssDuring(async () => {
    const finished = await until(() => reader.done() === total || !alive(), 600_000, 200);
    return finished && alive();
  });
  const drainMs = Date.now() - drainStartedAt;
  const delivered = reader.done();
  reader.close();
  // Delivered means in the sink, not only marked done in the inbox.
  const files = await bundleFiles();

  const p99Factor = burst.p99 / Math.max(idle.p99, 1);
  const rejected = [warmUp, idle, burst].reduce(
    (sum, load) => sum + load.rejected + load.errors,
    0,
  );
  const sent = warmUp.requests + idle.requests + burst.requests;
  const rows: Row[] = [
    {
      measure: "peak RSS, warm-up + idle run + burst (WORKER_CONCURRENCY 4), MB",
      value: ingest.peak.toFixed(1),
      goal: `<= ${GOAL_RSS_MB}`,
      met: ingest.peak <= GOAL_RSS_MB ? "yes" : "NO",
    },
    {
      measure: `peak RSS during the drain (WORKER_CONCURRENCY ${DRAIN_CONCURRENCY}), MB`,
      value: drain.peak.toFixed(1),
      goal: `<= ${GOAL_RSS_MB}`,
      met: drain.peak <= GOAL_RSS_MB ? "yes" : "NO",
    },
    {
      measure: `requests rejected (non-2xx + errors), of ${sent} sent`,
      value: rejected,
      goal: "0",
      met: rejected === 0 ? "yes" : "NO",
    },
    {
      measure: "callbacks stored / sent",
      value: `${stored} / ${total}`,
      goal: "all",
      met: stored === total ? "yes" : "NO",
    },
    {
      measure: "callbacks delivered in the end: jobs done / bundle files",
      value: `${delivered} / ${files} of ${total}`,
      goal: "all",
      met: drain.result && delivered === total && files === total ? "yes" : "NO",
    },
    {
      measure: "ingest p99 ms burst / idle",
      value: `${burst.p99} / ${idle.p99}`,
      goal: `<= ${GOAL_P99_FACTOR}x (${p99Factor.toFixed(2)}x)`,
      met: p99Factor <= GOAL_P99_FACTOR ? "yes" : "NO",
    },
    {
      measure: "ingest req/s burst / idle",
      value: `${burst.rps.toFixed(0)} / ${idle.rps.toFixed(0)}`,
      goal: "",
      met: "",
    },
    {
      measure: "delivered before restart / drain time after restart",
      value: `${doneBeforeRestart} / ${(drainMs / 1000).toFixed(1)} s`,
      goal: "bounded",
      met: drain.result ? "yes" : "NO",
    },
  ];
  console.log(
    `\nburst: ${BURST} callbacks (after ${WARM_UP} warm-up and ${IDLE} callbacks as the idle reference), ${CONNECTIONS} connections, finAPI latency ${LATENCY_MS} ms; then a restart at WORKER_CONCURRENCY ${DRAIN_CONCURRENCY} to drain\n`,
  );
  console.log(table(rows));
  const figures = {
    burst: BURST,
    idleCallbacks: IDLE,
    warmUp: WARM_UP,
    connections: CONNECTIONS,
    drainConcurrency: DRAIN_CONCURRENCY,
    ingestPeakRssMb: ingest.peak,
    drainPeakRssMb: drain.peak,
    idle,
    burstLoad: burst,
    warmUpLoad: warmUp,
    sent,
    rejected,
    stored,
    delivered,
    bundleFiles: files,
    drainFinished: drain.result,
    doneBeforeRestart,
    drainMs,
    p99Factor,
  };
  console.log(`\nfigures written to ${await saveResults("burst", figures)}`);
} finally {
  await service.stop();
  await rm(dir, { recursive: true, force: true });
  await simulator.stop();
}

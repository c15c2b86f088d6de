import Database from "better-sqlite3";
import { type ChildScript, freePort, spawnScript } from "../test/support/child-service.js";
import { type LoadResult, postCallbacks } from "./lib/load.js";
import { median, type Row, saveResults, table } from "./lib/report.js";
import {
  buildDist,
  countPostgresJobs,
  cpuProfileFlags,
  requireSupportedStore,
  type ServiceProcess,
  type SimulatorProcess,
  startServiceProcess,
  startSimulatorProcess,
  waitForDrain,
} from "./lib/stack.js";
import { formatSteal, startStealMeter } from "./lib/steal.js";

/**
 * Ingest: the real service (every 202 on disk, worker running against the simulator)
 * against a bare Express handler that only parses JSON, alternating A/B/A/B in one run so
 * the noise of a shared machine hits both alike. Each in its own process; autocannon here.
 * Service and simulator run as built JavaScript (dist/), as npm start runs them.
 *
 * Every round starts with the service's inbox drained: the worker working off what a
 * service round left would otherwise share the two cores with the bare handler's round
 * (70-80 % of the service's loop, measured), slowing the yardstick and flattering the ratio.
 */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 32);
const GOAL_RATIO = 0.8;
const GOAL_P99_FACTOR = 2;
/** The longest a round waits for the worker to work off the inbox before it starts. */
const DRAIN_TIMEOUT_MS = 300_000;

await requireSupportedStore();
const cpuProf = cpuProfileFlags();
buildDist();
let simulator: SimulatorProcess | undefined;
let service: ServiceProcess | undefined;
let bare: ChildScript | undefined;
try {
  simulator = await startSimulatorProcess([], [], "dist/simulator/cli.js");
  service = await startServiceProcess(simulator, {}, { entry: "dist/main.js", nodeArgs: cpuProf });
  const barePort = await freePort();
  bare = await spawnScript("bench/bare-server.ts", barePort, { PORT: String(barePort) });
  const bareUrl = `${bare.url}/callbacks/kreditcheck`;
  const { adminUrl } = service;
  const drained = async () => {
    if (!(await waitForDrain(adminUrl, DRAIN_TIMEOUT_MS))) {
      throw new Error(`the service's inbox did not drain within ${DRAIN_TIMEOUT_MS / 1000} s`);
    }
  };

  // Warm up both (JIT, SQLite page cache, keep-alive sockets); not counted.
  const warmUp = await postCallbacks(service.callbackUrl, { connections: CONNECTIONS, seconds: 2 });
  await postCallbacks(bareUrl, { connections: CONNECTIONS, seconds: 2 });
  let drainWaitMs = 0;

  const runs: {
    target: "service" | "bare";
    round: number;
    result: LoadResult;
    stolenPercent: number | undefined;
  }[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const order = round % 2 === 1 ? (["service", "bare"] as const) : (["bare", "service"] as const);
    for (const target of order) {
      const url = target === "service" ? service.callbackUrl : bareUrl;
      const waitStarted = Date.now();
      await drained();
      drainWaitMs += Date.now() - waitStarted;
      const stolen = startStealMeter();
      const result = await postCallbacks(url, { connections: CONNECTIONS, seconds: SECONDS });
      runs.push({ target, round, result, stolenPercent: stolen() });
    }
  }

  const of = (target: "service" | "bare") =>
    runs.filter((run) => run.target === target).map((run) => run.result);
  const summary = (results: LoadResult[]) => ({
    rps:
      results.reduce((sum, r) => sum + r.requests, 0) /
      results.reduce((sum, r) => sum + r.seconds, 0),
    p99: median(results.map((r) => r.p99)),
    p50: median(results.map((r) => r.p50)),
    ok: results.reduce((sum, r) => sum + r.ok, 0),
    rejected: results.reduce((sum, r) => sum + r.rejected, 0),
    errors: results.reduce((sum, r) => sum + r.errors, 0),
  });
  const svc = summary(of("service"));
  const base = summary(of("bare"));
  const ratio = svc.rps / base.rps;
  const p99Factor = svc.p99 / Math.max(base.p99, 1);

  // Every 202 must be a row on disk: count them once the service has stopped. A run ends
  // with up to one request per connection in flight: stored, but its 202 is not counted.
  const storedMatches = (rows: number, accepted: number) =>
    rows >= accepted && rows - accepted <= CONNECTIONS * (ROUNDS + 1);
  await service.stop();
  let stored: number | undefined;
  if (service.sqlitePath) {
    const db = new Database(service.sqlitePath, { readonly: true });
    stored = (db.prepare("SELECT COUNT(*) AS n FROM jobs").get() as { n: number }).n;
    db.close();
  } else if (service.pgSchema && process.env.STORE_URL) {
    stored = await countPostgresJobs(process.env.STORE_URL, service.pgSchema);
  }

  const perRound: Row[] = runs.map(({ target, round, result, stolenPercent }) => ({
    round,
    target,
    "req/s": result.rps,
    "p50 ms": result.p50,
    "p99 ms": result.p99,
    "non-2xx": result.rejected,
    errors: result.errors,
    "CPU stolen": formatSteal(stolenPercent),
  }));
  console.log(
    `\ningest: ${ROUNDS} rounds x ${SECONDS} s per target, ${CONNECTIONS} connections, store ${process.env.STORE_URL ?? "sqlite (temp file)"}\n`,
  );
  console.log(table(perRound));
  const met = {
    ratio: ratio >= GOAL_RATIO,
    p99: p99Factor <= GOAL_P99_FACTOR,
    stored: stored === undefined ? null : storedMatches(stored, svc.ok + warmUp.ok),
    noneRejected: svc.rejected + svc.errors === 0,
  };
  const rows: Row[] = [
    {
      measure: "req/s (2xx) service / bare",
      value: `${svc.rps.toFixed(0)} / ${base.rps.toFixed(0)}`,
      ratio: ratio.toFixed(2),
      goal: `>= ${GOAL_RATIO}`,
      met: met.ratio ? "yes" : "NO",
    },
    {
      measure: "p99 ms service / bare (median of rounds)",
      value: `${svc.p99} / ${base.p99}`,
      ratio: p99Factor.toFixed(2),
      goal: `<= ${GOAL_P99_FACTOR}x`,
      met: met.p99 ? "yes" : "NO",
    },
    {
      measure: "service 202s (incl. warm-up) / rows on disk",
      value: `${svc.ok + warmUp.ok} / ${stored ?? "n/a"}`,
      ratio: "",
      goal: "every 202 stored",
      met: met.stored === null ? "n/a" : met.stored ? "yes" : "NO",
    },
    {
      measure: "service non-2xx + errors",
      value: `${svc.rejected + svc.errors}`,
      ratio: "",
      goal: "0",
      met: met.noneRejected ? "yes" : "NO",
    },
  ];
  console.log(`\n${table(rows)}\n`);
  console.log(
    `waited ${(drainWaitMs / 1000).toFixed(1)} s in all for the worker to work off the inbox before rounds\n`,
  );
  const path = await saveResults(service.sqlitePath ? "ingest" : "ingest-postgres", {
    rounds: ROUNDS,
    seconds: SECONDS,
    connections: CONNECTIONS,
    store: process.env.STORE_URL ?? "sqlite",
    service: svc,
    bare: base,
    ratio,
    p99Factor,
    warmUpOk: warmUp.ok,
    stored,
    drainWaitMs,
    met,
    runs,
  });
  console.log(`figures written to ${path}`);
} catch (error) {
  // Config may accept a store before this checkout has its adapter (PostgreSQL, in parallel).
  if (!service && process.env.STORE_URL && /unsupported STORE_URL/.test(String(error))) {
    console.log(
      `the service cannot open STORE_URL in this checkout yet; nothing to measure, exiting 0.`,
    );
  } else throw error;
} finally {
  // Each stopped even when another's stop fails: none is left running.
  await Promise.allSettled([service?.cleanup(), bare?.stop(), simulator?.stop()]);
}

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { ERROR_CODES } from "./errors.js";
import { CALLBACK_OUTCOMES } from "./http/callback-route.js";
import { ADMIN_MAX_CONNECTIONS } from "./http/connection-limit.js";
import { type Inbox, JOB_STATES, type JobState } from "./inbox/inbox.js";
import { JOB_OUTCOMES } from "./pipeline/worker.js";

/**
 * The service's Prometheus metrics, on a registry of its own (no global default
 * registry: two services in one test process must not share counters).
 */
export interface Metrics {
  registry: Registry;
  callbacks: Counter<"outcome">;
  connectionsDropped: Counter<"port">;
  jobDuration: Histogram<"outcome">;
  finapiDuration: Histogram<"endpoint" | "status">;
  tokenRequests: Counter<"outcome">;
  sinkDeliveries: Counter<"sink" | "result">;
  jobsPruned: Counter<"state">;
  pruneRuns: Counter<"result">;
  jobFailures: Counter<"code" | "outcome">;
}

export function createMetrics(
  inbox: Pick<Inbox, "countByState" | "oldestUnfinished" | "ping">,
  clock: () => number = Date.now,
  sinkNames: readonly string[] = [],
): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const metrics: Metrics = {
    registry,
    callbacks: new Counter({
      name: "kreditcheck_callbacks_received_total",
      help: "Callbacks received (POSTs to the callback path, refused ones too), by outcome (accepted, duplicate, invalid, forbidden, unauthorized, store_unavailable)",
      labelNames: ["outcome"],
      registers: [registry],
    }),
    connectionsDropped: new Counter({
      name: "kreditcheck_connections_dropped_total",
      help: `Connections closed at once because their port already held its most: port=public (MAX_CONNECTIONS) or admin (${ADMIN_MAX_CONNECTIONS})`,
      labelNames: ["port"],
      registers: [registry],
    }),
    jobDuration: new Histogram({
      name: "kreditcheck_job_duration_seconds",
      help: "Duration of one job attempt, by outcome (done, retry, dead, released, lease_lost, replaced, store_error)",
      labelNames: ["outcome"],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    finapiDuration: new Histogram({
      name: "kreditcheck_finapi_request_duration_seconds",
      help: "finAPI calls by endpoint and HTTP status (or timeout, network_error, too_large)",
      labelNames: ["endpoint", "status"],
      buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    tokenRequests: new Counter({
      name: "kreditcheck_token_requests_total",
      help: "Manager token requests to finAPI, by outcome",
      labelNames: ["outcome"],
      registers: [registry],
    }),
    sinkDeliveries: new Counter({
      name: "kreditcheck_sink_deliveries_total",
      help: "Bundle deliveries by sink and result (success, failure)",
      labelNames: ["sink", "result"],
      registers: [registry],
    }),
    jobFailures: new Counter({
      name: "kreditcheck_job_failures_total",
      help: "Failed job attempts by error code (as in the admin API's lastErrorCodes and README's table; attempt_interrupted: a job taken over after its worker stopped, or given up for it) and outcome (retry, dead). Alert on outcome=dead: its code names the fix",
      labelNames: ["code", "outcome"],
      registers: [registry],
    }),
    jobsPruned: new Counter({
      name: "kreditcheck_jobs_pruned_total",
      help: "Finished jobs deleted after their retention (DONE_RETENTION_MS, DEAD_RETENTION_MS), by state",
      labelNames: ["state"],
      registers: [registry],
    }),
    pruneRuns: new Counter({
      name: "kreditcheck_prune_runs_total",
      help: "Retention runs (every PRUNE_INTERVAL_MS) by result (success, failure); alert when failures go on: the inbox then grows",
      labelNames: ["result"],
      registers: [registry],
    }),
  };
  startAtZero(metrics, sinkNames);
  // One count per scrape, shared by the two gauges below (prom-client collects each).
  let scrape: Promise<Record<JobState, number> | undefined> | undefined;
  const countOnce = () => {
    scrape ??= inbox
      .countByState()
      .catch(() => undefined)
      .finally(() => setImmediate(() => (scrape = undefined)));
    return scrape;
  };
  new Gauge({
    name: "kreditcheck_jobs",
    help: "Jobs in the inbox by state; absent while the inbox cannot be read (see kreditcheck_inbox_up)",
    labelNames: ["state"],
    registers: [registry],
    async collect() {
      const counts = await countOnce();
      // Last scrape's numbers would read as a healthy, frozen backlog during an outage.
      this.reset();
      if (counts) for (const state of JOB_STATES) this.set({ state }, counts[state]);
    },
  });
  new Gauge({
    name: "kreditcheck_inbox_up",
    help: "1 when the inbox answered this scrape's job count, 0 when it could not be read (alert on it, and on kreditcheck_inbox_writable)",
    registers: [registry],
    async collect() {
      this.set((await countOnce()) ? 1 : 0);
    },
  });
  new Gauge({
    name: "kreditcheck_inbox_writable",
    help: "1 when the inbox took this scrape's durable write (the one /readyz makes), 0 when it could not: callbacks are answered 503 meanwhile. Alert on it; kreditcheck_inbox_up only says the inbox can be read",
    registers: [registry],
    async collect() {
      // Written at the scrape, not remembered from /readyz or the last callback: where no
      // probe asks and no callback comes, a value kept from then would stay 1 after the
      // SQLite file was moved away, or 0 long after a lock was let go. The write is a tiny
      // heartbeat row; on SQLite it never waits for a lock another connection holds.
      this.set(
        await inbox.ping().then(
          () => 1,
          () => 0,
        ),
      );
    },
  });
  // The oldest unfinished job's receipt as last read: undefined before the first read.
  let oldestRead: Date | null | undefined;
  new Gauge({
    name: "kreditcheck_oldest_unfinished_job_age_seconds",
    help: "Seconds since the oldest callback not yet delivered or given up (pending or running) was received; 0 when there is none. While the inbox cannot be read it goes on growing from the last read (NaN before any). Alert when it passes what finAPI's results and your sinks should take",
    registers: [registry],
    async collect() {
      const read = await inbox.oldestUnfinished().then(
        (oldest) => ({ oldest }),
        () => undefined,
      );
      // Unreadable: no job finishes and none is accepted while the inbox is down, so the
      // job last read as oldest still is. A 0 here cleared the age alert just as the store
      // failed (an unlabelled gauge cannot be left out as kreditcheck_jobs is).
      if (read) oldestRead = read.oldest;
      if (oldestRead === undefined) this.set(Number.NaN);
      else this.set(oldestRead === null ? 0 : Math.max(0, (clock() - oldestRead.getTime()) / 1000));
    },
  });
  return metrics;
}

/**
 * Every series the service can count, at 0 from the start. Prometheus cannot tell a new
 * series from one that was always there: the first dead job after a start (often the only
 * one) would appear at 1, and increase() or rate() over it would read 0, so an alert on it
 * never fired.
 */
function startAtZero(metrics: Metrics, sinkNames: readonly string[]): void {
  for (const outcome of CALLBACK_OUTCOMES) metrics.callbacks.inc({ outcome }, 0);
  for (const port of ["public", "admin"]) metrics.connectionsDropped.inc({ port }, 0);
  for (const outcome of JOB_OUTCOMES) metrics.jobDuration.zero({ outcome });
  for (const outcome of ["success", "failure"]) metrics.tokenRequests.inc({ outcome }, 0);
  for (const sink of sinkNames) {
    for (const result of ["success", "failure"]) metrics.sinkDeliveries.inc({ sink, result }, 0);
  }
  for (const state of ["done", "dead"]) metrics.jobsPruned.inc({ state }, 0);
  for (const result of ["success", "failure"]) metrics.pruneRuns.inc({ result }, 0);
  for (const code of [...ERROR_CODES, "attempt_interrupted"]) {
    for (const outcome of ["retry", "dead"]) metrics.jobFailures.inc({ code, outcome }, 0);
  }
}

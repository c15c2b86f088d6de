import { readdir } from "node:fs/promises";
import { afterEach, describe, expect, it } from "vitest";
import { settleWithLimit } from "../../src/pipeline/map-limit.js";
import type { LoggedRequest } from "../../src/simulator/server.js";
import { CountingSink } from "../support/counting-sink.js";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";
import { waitFor } from "../support/wait-for.js";

const CALLBACKS = 300;

interface ClientCall {
  requestId: string;
  /** When the service sent the request and when it logged the outcome, by its own clock. */
  sentAt: number;
  endedAt: number;
  status: unknown;
}

/** Every finAPI call the service logged (answered, timed out or failed), by request id. */
function clientCalls(lines: Record<string, unknown>[]): Map<string, ClientCall> {
  const calls = new Map<string, ClientCall>();
  for (const line of lines) {
    if (typeof line.requestId !== "string" || typeof line.durationMs !== "number") continue;
    if (!String(line.msg).startsWith("finAPI call")) continue;
    const endedAt = Date.parse(String(line.time));
    calls.set(line.requestId, {
      requestId: line.requestId,
      sentAt: endedAt - line.durationMs,
      endedAt,
      status: line.status,
    });
  }
  return calls;
}

/**
 * For every answer with Retry-After that the service read, no request for the same
 * resource (same method and URL, from the simulator's log) may have been *sent* sooner.
 * Both times are the service's own: the simulator's arrival times are not used, because
 * a request the client gave up on can still reach a CPU-starved simulator later and would
 * look like an early retry. A few ms of slack cover log rounding.
 */
function retryAfterViolations(
  log: LoggedRequest[],
  calls: Map<string, ClientCall>,
  slackMs = 5,
): string[] {
  const byTarget = new Map<string, LoggedRequest[]>();
  for (const entry of log) {
    if (entry.endpoint === "token") continue;
    byTarget.set(entry.target, [...(byTarget.get(entry.target) ?? []), entry]);
  }
  const violations: string[] = [];
  for (const [target, entries] of byTarget) {
    for (const limited of entries) {
      const answer = limited.requestId ? calls.get(limited.requestId) : undefined;
      if (limited.retryAfterSec === undefined || !answer || answer.status !== limited.status)
        continue;
      for (const other of entries) {
        const next = other.requestId ? calls.get(other.requestId) : undefined;
        if (!next || next.sentAt <= answer.endedAt) continue;
        const waitedMs = next.sentAt - answer.endedAt;
        if (waitedMs < limited.retryAfterSec * 1000 - slackMs) {
          violations.push(
            `${target}: retried ${waitedMs} ms after reading Retry-After ${limited.retryAfterSec} s`,
          );
        }
      }
    }
  }
  return violations;
}

describe("chaos: finAPI fails in every way at once", () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it("delivers each of 300 callbacks exactly once through 5xx, hangs, 429s, resets, token expiry and a revocation, honouring every Retry-After", async () => {
    const counting = new CountingSink();
    harness = await startHarness({
      simulator: {
        rate5xx: 0.2,
        hangRate: 0.05,
        rate429: 0.05,
        retryAfterSec: 1,
        resetRate: 0.03,
        tokenLifetimeSec: 2,
        seed: 7,
      },
      env: {
        FINAPI_TIMEOUT_MS: "300",
        WORKER_CONCURRENCY: "32",
        DAC_CONCURRENCY: "4",
        TOKEN_REFRESH_MARGIN_MS: "500",
        // The production lease: with the harness's 5 s one, a test process starved of CPU
        // by the rest of the suite could lose a lease, and the job's new owner rightly
        // starts at once, which would read here as a Retry-After not honoured.
        LEASE_MS: "30000",
      },
      service: { extraSinks: [counting] },
    });
    const h = harness;
    const callbacks = Array.from({ length: CALLBACKS }, () => makeCallback());
    const ids = callbacks.map((callback) => String(callback.kreditCheckId));

    const answers = await settleWithLimit(callbacks, 16, (callback) => h.post(callback));
    expect(answers.map((answer) => answer.status === "fulfilled" && answer.value.status)).toEqual(
      callbacks.map(() => 202),
    );

    // Revoke the manager token while the run is in full swing.
    await waitFor(() => counting.deliveries.size >= CALLBACKS / 3, "a third delivered", 60_000);
    h.simulator.revokeToken();

    await waitFor(() => counting.deliveries.size === CALLBACKS, "all delivered", 60_000);
    await waitFor(
      async () => (await h.service.inbox.countByState()).done === CALLBACKS,
      "all jobs done",
    );

    expect(counting.duplicates()).toEqual([]);
    expect([...counting.deliveries.keys()].sort()).toEqual([...ids].sort());
    const files = (await readdir(h.resultsDir)).filter((name) => name.endsWith(".json"));
    expect(files.sort()).toEqual(ids.map((id) => `${id}.json`).sort());

    // Every fault really happened, and the token was replaced on expiry and on revocation.
    const stats = h.simulator.stats();
    const faults = { ...stats.statuses.kreditcheck };
    for (const [status, count] of Object.entries(stats.statuses.dac)) {
      faults[status] = (faults[status] ?? 0) + count;
    }
    expect(faults["503"]).toBeGreaterThan(50);
    expect(faults["429"]).toBeGreaterThan(10);
    expect(faults.hang).toBeGreaterThan(10);
    expect(faults.reset).toBeGreaterThan(5);
    expect(faults["401"]).toBeGreaterThan(0);
    expect(stats.tokensIssued).toBeGreaterThan(1);

    const log = h.simulator.requests();
    const limited = log.filter((entry) => entry.retryAfterSec !== undefined);
    expect(limited.length).toBe(faults["429"]);
    const calls = clientCalls(h.logs.lines());
    const received = [...calls.values()].filter((call) => call.status === 429);
    // Nearly every 429 reached the client; each of those was honoured.
    expect(received.length).toBeGreaterThanOrEqual(limited.length * 0.8);
    expect(retryAfterViolations(log, calls)).toEqual([]);
  });

  it("waits for the longest Retry-After when DAC reports of one check fail in different ways", async () => {
    harness = await startHarness({ env: { FINAPI_RETRIES: "0", DAC_CONCURRENCY: "4" } });
    const h = harness;
    // Two of the three DAC reports get a 503 (no Retry-After), one a 429 with Retry-After 1 s.
    h.simulator.failNext("dac", 2, 503);
    h.simulator.failNext("dac", 1, 429, { retryAfterSec: 1 });
    const callback = makeCallback();
    const accepted = await h.post(callback);
    await h.waitForBundle(String(callback.kreditCheckId));
    const dac = h.simulator.requests().filter((entry) => entry.endpoint === "dac");
    const firstAnswered = Math.max(...dac.slice(0, 3).map((entry) => entry.answeredAt ?? 0));
    const retried = Math.min(...dac.slice(3).map((entry) => entry.receivedAt));
    expect(retried - firstAnswered).toBeGreaterThanOrEqual(995);
    expect((await h.service.inbox.get(String(accepted.body.id)))?.attempts).toBe(2);
  });
});

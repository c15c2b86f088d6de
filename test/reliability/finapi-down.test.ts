import { afterEach, describe, expect, it } from "vitest";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";
import { startSwitchableRelay } from "../support/tcp-relay.js";
import { waitFor } from "../support/wait-for.js";

/**
 * Time is scaled down 1:10: "30 simulated seconds" of token outage are 3 real seconds, and
 * the backoff bounds are scaled likewise (BACKOFF_BASE_MS 100 instead of 1000). Timers
 * in the service run on real time, so the scale is applied to the settings, not a clock.
 */
const SCALE = 10;
const OUTAGE_MS = 30_000 / SCALE;
const CALLBACKS = 20;

describe("finAPI down: the token endpoint is unreachable for a while", () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it("makes jobs wait and back off (no tight loop), then completes every one of them", async () => {
    harness = await startHarness({
      env: {
        WORKER_CONCURRENCY: "4",
        BACKOFF_BASE_MS: String(1000 / SCALE),
        BACKOFF_MAX_MS: String(300_000 / SCALE),
      },
    });
    const h = harness;
    h.simulator.setFaults({ tokenDownForMs: OUTAGE_MS });
    const startedAt = Date.now();
    const callbacks = Array.from({ length: CALLBACKS }, () => makeCallback());
    for (const callback of callbacks) expect((await h.post(callback)).status).toBe(202);

    for (const callback of callbacks) {
      await h.waitForBundle(String(callback.kreditCheckId), OUTAGE_MS + 15_000);
    }
    const elapsedMs = Date.now() - startedAt;
    const tokenCalls = h.simulator.requests().filter((entry) => entry.endpoint === "token");
    const refused = tokenCalls.filter((entry) => entry.status === 503);

    expect(elapsedMs).toBeGreaterThanOrEqual(OUTAGE_MS - 100);
    // Nothing was fetched while there was no token, and one token served every job after.
    expect(refused.length).toBeGreaterThan(0);
    expect(tokenCalls.length - refused.length).toBe(1);
    // No tight loop: the outage's Retry-After is waited out, so each job asks at most
    // once while the endpoint is down (jobs claimed together share one request).
    expect(refused.length).toBeLessThanOrEqual(CALLBACKS);
    // The bundle file is written just before the job is marked done.
    await waitFor(
      async () => (await h.service.inbox.countByState()).done === CALLBACKS,
      "all jobs done",
    );
    const jobs = await h.service.inbox.list({ limit: CALLBACKS + 1 });
    expect(jobs.map((job) => job.state)).toEqual(callbacks.map(() => "done"));
    expect(Math.max(...jobs.map((job) => job.attempts))).toBeLessThanOrEqual(3);
  });

  it("backs off on its own when the token endpoint drops connections without a Retry-After", async () => {
    // No answer at all, so no Retry-After to wait out: only the job backoff (never shorter
    // than BACKOFF_BASE_MS) keeps the worker from polling the dead endpoint in a loop.
    const baseMs = 400;
    const jobs = 2;
    const outageMs = 2000;
    const tokenTarget = { host: "127.0.0.1", port: 0 };
    const relay = await startSwitchableRelay(() => tokenTarget);
    try {
      harness = await startHarness({
        env: (simulator) => {
          const tokenUrl = new URL(simulator.tokenUrl);
          tokenTarget.port = Number(tokenUrl.port);
          tokenUrl.port = String(relay.port);
          return {
            FINAPI_TOKEN_URL: tokenUrl.href,
            WORKER_CONCURRENCY: "4",
            BACKOFF_BASE_MS: String(baseMs),
            BACKOFF_MAX_MS: "1000",
            // The most there may be: a loop would not be cut short by jobs given up early.
            MAX_ATTEMPTS: "25",
          };
        },
      });
      const h = harness;
      await relay.cut();
      const cutAt = performance.now();
      const callbacks = Array.from({ length: jobs }, () => makeCallback());
      for (const callback of callbacks) expect((await h.post(callback)).status).toBe(202);
      await new Promise((resolve) => setTimeout(resolve, outageMs));
      const tokenRequestsWhileDown = relay.dropped;
      await relay.restore();
      const downMs = performance.now() - cutAt;

      // The endpoint was tried, and failed, while it was down ...
      expect(tokenRequestsWhileDown).toBeGreaterThan(0);
      // ... but each job at most once per BACKOFF_BASE_MS (the least backoff), however the
      // jitter fell: a loop on WORKER_POLL_MS (20 ms) asks all 25 times within the outage.
      // Under load the worker only asks less often, never more.
      const allowedPerJob = 1 + Math.ceil(downMs / baseMs);
      expect(tokenRequestsWhileDown).toBeLessThanOrEqual(jobs * allowedPerJob);
      for (const callback of callbacks) await h.waitForBundle(String(callback.kreditCheckId));
      await waitFor(
        async () => (await h.service.inbox.countByState()).done === jobs,
        "all jobs done",
      );
      const done = await h.service.inbox.list({ limit: jobs + 1 });
      expect(done.map((job) => job.state)).toEqual(callbacks.map(() => "done"));
      // The attempts that failed while down, plus the one that succeeded.
      for (const job of done) expect(job.attempts).toBeLessThanOrEqual(allowedPerJob + 1);
    } finally {
      await relay.close();
    }
  });
});

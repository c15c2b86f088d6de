import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { ReceiverError } from "../../src/errors.js";
import { backoffDelay, decideRetry, type RetryPolicy } from "../../src/pipeline/retry.js";

const policy: RetryPolicy = { maxAttempts: 5, maxAgeMs: 3_600_000, baseMs: 1000, maxMs: 60_000 };
/** The config with nothing but credentials set, and the retry policy the worker gets from it. */
function defaultSettings() {
  const config = loadConfig({ FINAPI_CLIENT_ID: "id", FINAPI_CLIENT_SECRET: "secret" });
  const defaults: RetryPolicy = {
    maxAttempts: config.worker.maxAttempts,
    maxAgeMs: config.worker.maxAgeMs,
    baseMs: config.worker.backoffBaseMs,
    maxMs: config.worker.backoffMaxMs,
  };
  return { config, defaults };
}

const retryable = new ReceiverError("finAPI is unavailable (503).", {
  code: "finapi_unavailable",
  retryable: true,
});

describe("backoffDelay", () => {
  it("grows exponentially: the largest draw doubles with each attempt", () => {
    expect(backoffDelay(1, policy, undefined, () => 0.999)).toBe(1000); // floored at baseMs
    expect(backoffDelay(2, policy, undefined, () => 0.999)).toBe(1998);
    expect(backoffDelay(3, policy, undefined, () => 0.999)).toBe(3996);
    expect(backoffDelay(5, policy, undefined, () => 0.999)).toBe(15984);
  });

  it("is capped at maxMs however many attempts", () => {
    expect(backoffDelay(40, policy, undefined, () => 0.999)).toBeLessThanOrEqual(policy.maxMs);
  });

  it("never goes below baseMs, so unlucky draws cannot make a tight loop", () => {
    expect(backoffDelay(6, policy, undefined, () => 0)).toBe(policy.baseMs);
  });

  it("spreads retries with full jitter", () => {
    const draws = new Set(
      Array.from({ length: 50 }, (_, i) => backoffDelay(8, policy, undefined, () => i / 50)),
    );
    expect(draws.size).toBeGreaterThan(40);
  });

  it("waits at least as long as Retry-After says", () => {
    expect(backoffDelay(1, policy, 30_000, () => 0)).toBe(30_000);
  });
});

describe("decideRetry", () => {
  const receivedAt = new Date(0);

  it("schedules a retryable failure after the backoff", () => {
    const decision = decideRetry(retryable, { attempts: 1, receivedAt }, policy, 10_000, () => 0.5);
    expect(decision).toEqual({ action: "retry", runAt: new Date(11_000), delayMs: 1000 });
  });

  it("gives up at once on a permanent failure, keeping its cause and fix", () => {
    const forbidden = new ReceiverError("finAPI refused access to the result (403).", {
      code: "finapi_forbidden",
      retryable: false,
      fix: "ask for data_intelligence:manager",
    });
    const decision = decideRetry(forbidden, { attempts: 1, receivedAt }, policy, 0);
    expect(decision).toEqual({
      action: "dead",
      reason: expect.stringContaining("data_intelligence:manager"),
    });
  });

  it("gives up after MAX_ATTEMPTS, naming the last error", () => {
    const decision = decideRetry(retryable, { attempts: 5, receivedAt }, policy, 0);
    expect(decision.action).toBe("dead");
    expect(decision.action === "dead" && decision.reason).toMatch(
      /gave up after 5 attempts.*finapi_unavailable/,
    );
  });

  it("with the default settings retries a job that keeps failing for hours, not minutes", () => {
    const { defaults } = defaultSettings();
    // Each wait drawn at the middle of its range: a typical job. (10 attempts and 5 minutes
    // gave about 4 minutes, which a short finAPI maintenance or a sink's deploy outlasted.)
    let now = 0;
    let attempts = 1;
    for (;;) {
      const decision = decideRetry(retryable, { attempts, receivedAt }, defaults, now, () => 0.5);
      if (decision.action === "dead") break;
      now += decision.delayMs;
      attempts += 1;
    }
    expect(attempts).toBe(25);
    expect(now / 3_600_000).toBeGreaterThan(3);
    expect(now / 3_600_000).toBeLessThan(4);
  });

  it.each([
    ["the longest", () => 0.999999],
    ["the shortest", () => 0],
  ])(
    "retries a result not found yet until NOT_FOUND_GRACE_MS with the default settings, past MAX_ATTEMPTS, with %s waits",
    (_, random) => {
      const { config, defaults } = defaultSettings();
      const graceEnds = config.finapi.notFoundGraceMs;
      const notReady = new ReceiverError("the KreditCheck result is not available yet", {
        code: "result_not_ready",
        retryable: true,
        retryUntil: graceEnds,
      });
      let now = 0;
      let attempts = 1;
      while (now < graceEnds) {
        const decision = decideRetry(notReady, { attempts, receivedAt }, defaults, now, random);
        expect(decision.action).toBe("retry");
        now += decision.action === "retry" ? decision.delayMs : 0;
        attempts += 1;
      }
      // The last attempt comes when the window ends, not a long backoff after it.
      expect(now).toBeLessThanOrEqual(graceEnds + defaults.baseMs);
      expect(attempts).toBeLessThan(700);
      // Past the window it counts as usual again: as the same error without a deadline.
      const withoutDeadline = new ReceiverError("the KreditCheck result is not available yet", {
        code: "result_not_ready",
        retryable: true,
      });
      expect(decideRetry(notReady, { attempts, receivedAt }, defaults, now, random)).toEqual(
        decideRetry(withoutDeadline, { attempts, receivedAt }, defaults, now, random),
      );
    },
  );

  it("gives up when the next attempt would be older than JOB_MAX_AGE_MS", () => {
    const decision = decideRetry(
      retryable,
      { attempts: 1, receivedAt },
      policy,
      policy.maxAgeMs - 10,
      () => 0.5,
    );
    expect(decision.action === "dead" && decision.reason).toMatch(
      /^gave up: the next attempt would come 1000 ms from now, when the job is older than JOB_MAX_AGE_MS/,
    );
    const old = decideRetry(retryable, { attempts: 1, receivedAt }, policy, policy.maxAgeMs + 1);
    expect(old.action === "dead" && old.reason).toMatch(
      /^gave up: the callback is older than JOB_MAX_AGE_MS=3600000; last error: finapi_unavailable/,
    );
  });

  it("says so when a fresh job gives up only because of the Retry-After asked for", () => {
    const slowDown = new ReceiverError("HTTP_SINK_URL answered 503.", {
      code: "http_sink_unavailable",
      retryable: true,
      retryAfterMs: 7_000_000,
    });
    const decision = decideRetry(slowDown, { attempts: 1, receivedAt }, policy, 1000);
    expect(decision.action === "dead" && decision.reason).toMatch(
      /^gave up: the next attempt would come 7000000 ms from now \(the Retry-After asked for\), when the job is older than JOB_MAX_AGE_MS=3600000/,
    );
  });
});

import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { ReceiverError } from "../../src/errors.js";
import { AuthorizedClient } from "../../src/finapi/authorized-client.js";
import { finapiCallLimits } from "../../src/finapi/call-limits.js";
import { ClientCredentialsTokenProvider } from "../../src/finapi/token.js";
import { createTransport, MAX_RETRY_AFTER_MS, parseRetryAfter } from "../../src/http-transport.js";
import { decideRetry } from "../../src/pipeline/retry.js";
import { answeringInTurn, type ScriptedAnswer } from "../support/answering-server.js";
import { captureLogs } from "../support/log-capture.js";

/** The job store's defaults (MAX_ATTEMPTS, JOB_MAX_AGE_MS, BACKOFF_BASE_MS, BACKOFF_MAX_MS). */
const POLICY = { maxAttempts: 25, maxAgeMs: 7 * 86_400_000, baseMs: 1000, maxMs: 1_800_000 };

const failure = (promise: Promise<unknown>): Promise<ReceiverError> =>
  promise.then(
    () => {
      throw new Error("answered");
    },
    (thrown: unknown) => thrown as ReceiverError,
  );

describe("Retry-After as finAPI (or anything in between) sends it", () => {
  const now = Date.parse("2025-01-01T00:00:00Z");

  it("reads only seconds and the three HTTP-date forms, and takes a malformed one as absent, not as a wait of none (or of something else)", () => {
    expect(parseRetryAfter("120", now)).toBe(120_000);
    expect(parseRetryAfter("Wed, 01 Jan 2025 00:00:30 GMT", now)).toBe(30_000);
    expect(parseRetryAfter("Wednesday, 01-Jan-25 00:00:30 GMT", now)).toBe(30_000);
    expect(parseRetryAfter("Wed Jan  1 00:00:30 2025", now)).toBe(30_000);
    expect(parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT", now)).toBe(0);
    for (const value of ["1 2", "-5", "1e400", "0x10", "1.5", "30s", "120abc", "3600, 3600"]) {
      expect(parseRetryAfter(value, now), value).toBeUndefined();
    }
  });

  it("waits out a huge or far-future one for MAX_RETRY_AFTER_MS (BACKOFF_MAX_MS's default) at most", () => {
    expect(MAX_RETRY_AFTER_MS).toBe(POLICY.maxMs);
    expect(parseRetryAfter("99999999", now)).toBe(MAX_RETRY_AFTER_MS);
    expect(parseRetryAfter("Thu, 01 Jan 2099 00:00:00 GMT", now)).toBe(MAX_RETRY_AFTER_MS);
  });
});

describe("a failed token request's Retry-After", () => {
  let server: Awaited<ReturnType<typeof answeringInTurn>> | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  async function tokensAnswering(answers: ScriptedAnswer[], clock: () => number) {
    server = await answeringInTurn(answers);
    return new ClientCredentialsTokenProvider({
      http: createTransport({ timeoutMs: 2000 }).http,
      limits: finapiCallLimits(2000),
      tokenUrl: `${server.origin}/api/v2/oauth/token`,
      clientId: "client-id",
      clientSecret: "client-secret-value",
      refreshMarginMs: 60_000,
      logger: captureLogs().logger,
      clock,
    });
  }
  const token = { status: 200, body: '{"access_token":"token-a","expires_in":3599}' };

  it("counts down: a caller failing on it later is told what is left of the wait", async () => {
    let now = 1_000_000;
    const tokens = await tokensAnswering(
      [{ status: 503, headers: { "retry-after": "600" }, body: "{}" }, token],
      () => now,
    );
    expect(await failure(tokens.getToken())).toMatchObject({
      code: "finapi_token_unavailable",
      retryAfterMs: 600_000,
    });
    now += 590_000;
    const later = await failure(tokens.getToken());
    expect(later).toMatchObject({ code: "finapi_token_unavailable", retryAfterMs: 10_000 });
    expect(later.describe()).toContain("finAPI's token endpoint is unavailable (503)");
    expect(server?.requestedAt).toHaveLength(1);
  });

  it("keeps a huge one from making every job dead and from blocking token requests until a restart", async () => {
    let now = Date.now();
    const tokens = await tokensAnswering(
      [{ status: 503, headers: { "retry-after": "99999999" }, body: "maintenance" }, token],
      () => now,
    );
    const error = await failure(tokens.getToken());
    expect(error.retryAfterMs).toBe(MAX_RETRY_AFTER_MS);
    const decision = decideRetry(error, { attempts: 1, receivedAt: new Date(now) }, POLICY, now);
    expect(decision.action).toBe("retry");
    now += MAX_RETRY_AFTER_MS;
    expect(await tokens.getToken()).toBe("token-a");
    expect(server?.requestedAt).toHaveLength(2);
  });

  it("ignores a malformed one ('1 2'): no wait asked for, rather than one of none", async () => {
    const tokens = await tokensAnswering(
      [{ status: 503, headers: { "retry-after": "1 2" }, body: "{}" }],
      Date.now,
    );
    const error = await failure(tokens.getToken());
    expect(error.code).toBe("finapi_token_unavailable");
    expect(error.retryAfterMs).toBeUndefined();
  });
});

describe("a data call's Retry-After, read as the token's is", () => {
  it("waits a far-future one out for MAX_RETRY_AFTER_MS at most", async () => {
    const server = await answeringInTurn([
      { status: 429, headers: { "retry-after": "Thu, 01 Jan 2099 00:00:00 GMT" }, body: "{}" },
    ]);
    try {
      const client = new AuthorizedClient({
        http: createTransport({ timeoutMs: 2000 }).http,
        limits: finapiCallLimits(2000),
        tokens: { getToken: async () => "token", invalidate: () => undefined },
        retries: 0,
      });
      const error = await failure(
        client.getJson(
          "kreditcheck",
          `${server.origin}/x`,
          { logger: captureLogs().logger },
          z.unknown(),
        ),
      );
      expect(error).toMatchObject({
        code: "finapi_rate_limited",
        retryAfterMs: MAX_RETRY_AFTER_MS,
      });
    } finally {
      await server.close();
    }
  });
});

import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { AuthorizedClient } from "../../src/finapi/authorized-client.js";
import { finapiCallLimits } from "../../src/finapi/call-limits.js";
import { createTransport, type Transport } from "../../src/http-transport.js";
import { answeringInTurn, type ScriptedAnswer } from "../support/answering-server.js";
import { captureLogs } from "../support/log-capture.js";

/** A finAPI stand-in that gives its answers in order (the last one from then on). */
async function finapiAnswering(answers: ScriptedAnswer[]) {
  const server = await answeringInTurn(answers);
  return { ...server, url: `${server.origin}/checks/pt/kreditcheck/kc` };
}

describe("AuthorizedClient's quick retries inside one attempt", () => {
  let finapi: Awaited<ReturnType<typeof finapiAnswering>> | undefined;
  let transport: Transport | undefined;
  afterEach(async () => {
    await transport?.close();
    await finapi?.close();
  });

  let tokensFetched = 0;
  function clientFor(retries: number): AuthorizedClient {
    transport = createTransport({
      timeoutMs: 5000,
      proxies: { http: undefined, https: undefined, all: undefined, noProxy: undefined },
    });
    tokensFetched = 0;
    return new AuthorizedClient({
      http: transport.http,
      limits: finapiCallLimits(5000),
      tokens: {
        getToken: async () => {
          tokensFetched += 1;
          return `token-${tokensFetched}`;
        },
        invalidate: () => undefined,
      },
      retries,
    });
  }
  const ctx = { logger: captureLogs().logger };

  it("waits as long as a 503's Retry-After asks before it calls again", async () => {
    finapi = await finapiAnswering([
      { status: 503, headers: { "retry-after": "1" }, body: "{}" },
      { status: 200, body: '{"status":"SUCCESSFUL"}' },
    ]);
    const result = await clientFor(1).getJson("kreditcheck", finapi.url, ctx, z.unknown());
    expect(result).toEqual({ status: "SUCCESSFUL" });
    const [first, second] = finapi.requestedAt as [number, number];
    expect(finapi.requestedAt).toHaveLength(2);
    expect(second - first).toBeGreaterThanOrEqual(1000);
  });

  it("leaves a long Retry-After to the job store's backoff instead of holding the worker slot", async () => {
    finapi = await finapiAnswering([{ status: 429, headers: { "retry-after": "10" }, body: "{}" }]);
    const error = await clientFor(2)
      .getJson("kreditcheck", finapi.url, ctx, z.unknown())
      .catch((thrown: unknown) => thrown);
    expect(error).toMatchObject({
      code: "finapi_rate_limited",
      retryable: true,
      retryAfterMs: 10_000,
    });
    expect(finapi.requestedAt).toHaveLength(1);
  });

  it("asks for a fresh token once after a 401, and then gives up instead of asking again and again", async () => {
    finapi = await finapiAnswering([{ status: 401, body: '{"error":"unauthorized"}' }]);
    // No quick retries: what is left to the job store's backoff is the second 401.
    const error = await clientFor(0)
      .getJson("kreditcheck", finapi.url, ctx, z.unknown())
      .catch((thrown: unknown) => thrown);
    expect(error).toMatchObject({ code: "finapi_unauthorized" });
    expect({ calls: finapi.requestedAt.length, tokens: tokensFetched }).toEqual({
      calls: 2,
      tokens: 2,
    });
  });
});

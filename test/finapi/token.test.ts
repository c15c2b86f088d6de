import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ReceiverError } from "../../src/errors.js";
import { finapiCallLimits } from "../../src/finapi/call-limits.js";
import { ClientCredentialsTokenProvider } from "../../src/finapi/token.js";
import { createTransport } from "../../src/http-transport.js";
import { HANG_STATUS } from "../../src/simulator/faults.js";
import {
  type RunningSimulator,
  type SimulatorOptions,
  startSimulator,
} from "../../src/simulator/server.js";
import { answeringInTurn } from "../support/answering-server.js";
import { captureLogs } from "../support/log-capture.js";
import { waitFor } from "../support/wait-for.js";
import { servePage } from "../support/web-page.js";

describe("ClientCredentialsTokenProvider against the simulated finAPI Access", () => {
  let simulator: RunningSimulator | undefined;
  afterEach(async () => {
    await simulator?.close();
    simulator = undefined;
  });

  async function provider(
    simOptions: SimulatorOptions = {},
    overrides: { refreshMarginMs?: number; clientSecret?: string; clock?: () => number } = {},
  ) {
    simulator = await startSimulator(simOptions);
    const logs = captureLogs();
    const tokens = new ClientCredentialsTokenProvider({
      http: createTransport({ timeoutMs: 2000 }).http,
      limits: finapiCallLimits(2000),
      tokenUrl: simulator.tokenUrl,
      clientId: simulator.clientId,
      clientSecret: overrides.clientSecret ?? simulator.clientSecret,
      refreshMarginMs: overrides.refreshMarginMs ?? 60_000,
      logger: logs.logger,
      clock: overrides.clock,
    });
    return { tokens, simulator, logs };
  }

  it("shares one request among many concurrent callers", async () => {
    const { tokens, simulator } = await provider({ latencyMs: 50 });
    const results = await Promise.all(Array.from({ length: 50 }, () => tokens.getToken()));
    expect(new Set(results).size).toBe(1);
    expect(simulator.stats().calls.token).toBe(1);
  });

  it("serves the cached token until the refresh margin, then asks again", async () => {
    let now = 1_000_000;
    const { tokens, simulator } = await provider({}, { clock: () => now, refreshMarginMs: 60_000 });
    await tokens.getToken();
    now += 3600_000 - 61_000; // still outside the margin
    await tokens.getToken();
    expect(simulator.stats().calls.token).toBe(1);
    now += 2_000; // inside the margin: the token still works, a refresh starts beside it
    await tokens.getToken();
    await waitFor(() => simulator.stats().calls.token === 2, "the refresh");
  });

  it("uses a short-lived token until it really expires instead of asking in a loop", async () => {
    // finAPI hands back the same token with only its remaining lifetime: shorter than the margin.
    const { tokens, simulator } = await provider(
      { tokenLifetimeSec: 2 },
      { refreshMarginMs: 60_000 },
    );
    const first = await tokens.getToken();
    for (let i = 0; i < 20; i++) expect(await tokens.getToken()).toBe(first);
    expect(simulator.stats().calls.token).toBe(1);
  });

  it("uses a token whose lifetime equals the refresh margin until it expires, then asks again", async () => {
    let now = 1_000_000;
    const { tokens, simulator } = await provider(
      { tokenLifetimeSec: 60 },
      { clock: () => now, refreshMarginMs: 60_000 },
    );
    const first = await tokens.getToken();
    for (let i = 0; i < 5; i++) {
      now += 10_000;
      expect(await tokens.getToken()).toBe(first);
    }
    // A refresh would have started beside those calls: give it time to show.
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(simulator.stats().calls.token).toBe(1);
    now += 10_001; // past its 60 s
    await tokens.getToken();
    expect(simulator.stats().calls.token).toBe(2);
  });

  it("says a token request cut off by the service stopping was cut short, and counts no finAPI failure", async () => {
    // A token endpoint that never answers: the request is out when the service stops.
    let received = 0;
    const hanging = createServer(() => {
      received += 1;
    });
    await new Promise<void>((resolve) => hanging.listen(0, "127.0.0.1", resolve));
    const { port } = hanging.address() as AddressInfo;
    const transport = createTransport({ timeoutMs: 5000 });
    const logs = captureLogs();
    const counted: string[] = [];
    const tokens = new ClientCredentialsTokenProvider({
      http: transport.http,
      limits: finapiCallLimits(5000),
      tokenUrl: `http://127.0.0.1:${port}/api/v2/oauth/token`,
      clientId: "id",
      clientSecret: "secret",
      refreshMarginMs: 60_000,
      logger: logs.logger,
      onRequest: (outcome) => counted.push(`request ${outcome}`),
      onResponse: (status) => counted.push(`response ${status}`),
    });
    try {
      const asked = tokens.getToken();
      await waitFor(() => received === 1, "the token request at finAPI");
      await transport.close();
      await expect(asked).rejects.toBeInstanceOf(ReceiverError);
      const lines = logs.lines().map((line) => [line.level, line.msg]);
      expect(lines).toEqual([[30, "finAPI token request cut short: stopping"]]);
      // Nor is it a failure in the metrics (kreditcheck_token_requests_total, the
      // finAPI duration histogram): a rollout must not look like a finAPI outage.
      expect(counted).toEqual([]);
    } finally {
      hanging.closeAllConnections();
      await new Promise((resolve) => hanging.close(resolve));
    }
  });

  it("never refreshes a token that finAPI says never expires (expires_in 0)", async () => {
    let now = 0;
    const { tokens, simulator } = await provider({ tokenLifetimeSec: 0 }, { clock: () => now });
    await tokens.getToken();
    now += 365 * 24 * 3600_000;
    await tokens.getToken();
    expect(simulator.stats().calls.token).toBe(1);
  });

  it("drops a token a data call found rejected, and only that token", async () => {
    const { tokens, simulator } = await provider();
    const first = await tokens.getToken();
    tokens.invalidate("some-other-token");
    expect(await tokens.getToken()).toBe(first);
    simulator.revokeToken();
    tokens.invalidate(first);
    const second = await tokens.getToken();
    expect(second).not.toBe(first);
    expect(simulator.stats().calls.token).toBe(2);
  });

  it("fails permanently on bad credentials, naming the variables to check, and never logs the secret", async () => {
    const { tokens, logs } = await provider({}, { clientSecret: "definitely-wrong-secret" });
    const error = await tokens.getToken().catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(ReceiverError);
    expect(error).toMatchObject({ code: "finapi_auth_failed", retryable: false });
    expect((error as ReceiverError).describe()).toContain("FINAPI_CLIENT_SECRET");
    expect(logs.text()).not.toContain("definitely-wrong-secret");
  });

  it("reports an unavailable token endpoint as retryable, and the next call tries again", async () => {
    const { tokens, simulator } = await provider();
    simulator.failNext("token", 1, 503);
    await expect(tokens.getToken()).rejects.toMatchObject({
      code: "finapi_token_unavailable",
      retryable: true,
    });
    await expect(tokens.getToken()).resolves.toEqual(expect.any(String));
    expect(simulator.stats().calls.token).toBe(2);
  });

  it("starts no request for a caller that has already stopped, and a failed request nobody waits for does not end the process", async () => {
    const { tokens, simulator } = await provider();
    simulator.failNext("token", 1, 503);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      // A job stopped by shutdown or a lost lease asks on its way out (the remaining DAC
      // reports of a settled batch): nothing is requested on its behalf.
      const stopped = AbortSignal.abort(new Error("shutdown"));
      await expect(tokens.getToken(stopped)).rejects.toThrow("shutdown");
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(simulator.stats().calls.token).toBe(0);
      // A caller that stops waiting while the request is out, which then fails.
      const controller = new AbortController();
      const waiting = tokens.getToken(controller.signal);
      controller.abort(new Error("lease lost"));
      await expect(waiting).rejects.toThrow("lease lost");
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(simulator.stats().calls.token).toBe(1);
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
    // The next caller gets a fresh request, not the failed one.
    expect(await tokens.getToken()).toEqual(expect.any(String));
  });

  it("keeps using the old token while it is valid when an early refresh fails, trying again only after Retry-After", async () => {
    let now = 1_000_000;
    const { tokens, simulator, logs } = await provider({}, { clock: () => now });
    const first = await tokens.getToken();
    now += 3600_000 - 50_000; // inside the margin, not expired
    simulator.failNext("token", 100, 503, { retryAfterSec: 30 });
    for (let call = 0; call < 10; call++) expect(await tokens.getToken()).toBe(first);
    await waitFor(() => simulator.stats().statuses.token?.["503"] === 1, "the failed refresh");
    // A warning that says nothing is affected yet, not an error that pages someone.
    const failedLines = () =>
      logs.lines().filter((line) => line.code === "finapi_token_unavailable");
    await waitFor(() => failedLines().length > 0, "the failed refresh logged");
    const failed = failedLines();
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({
      level: 40,
      currentTokenValidUntil: new Date(1_000_000 + 3600_000).toISOString(),
    });
    expect(String(failed[0]?.msg)).toMatch(/the current token is still used until it expires/);
    for (let call = 0; call < 10; call++) expect(await tokens.getToken()).toBe(first);
    expect(simulator.stats().calls.token).toBe(2);
    now += 31_000; // Retry-After has passed: one more try
    expect(await tokens.getToken()).toBe(first);
    await waitFor(() => simulator.stats().calls.token === 3, "the next refresh");
  });

  it("logs a token failure retrying can mend as a warning, one it cannot as an error", async () => {
    const { tokens, simulator, logs } = await provider();
    const levelOf = () =>
      logs
        .lines()
        .filter((line) => String(line.code ?? "").startsWith("finapi_"))
        .map((line) => line.level);
    // A 503 the jobs wait out, each saying so.
    simulator.failNext("token", 1, 503);
    await expect(tokens.getToken()).rejects.toMatchObject({ retryable: true });
    expect(levelOf()).toEqual([40]);
    // Refused credentials: every job dies until someone fixes them.
    simulator.failNext("token", 1, 401);
    await expect(tokens.getToken()).rejects.toMatchObject({ retryable: false });
    expect(levelOf()).toEqual([40, 50]);
  });

  it("answers with the cached token at once while a refresh hangs", async () => {
    let now = 1_000_000;
    const { tokens, simulator } = await provider({}, { clock: () => now });
    const first = await tokens.getToken();
    now += 3600_000 - 50_000;
    simulator.failNext("token", 1, HANG_STATUS);
    const startedAt = performance.now();
    for (let call = 0; call < 5; call++) expect(await tokens.getToken()).toBe(first);
    expect(performance.now() - startedAt).toBeLessThan(500);
    await waitFor(() => simulator.stats().calls.token === 2, "the hanging refresh");
  });

  it("fails fast with finAPI's answer while its Retry-After lasts when there is no token to use", async () => {
    let now = 1_000_000;
    const { tokens, simulator } = await provider({}, { clock: () => now });
    simulator.failNext("token", 1, 503, { retryAfterSec: 30 });
    simulator.failNext("token", 1, 503, { retryAfterSec: 0 });
    const first = await tokens.getToken().catch((error: unknown) => error);
    expect(first).toMatchObject({ code: "finapi_token_unavailable", retryable: true });
    const again = await tokens.getToken().catch((error: unknown) => error);
    // finAPI's answer again, not asked for anew (the clock has not moved: all of the wait is left).
    expect(again).toMatchObject({
      code: "finapi_token_unavailable",
      message: (first as Error).message,
      retryAfterMs: 30_000,
    });
    expect(simulator.stats().calls.token).toBe(1);
    now += 30_000;
    // Retry-After: 0 asks for no wait at all: the next call asks again at once.
    await expect(tokens.getToken()).rejects.toMatchObject({ retryable: true });
    expect(await tokens.getToken()).toEqual(expect.any(String));
    expect(simulator.stats().calls.token).toBe(3);
  });

  it("starts no refresh for a caller that has already stopped, also inside the refresh margin", async () => {
    let now = 1_000_000;
    const { tokens, simulator } = await provider({}, { clock: () => now });
    await tokens.getToken();
    now += 3600_000 - 30_000;
    const stopped = new AbortController();
    stopped.abort(new Error("job stopped"));
    await expect(tokens.getToken(stopped.signal)).rejects.toThrow("job stopped");
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(simulator.stats().calls.token).toBe(1);
  });

  it("gives up on a token URL that answers 200 with a page, showing what answered", async () => {
    const page = await servePage("<html>Gateway login</html>");
    try {
      const tokens = new ClientCredentialsTokenProvider({
        http: createTransport({ timeoutMs: 2000 }).http,
        limits: finapiCallLimits(2000),
        tokenUrl: `${page.url}/oauth/token`,
        clientId: "id",
        clientSecret: "secret",
        refreshMarginMs: 60_000,
        logger: captureLogs().logger,
      });
      const error = await tokens.getToken().catch((thrown: unknown) => thrown);
      expect(error).toMatchObject({ code: "finapi_token_url_wrong", retryable: false });
      expect(String((error as Error).message)).toContain("Gateway login");
      expect((error as ReceiverError).fix).toContain("FINAPI_TOKEN_URL");
    } finally {
      await page.close();
    }
  });
});

/** A token endpoint that answers with `status` and the bodies in turn (the last from then on). */
async function tokenEndpoint(status: number, ...bodies: string[]) {
  const server = await answeringInTurn(bodies.map((body) => ({ status, body })));
  return {
    url: `${server.origin}/api/v2/oauth/token`,
    requests: () => server.requestedAt.length,
    close: server.close,
  };
}

describe("ClientCredentialsTokenProvider against token answers finAPI's simulator does not give", () => {
  let endpoint: Awaited<ReturnType<typeof tokenEndpoint>> | undefined;
  afterEach(async () => {
    await endpoint?.close();
    endpoint = undefined;
  });

  function providerFor(url: string, clock?: () => number) {
    const logs = captureLogs();
    const tokens = new ClientCredentialsTokenProvider({
      http: createTransport({ timeoutMs: 2000 }).http,
      limits: finapiCallLimits(2000),
      tokenUrl: url,
      clientId: "client-id",
      clientSecret: "client-secret-value",
      refreshMarginMs: 60_000,
      logger: logs.logger,
      clock,
    });
    return { tokens, logs };
  }

  it("takes a token without expires_in as valid for an hour (OAuth's usual), not forever", async () => {
    endpoint = await tokenEndpoint(200, '{"access_token":"token-a","token_type":"bearer"}');
    let now = 1_000_000;
    const { tokens } = providerFor(endpoint.url, () => now);
    await tokens.getToken();
    now += 3600_000 - 61_000;
    await tokens.getToken();
    expect(endpoint.requests()).toBe(1);
    now += 2_000; // inside the refresh margin of an hour's token
    await tokens.getToken();
    await waitFor(() => endpoint?.requests() === 2, "the refresh");
  });

  it("takes the same token again with expires_in 0 as one with its last second left, not as one that never expires", async () => {
    // finAPI hands back the token it issued until it expires, with what is left of it.
    endpoint = await tokenEndpoint(
      200,
      '{"access_token":"token-a","token_type":"bearer","expires_in":30}',
      '{"access_token":"token-a","token_type":"bearer","expires_in":0}',
      '{"access_token":"token-b","token_type":"bearer","expires_in":3600}',
    );
    let now = 1_000_000;
    const { tokens } = providerFor(endpoint.url, () => now);
    await tokens.getToken();
    now += 31_000; // past its 30 s
    expect(await tokens.getToken()).toBe("token-a");
    expect(endpoint.requests()).toBe(2);
    // Within that last second it is used, not asked for again and again.
    for (let i = 0; i < 5; i++) await tokens.getToken();
    expect(endpoint.requests()).toBe(2);
    now += 2_000;
    expect(await tokens.getToken()).toBe("token-b");
    expect(endpoint.requests()).toBe(3);
  });

  it('takes expires_in as a numeric string ("3599") as that many seconds', async () => {
    endpoint = await tokenEndpoint(200, '{"access_token":"token-a","expires_in":"3599"}');
    let now = 1_000_000;
    const { tokens } = providerFor(endpoint.url, () => now);
    expect(await tokens.getToken()).toBe("token-a");
    now += 3599_000 - 61_000; // just before the refresh margin
    expect(await tokens.getToken()).toBe("token-a");
    expect(endpoint.requests()).toBe(1);
  });

  it("names expires_in when it is unusable, instead of calling the URL no token endpoint, and shows no token", async () => {
    endpoint = await tokenEndpoint(
      200,
      '{"access_token":"s3cret-token-value","expires_in":"soon"}',
    );
    const { tokens, logs } = providerFor(endpoint.url);
    const error = (await tokens.getToken().catch((thrown: unknown) => thrown)) as ReceiverError;
    expect(error).toMatchObject({ code: "finapi_invalid_response", retryable: false });
    expect(error.message).toContain('expires_in is "soon", not a number of seconds');
    expect(error.message).not.toContain("without an access_token");
    expect(error.describe()).not.toContain("s3cret-token-value");
    expect(logs.text()).not.toContain("s3cret-token-value");
  });

  it("does not show a JSON answer it cannot read (it may hold a credential)", async () => {
    endpoint = await tokenEndpoint(200, '{"token":"s3cret-token-value"}');
    const { tokens, logs } = providerFor(endpoint.url);
    const error = await tokens.getToken().catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(ReceiverError);
    expect((error as ReceiverError).describe()).not.toContain("s3cret-token-value");
    expect(logs.text()).not.toContain("s3cret-token-value");
  });

  it("passes on finAPI's reason for refusing the credentials", async () => {
    endpoint = await tokenEndpoint(
      401,
      '{"error":"invalid_client","error_description":"Bad client credentials"}',
    );
    const { tokens } = providerFor(endpoint.url);
    const error = await tokens.getToken().catch((thrown: unknown) => thrown);
    expect(error).toMatchObject({ code: "finapi_auth_failed", retryable: false });
    expect((error as ReceiverError).describe()).toContain("invalid_client: Bad client credentials");
  });
});

import request from "supertest";
import { afterEach, describe, expect, it } from "vitest";
import { caseIdFor } from "../../src/simulator/data.js";
import {
  createSimulatorApp,
  createSimulatorState,
  type LoggedRequest,
  type RunningSimulator,
  type SimulatorFaults,
  type SimulatorStats,
  startSimulator,
} from "../../src/simulator/server.js";
import { authed, checkUrl, requestToken, tokenOf } from "./helpers.js";

let sim: RunningSimulator | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

function post(s: RunningSimulator, path: string, body?: unknown): Promise<Response> {
  return fetch(`${s.url}/_control/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function stats(s: RunningSimulator): Promise<SimulatorStats> {
  return (await (await fetch(`${s.url}/_control/stats`)).json()) as SimulatorStats;
}

describe("control endpoints", () => {
  it("merges a partial faults update and answers the full faults", async () => {
    sim = await startSimulator({ latencyMs: 3 });
    const res = await post(sim, "faults", { rate5xx: 0.5, accounts: { connections: 4 } });
    expect(res.status).toBe(200);
    const faults = (await res.json()) as SimulatorFaults;
    expect(faults).toMatchObject({
      latencyMs: 3,
      rate5xx: 0.5,
      retryAfterSec: 1,
      tokenLifetimeSec: 3600,
      accounts: { connections: 4, accountsPerConnection: 2, accountsWithoutCaseId: 1 },
    });
  });

  it.each([
    ["a rate above 1", { rate5xx: 2 }],
    ["a negative latency", { latencyMs: -1 }],
    ["a wrong type", { forbidden: "yes" }],
    ["an unknown key", { rate500: 0.1 }],
    ["a fractional seed", { seed: 1.5 }],
    ["a non-object", [1, 2]],
    ["malformed JSON", "{not json"],
  ])("rejects %s with 400", async (_label, body) => {
    sim = await startSimulator();
    const res = await post(sim, "faults", body);
    expect(res.status).toBe(400);
    const answer = (await res.json()) as { errors: { code: string }[] };
    expect(answer.errors[0]?.code).toBe("BAD_REQUEST");
  });

  it("queues failures over HTTP and validates them", async () => {
    sim = await startSimulator();
    const token = await tokenOf(sim);
    const ok = await post(sim, "fail-next", {
      endpoint: "kreditcheck",
      count: 1,
      status: 503,
      retryAfterSec: 2,
    });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ endpoint: "kreditcheck", pending: 1 });
    const failed = await fetch(checkUrl(sim), authed(token));
    expect(failed.status).toBe(503);
    expect(failed.headers.get("retry-after")).toBe("2");
    expect((await fetch(checkUrl(sim), authed(token))).status).toBe(200);

    for (const bad of [
      { endpoint: "nope", count: 1, status: 503 },
      { endpoint: "dac", count: 0, status: 503 },
      { endpoint: "dac", count: 1, status: 200 },
      { endpoint: "dac", count: 1 },
      // A 500 carries no Retry-After: asking for one is a mistake, not silently dropped.
      { endpoint: "dac", count: 1, status: 500, retryAfterSec: 5 },
      { endpoint: "dac", count: 1, status: 429, retryAfterSec: 1e9 },
    ]) {
      expect((await post(sim, "fail-next", bad)).status).toBe(400);
    }
    expect(sim.stats().calls.dac).toBe(0);
    // 429 without retryAfterSec: no Retry-After at all, to test a client's own backoff.
    await post(sim, "fail-next", { endpoint: "kreditcheck", count: 1, status: 429 });
    const bare429 = await fetch(checkUrl(sim), authed(token));
    expect(bare429.status).toBe(429);
    expect(bare429.headers.get("retry-after")).toBeNull();
  });

  it("refuses a body that is not JSON instead of reading it as no change", async () => {
    sim = await startSimulator();
    for (const type of ["application/x-www-form-urlencoded", "text/plain", undefined]) {
      const res = await fetch(`${sim.url}/_control/faults`, {
        method: "POST",
        ...(type ? { headers: { "content-type": type } } : {}),
        body: new TextEncoder().encode('{"rate5xx":1}'),
      });
      expect(res.status).toBe(415);
      const body = (await res.json()) as { errors: { message: string }[]; endpoint: string };
      expect(body.errors[0]?.message).toMatch(/Content-Type: application\/json/);
      expect(body.endpoint).toBe("POST /_control/faults");
    }
    expect(sim.stats().calls).toMatchObject({ dac: 0 });
    expect(
      ((await (await fetch(`${sim.url}/_control/faults`)).json()) as SimulatorFaults).rate5xx,
    ).toBe(0);
    // Controls without a body (revoke, reset) need no content type.
    expect((await fetch(`${sim.url}/_control/reset`, { method: "POST" })).status).toBe(200);
  });

  it("refuses random fault rates that add up to more than 1, merged with the current ones", async () => {
    sim = await startSimulator({ rate5xx: 0.6 });
    const over = await post(sim, "faults", { rate429: 0.5 });
    expect(over.status).toBe(400);
    expect(((await over.json()) as { errors: { message: string }[] }).errors[0]?.message).toMatch(
      /must not exceed 1/,
    );
    const current = (await (await fetch(`${sim.url}/_control/faults`)).json()) as SimulatorFaults;
    expect(current).toMatchObject({ rate5xx: 0.6, rate429: 0 });
    // The same shares, moved within 1, are fine.
    expect((await post(sim, "faults", { rate5xx: 0.5, rate429: 0.5 })).status).toBe(200);
    // A token outage window must be a time a Date can hold, not 1e300.
    expect((await post(sim, "faults", { tokenDownUntil: 1e300 })).status).toBe(400);
    expect((await post(sim, "faults", { tokenDownUntil: 1.5 })).status).toBe(400);
  });

  it("revokes the current token over HTTP, and says when there was none", async () => {
    sim = await startSimulator();
    expect(await (await post(sim, "revoke")).json()).toEqual({ revoked: false });
    const token = await tokenOf(sim);
    const revoked = await post(sim, "revoke");
    expect(revoked.status).toBe(200);
    expect(await revoked.json()).toEqual({ revoked: true });
    expect((await fetch(checkUrl(sim), authed(token))).status).toBe(401);
    expect(await tokenOf(sim)).not.toBe(token);
  });

  it("reset clears counters and the queue and restores the start faults", async () => {
    sim = await startSimulator({ retryAfterSec: 9 });
    const token = await tokenOf(sim);
    await post(sim, "faults", { forbidden: true, retryAfterSec: 2 });
    await post(sim, "fail-next", { endpoint: "kreditcheck", count: 3, status: 500 });
    expect((await fetch(checkUrl(sim), authed(token))).status).toBe(500);
    expect((await stats(sim)).calls.kreditcheck).toBe(1);

    const res = await post(sim, "reset");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ forbidden: false, retryAfterSec: 9 });
    const after = await stats(sim);
    expect(after.calls).toEqual({ token: 0, kreditcheck: 0, dac: 0, account_pdf: 0, dac_zip: 0 });
    expect(after.statuses.kreditcheck).toEqual({});
    expect(after.tokensIssued).toBe(0);
    // The token survives a reset; the remaining queued failures do not.
    expect((await fetch(checkUrl(sim), authed(token))).status).toBe(200);
  });

  it("takes the token endpoint down for N ms over HTTP, then brings it back by itself", async () => {
    sim = await startSimulator();
    const res = await post(sim, "faults", { tokenDownForMs: 300 });
    expect(((await res.json()) as SimulatorFaults).tokenDownUntil).toBeGreaterThan(Date.now());
    const down = await requestToken(sim);
    expect(down.status).toBe(503);
    expect(down.headers.get("retry-after")).toBe("1");
    await new Promise((resolve) => setTimeout(resolve, 350));
    expect((await requestToken(sim)).status).toBe(200);
  });

  it("logs each request with its arrival, answer and Retry-After, over HTTP", async () => {
    sim = await startSimulator();
    const token = await tokenOf(sim);
    sim.failNext("kreditcheck", 1, 429, { retryAfterSec: 3 });
    await fetch(checkUrl(sim), authed(token));
    const log = (await (await fetch(`${sim.url}/_control/requests`)).json()) as LoggedRequest[];
    expect(log.map((entry) => entry.endpoint)).toEqual(["token", "kreditcheck"]);
    const [tokenCall, limited] = log;
    expect(tokenCall).toMatchObject({ status: 200, target: "POST /api/v2/oauth/token" });
    expect(limited).toMatchObject({ status: 429, retryAfterSec: 3 });
    expect(limited?.target).toMatch(/^GET \/processctrl\/api\/v1\/checks\//);
    expect(limited?.answeredAt).toBeGreaterThanOrEqual(limited?.receivedAt ?? Number.NaN);
  });

  it("reports stats over HTTP", async () => {
    sim = await startSimulator();
    await requestToken(sim, { client_secret: "wrong" });
    await requestToken(sim);
    const s = await stats(sim);
    expect(s.calls.token).toBe(2);
    expect(s.statuses.token).toEqual({ "401": 1, "200": 1 });
    expect(s.tokensIssued).toBe(1);
  });
});

describe("createSimulatorApp without a listening server", () => {
  it("works with supertest", async () => {
    const app = createSimulatorApp(createSimulatorState({ clientId: "a", clientSecret: "b" }));
    const tokenRes = await request(app)
      .post("/api/v2/oauth/token")
      .type("form")
      .send({ grant_type: "client_credentials", client_id: "a", client_secret: "b" })
      .expect(200);
    const token = (tokenRes.body as { access_token: string }).access_token;
    await request(app)
      .get(`/di/api/v1/cases/${caseIdFor("abc", 0)}/reports`)
      .set("Authorization", `Bearer ${token}`)
      .set("X-Request-Id", "st-1")
      .expect("X-Request-Id", "st-1")
      .expect(200);
    await request(app).get("/nowhere").expect(404);
  });
});

import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_FAULTS, FaultController } from "../../src/simulator/faults.js";
import {
  type RunningSimulator,
  type SimulatorOptions,
  startSimulator,
} from "../../src/simulator/server.js";
import {
  authed,
  caseUrl,
  checkUrl,
  type ErrorBody,
  issuedCase,
  requestToken,
  tokenOf,
} from "./helpers.js";

const sims: RunningSimulator[] = [];
async function start(options: SimulatorOptions = {}): Promise<RunningSimulator> {
  const sim = await startSimulator(options);
  sims.push(sim);
  return sim;
}
afterEach(async () => {
  await Promise.all(sims.splice(0).map((s) => s.close()));
});

describe("deterministic fail-next queue", () => {
  it("answers 503 with Retry-After the given number of times, then succeeds", async () => {
    const sim = await start();
    const token = await tokenOf(sim);
    sim.failNext("kreditcheck", 2, 503, { retryAfterSec: 7 });
    for (let i = 0; i < 2; i++) {
      const res = await fetch(checkUrl(sim), authed(token));
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toBe("7");
      expect(((await res.json()) as ErrorBody).errors[0]?.type).toBe("TECHNICAL");
    }
    expect((await fetch(checkUrl(sim), authed(token))).status).toBe(200);
    // Other endpoints were never affected.
    expect((await fetch(caseUrl(sim, issuedCase("c")), authed(token))).status).toBe(200);
    expect(sim.stats().statuses.kreditcheck).toEqual({ "503": 2, "200": 1 });
  });

  it("queues entries in order, per endpoint, and omits Retry-After unless asked", async () => {
    const sim = await start();
    const token = await tokenOf(sim);
    sim.failNext("dac", 1, 429);
    sim.failNext("dac", 1, 500);
    const first = await fetch(caseUrl(sim, issuedCase("c")), authed(token));
    expect(first.status).toBe(429);
    expect(first.headers.get("retry-after")).toBeNull();
    expect((await fetch(caseUrl(sim, issuedCase("c")), authed(token))).status).toBe(500);
    expect((await fetch(caseUrl(sim, issuedCase("c")), authed(token))).status).toBe(200);
  });

  it("can fail the token endpoint, also with an HTML gateway error", async () => {
    const sim = await start();
    sim.failNext("token", 1, 502);
    const res = await requestToken(sim);
    expect(res.status).toBe(502);
    expect(res.headers.get("content-type")).toMatch(/text\/html/);
    expect((await requestToken(sim)).status).toBe(200);
  });

  it("resets the connection for status 0: a TCP reset, not a normal close", async () => {
    const sim = await start();
    const token = await tokenOf(sim);
    sim.failNext("kreditcheck", 1, 0);
    await expect(fetch(checkUrl(sim), authed(token))).rejects.toMatchObject({
      cause: { code: "ECONNRESET" },
    });
    expect((await fetch(checkUrl(sim), authed(token))).status).toBe(200);
    expect(sim.stats().statuses.kreditcheck).toEqual({ reset: 1, "200": 1 });
  });

  it("does not count a delayed reset whose client gave up first: that client saw a timeout", async () => {
    const sim = await start({ latencyMs: 400 });
    const token = await tokenOf(sim);
    sim.failNext("dac", 1, 0);
    await expect(
      fetch(caseUrl(sim, issuedCase("c1")), authed(token, {}, AbortSignal.timeout(100))),
    ).rejects.toThrow(/aborted|timeout/i);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(sim.stats().statuses.dac ?? {}).toEqual({});
  });

  it("never answers for status -1, until the client gives up", async () => {
    const sim = await start();
    const token = await tokenOf(sim);
    sim.failNext("account_pdf", 1, -1);
    const started = Date.now();
    await expect(
      fetch(`${checkUrl(sim)}/analysis/account/pdf`, authed(token, {}, AbortSignal.timeout(300))),
    ).rejects.toThrow(/aborted|timeout/i);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(sim.stats().statuses.account_pdf).toEqual({ hang: 1 });
  });

  it("close() ends hanging requests instead of waiting for them", async () => {
    const sim = await start();
    const token = await tokenOf(sim);
    sim.failNext("dac", 1, -1);
    const pending = fetch(caseUrl(sim, issuedCase("c")), authed(token));
    await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    await sim.close();
    await expect(pending).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

describe("configured faults", () => {
  it("answers 403 with the missing scope when forbidden", async () => {
    const sim = await start({ forbidden: true });
    const token = await tokenOf(sim);
    const res = await fetch(caseUrl(sim, issuedCase("c")), authed(token));
    expect(res.status).toBe(403);
    expect(((await res.json()) as ErrorBody).errors[0]).toEqual({
      message: "Missing scope data_intelligence:manager",
      code: "FORBIDDEN",
      type: "BUSINESS",
    });
    // Authentication is checked first: a bad token is still a 401.
    expect((await fetch(caseUrl(sim, issuedCase("c")), authed("nope"))).status).toBe(401);
  });

  it("resets every data request at resetRate 1 but leaves the token endpoint alone", async () => {
    const sim = await start({ resetRate: 1 });
    const token = await tokenOf(sim);
    await expect(fetch(checkUrl(sim), authed(token))).rejects.toThrow();
    expect(sim.stats().statuses.kreditcheck).toEqual({ reset: 1 });
  });

  it("hangs every data request at hangRate 1", async () => {
    const sim = await start({ hangRate: 1 });
    const token = await tokenOf(sim);
    await expect(
      fetch(caseUrl(sim, issuedCase("c")), authed(token, {}, AbortSignal.timeout(200))),
    ).rejects.toThrow();
    expect(sim.stats().statuses.dac).toEqual({ hang: 1 });
  });

  it("answers 429 with Retry-After at rate429 1", async () => {
    const sim = await start({ rate429: 1, retryAfterSec: 3 });
    const token = await tokenOf(sim);
    const res = await fetch(checkUrl(sim), authed(token));
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("3");
  });

  it("replays the same random faults for the same seed", async () => {
    const statuses = async (seed: number): Promise<number[]> => {
      const sim = await start({ rate5xx: 0.3, rate429: 0.2, seed });
      const token = await tokenOf(sim);
      const out: number[] = [];
      for (let i = 0; i < 30; i++) out.push((await fetch(checkUrl(sim), authed(token))).status);
      return out;
    };
    const a = await statuses(42);
    expect(await statuses(42)).toEqual(a);
    expect(await statuses(43)).not.toEqual(a);
    expect(new Set(a)).toEqual(new Set([200, 429, 503]));
  });

  it("adds latency to every response", async () => {
    const sim = await start({ latencyMs: 120 });
    const started = Date.now();
    const token = await tokenOf(sim);
    await fetch(checkUrl(sim), authed(token));
    expect(Date.now() - started).toBeGreaterThanOrEqual(230);
  });

  it("rejects an X-Request-Id longer than 255 characters", async () => {
    const sim = await start();
    const token = await tokenOf(sim);
    const res = await fetch(checkUrl(sim), authed(token, { "x-request-id": "x".repeat(8000) }));
    expect(res.status).toBe(400);
    // Counted and logged, but cut to what finAPI would accept: the bounded logs stay small.
    expect(sim.stats().requestIds).toEqual(["x".repeat(255)]);
    const longUrl = `${checkUrl(sim)}?${"q".repeat(8000)}`;
    await fetch(longUrl, authed(token));
    const logged = sim.requests().map((entry) => [entry.requestId?.length, entry.target.length]);
    expect(logged).toEqual([
      [undefined, expect.any(Number)],
      [255, expect.any(Number)],
      [undefined, 1024],
    ]);
  });
});

describe("FaultController", () => {
  it("slices the random rates so each one is exact", () => {
    const faults = new FaultController({
      ...DEFAULT_FAULTS,
      rate5xx: 0.25,
      rate429: 0.25,
      seed: 7,
    });
    const counts = { ok: 0, s503: 0, s429: 0 };
    for (let i = 0; i < 4000; i++) {
      const d = faults.decide("dac");
      if (!d) counts.ok++;
      else if (d.kind === "status" && d.status === 503) counts.s503++;
      else if (d.kind === "status" && d.status === 429) counts.s429++;
    }
    for (const n of Object.values(counts)) expect(n / 4000).toBeGreaterThan(0.2);
    expect(counts.ok / 4000).toBeGreaterThan(0.45);
    expect(faults.decide("token")).toBeUndefined();
  });

  it("rejects invalid settings and keeps the old ones", () => {
    const faults = new FaultController(DEFAULT_FAULTS);
    expect(() => faults.set({ rate5xx: 1.5 })).toThrow();
    expect(faults.faults.rate5xx).toBe(0);
    expect(faults.set({ accounts: { connections: 1 } }).accounts).toEqual({
      connections: 1,
      accountsPerConnection: 2,
      accountsWithoutCaseId: 1,
    });
  });
});

describe("counters", () => {
  it("counts calls, statuses, request ids and peak concurrency", async () => {
    const sim = await start({ latencyMs: 100 });
    const token = await tokenOf(sim);
    await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        fetch(caseUrl(sim, issuedCase(`c${i}`)), authed(token, { "x-request-id": `rid-${i}` })),
      ),
    );
    await fetch(checkUrl(sim, "pt", "missing-x"), authed(token));
    const stats = sim.stats();
    expect(stats.calls).toEqual({ token: 1, kreditcheck: 1, dac: 5, account_pdf: 0, dac_zip: 0 });
    expect(stats.statuses.dac).toEqual({ "200": 5 });
    expect(stats.statuses.kreditcheck).toEqual({ "404": 1 });
    expect(stats.maxConcurrent.dac).toBe(5);
    expect(stats.maxConcurrent.kreditcheck).toBe(1);
    expect(stats.tokensIssued).toBe(1);
    expect([...stats.requestIds].sort()).toEqual(["rid-0", "rid-1", "rid-2", "rid-3", "rid-4"]);
  });
});

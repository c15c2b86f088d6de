import { afterEach, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";
import { rawPost } from "../support/raw-post.js";
import { simulatorToken } from "../support/simulator-token.js";
import { waitFor } from "../support/wait-for.js";

describe("who may send callbacks", () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  const stored = async () => (await (harness as Harness).service.inbox.list({ limit: 100 })).length;
  const callbackUrl = () => `${harness?.service.url}${harness?.config.http.callbackPath}`;

  it("refuses an address outside ALLOWED_CIDRS with 403, stores nothing and logs the address", async () => {
    harness = await startHarness({
      env: { ALLOWED_CIDRS: "127.0.0.1/32" },
      service: { worker: false },
    });
    const refused = await rawPost(callbackUrl(), JSON.stringify(makeCallback()), {
      localAddress: "127.0.0.2",
    });
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body)).toEqual({ error: "forbidden", details: expect.any(Array) });
    // Whatever follows the path: a broken %-escape where a secret would go is no exception.
    for (const tail of ["/%E0%A4%A", "/x", "/x/y"]) {
      const odd = await rawPost(`${callbackUrl()}${tail}`, JSON.stringify(makeCallback()), {
        localAddress: "127.0.0.2",
      });
      expect(odd.status).toBe(403);
    }
    expect(await stored()).toBe(0);
    expect(harness.logs.lines().find((line) => line.remoteAddress === "127.0.0.2")).toBeDefined();

    const accepted = await rawPost(callbackUrl(), JSON.stringify(makeCallback()), {
      localAddress: "127.0.0.1",
    });
    expect(accepted.status).toBe(202);
    expect(await stored()).toBe(1);
  });

  it("ignores X-Forwarded-For unless TRUST_PROXY is set, so an allowed address cannot be spoofed", async () => {
    harness = await startHarness({
      env: { ALLOWED_CIDRS: "127.0.0.1/32" },
      service: { worker: false },
    });
    const spoofed = await rawPost(callbackUrl(), JSON.stringify(makeCallback()), {
      localAddress: "127.0.0.2",
      headers: { "X-Forwarded-For": "127.0.0.1" },
    });
    expect(spoofed.status).toBe(403);
    expect(await stored()).toBe(0);
    // The refusal says why the header did not count: the usual cause is a forgotten TRUST_PROXY.
    const refusal = harness.logs
      .lines()
      .find((line) => line.msg === "callback refused: address not in ALLOWED_CIDRS");
    expect(refusal).toMatchObject({
      remoteAddress: "127.0.0.2",
      forwardedFor: "127.0.0.1",
      hint: expect.stringMatching(/X-Forwarded-For was ignored.*set TRUST_PROXY/),
    });
  });

  it("believes X-Forwarded-For from a trusted proxy", async () => {
    harness = await startHarness({
      env: { ALLOWED_CIDRS: "198.51.100.0/24", TRUST_PROXY: "127.0.0.1/32" },
      service: { worker: false },
    });
    const viaProxy = (forwardedFor: string) =>
      rawPost(callbackUrl(), JSON.stringify(makeCallback()), {
        localAddress: "127.0.0.1",
        headers: { "X-Forwarded-For": forwardedFor },
      });
    expect((await viaProxy("198.51.100.7")).status).toBe(202);
    expect((await viaProxy("203.0.113.7")).status).toBe(403);
    // The header was believed here: no hint about TRUST_PROXY.
    expect(harness.logs.text()).not.toContain("X-Forwarded-For was ignored");
    expect(harness.logs.text()).not.toContain("TRUST_PROXY is a hop count");
    // A client puts an allowed address in front of its own: the rightmost address the trusted
    // proxy did not add is the client's, whatever stands left of it.
    expect((await viaProxy("198.51.100.7, 203.0.113.9")).status).toBe(403);
    // From an address that is not the trusted proxy, the header counts for nothing.
    const notTheProxy = await rawPost(callbackUrl(), JSON.stringify(makeCallback()), {
      localAddress: "127.0.0.2",
      headers: { "X-Forwarded-For": "198.51.100.7" },
    });
    expect(notTheProxy.status).toBe(403);
  });

  it("warns at start that a hop count believes X-Forwarded-For from anyone who reaches PORT", async () => {
    harness = await startHarness({
      env: { ALLOWED_CIDRS: "198.51.100.0/24", TRUST_PROXY: "1" },
      service: { worker: false },
    });
    // The risk it warns of: a direct sender (no proxy) claims an allowed address.
    const direct = await rawPost(callbackUrl(), JSON.stringify(makeCallback()), {
      localAddress: "127.0.0.1",
      headers: { "X-Forwarded-For": "198.51.100.7" },
    });
    expect(direct.status).toBe(202);
    const warning = harness.logs.lines().find((line) => line.level === 40 && line.trustProxy === 1);
    expect(String(warning?.msg)).toContain("TRUST_PROXY is a hop count");
  });

  it("allows only loopback by default", () => {
    expect(loadConfig({ FINAPI_CLIENT_ID: "a", FINAPI_CLIENT_SECRET: "b" }).http.allowedCidrs).toBe(
      "127.0.0.0/8,::1/128",
    );
  });

  it("refuses to start in production without an explicit ALLOWED_CIDRS", () => {
    const start = () =>
      loadConfig({ NODE_ENV: "production", FINAPI_CLIENT_ID: "a", FINAPI_CLIENT_SECRET: "b" });
    expect(start).toThrow(ConfigError);
    expect(start).toThrow(/ALLOWED_CIDRS/);
    expect(
      loadConfig({
        NODE_ENV: "production",
        ALLOWED_CIDRS: "0.0.0.0/0,::/0",
        FINAPI_CLIENT_ID: "a",
        FINAPI_CLIENT_SECRET: "b",
      }).http.allowedCidrs,
    ).toBe("0.0.0.0/0,::/0");
  });
});

describe("CALLBACK_SECRET", () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it("requires the secret as the last path segment or as the Basic password, and never logs it", async () => {
    harness = await startHarness({ env: { CALLBACK_SECRET: "s3cr3t" } });
    const base = `${harness.service.url}${harness.config.http.callbackPath}`;
    const body = () => JSON.stringify(makeCallback());

    expect((await rawPost(base, body())).status).toBe(401);
    expect((await rawPost(`${base}/wrong`, body())).status).toBe(401);
    const basicWrong = `Basic ${Buffer.from("finapi:nope").toString("base64")}`;
    expect((await rawPost(base, body(), { headers: { Authorization: basicWrong } })).status).toBe(
      401,
    );
    // Bad input behind a wrong secret is still 401: nothing is read before the secret.
    expect((await rawPost(`${base}/wrong`, "{broken")).status).toBe(401);

    const viaPath = makeCallback();
    expect((await rawPost(`${base}/s3cr3t`, JSON.stringify(viaPath))).status).toBe(202);
    const basic = `Basic ${Buffer.from("finapi:s3cr3t").toString("base64")}`;
    expect((await rawPost(base, body(), { headers: { Authorization: basic } })).status).toBe(202);
    // The scheme's name is case-insensitive (RFC 9110 §11.1).
    const lowerCase = basic.replace("Basic", "basic");
    expect((await rawPost(base, body(), { headers: { Authorization: lowerCase } })).status).toBe(
      202,
    );
    // A rejected body on the secret URL is logged with the path redacted, in any letter case.
    expect((await rawPost(`${base}/s3cr3t`, "{broken")).status).toBe(400);
    expect(
      (await rawPost(`${base.toUpperCase().replace("HTTP://", "http://")}/s3cr3t`, "{broken"))
        .status,
    ).toBe(400);
    expect(
      (await rawPost(`${base}/s3cr3t`, JSON.stringify({ pad: "x".repeat(70_000) }))).status,
    ).toBe(413);

    // A stray % after the secret (a typo in the URL registered at finAPI) is a wrong
    // secret: 401, and Express's "Failed to decode param '<segment>'" never reaches the log.
    expect((await rawPost(`${base}/s3cr3t%`, body())).status).toBe(401);
    expect((await rawPost(`${base}/s3cr3t%zz?x=1`, body())).status).toBe(401);

    await harness.waitForBundle(String(viaPath.kreditCheckId));
    // Who probes the secret, and who sends broken callbacks, as the allowlist's 403 says who.
    const lines = harness.logs.lines();
    const refused = lines.filter((line) => String(line.msg).startsWith("callback refused"));
    expect(refused.length).toBeGreaterThanOrEqual(6);
    for (const line of refused) expect(line.remoteAddress).toMatch(/127\.0\.0\.1$/);
    const broken = lines.filter((line) => line.msg === "request rejected: invalid_json");
    expect(broken).toHaveLength(2);
    for (const line of broken) expect(line.remoteAddress).toMatch(/127\.0\.0\.1$/);
    const logs = harness.logs.text();
    expect(logs).toContain("[redacted]");
    expect(logs).not.toContain("s3cr3t");
    expect(logs).not.toContain(harness.simulator.clientSecret);
  });

  it("is not a route when no secret is configured", async () => {
    harness = await startHarness({ service: { worker: false } });
    const response = await rawPost(
      `${harness.service.url}${harness.config.http.callbackPath}/anything`,
      JSON.stringify(makeCallback()),
    );
    expect(response.status).toBe(404);
    // A broken %-escape there too: no route, not a 400 about the escape.
    const broken = await rawPost(
      `${harness.service.url}${harness.config.http.callbackPath}/any%`,
      JSON.stringify(makeCallback()),
    );
    expect(broken.status).toBe(404);
  });
});

describe("the public port", () => {
  it("serves only the callback route, with security headers and without x-powered-by", async () => {
    const harness = await startHarness({ service: { worker: false } });
    try {
      const response = await rawPost(
        `${harness.service.url}${harness.config.http.callbackPath}`,
        JSON.stringify(makeCallback()),
      );
      expect(response.headers["x-powered-by"]).toBeUndefined();
      // The headers OWASP's REST Security Cheat Sheet names for API answers.
      expect(response.headers["x-content-type-options"]).toBe("nosniff");
      expect(response.headers["cache-control"]).toBe("no-store");
      expect(response.headers["content-security-policy"]).toBe(
        "default-src 'none';frame-ancestors 'none'",
      );
      expect(response.headers["x-frame-options"]).toBe("DENY");
      expect(response.headers["strict-transport-security"]).toContain("max-age=");
      expect(response.headers["content-type"]).toBe("application/json; charset=utf-8");
      for (const path of ["/healthz", "/readyz", "/metrics", "/admin/jobs"]) {
        expect((await fetch(`${harness.service.url}${path}`)).status, path).toBe(404);
      }
    } finally {
      await harness.close();
    }
  });
});

describe("secrets in logs", () => {
  it("never writes the client secret or the access token when finAPI cannot be reached", async () => {
    const harness = await startHarness({
      env: { FINAPI_RETRIES: "0", FINAPI_TOKEN_URL: "http://127.0.0.1:1/oauth/token" },
    });
    try {
      await harness.post(makeCallback());
      await waitFor(
        () => harness.logs.text().includes("finAPI token request failed"),
        "a failed token request",
      );
      expect(harness.logs.text()).not.toContain(harness.simulator.clientSecret);
    } finally {
      await harness.close();
    }
    const unreachable = await startHarness({
      env: { FINAPI_RETRIES: "0", FINAPI_PROCESSCTRL_URL: "http://127.0.0.1:1/api/v1" },
    });
    try {
      await unreachable.post(makeCallback());
      await waitFor(
        () => unreachable.logs.text().includes("finAPI call failed"),
        "a failed data call",
      );
      const token = await simulatorToken(unreachable.simulator);
      expect(unreachable.logs.text()).not.toContain(token);
      expect(unreachable.logs.text()).not.toMatch(/Bearer [A-Za-z0-9]/);
    } finally {
      await unreachable.close();
    }
  });

  it("never writes the client secret, an access token or an Authorization header", async () => {
    const harness = await startHarness({ env: { LOG_LEVEL: "trace", FINAPI_RETRIES: "0" } });
    try {
      harness.simulator.failNext("kreditcheck", 1, 401);
      const callback = makeCallback();
      await harness.post(callback, { Authorization: "Bearer caller-supplied-token" });
      await harness.waitForBundle(String(callback.kreditCheckId));
      const token = await simulatorToken(harness.simulator);
      const logs = harness.logs.text();
      expect(logs.length).toBeGreaterThan(1000);
      expect(logs).not.toContain(harness.simulator.clientSecret);
      expect(logs).not.toContain(token);
      expect(logs).not.toContain("caller-supplied-token");
      expect(logs).not.toMatch(/Bearer [A-Za-z0-9]/);
    } finally {
      await harness.close();
    }
  });
});

describe("refusals in kreditcheck_callbacks_received_total", () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  /** The count of one outcome as /metrics says it. */
  const counted = async (outcome: string) => {
    const metrics = await (await fetch(`${harness?.service.adminUrl}/metrics`)).text();
    const pattern = new RegExp(
      `^kreditcheck_callbacks_received_total\\{outcome="${outcome}"\\} (\\d+)$`,
      "m",
    );
    return Number(pattern.exec(metrics)?.[1]);
  };
  const send = async (url: string, method: string) =>
    (
      await fetch(url, {
        method,
        ...(method === "POST"
          ? {
              headers: { "Content-Type": "application/json" },
              body: JSON.stringify(makeCallback()),
            }
          : {}),
      })
    ).status;

  it("counts as forbidden a refused POST to the callback path, not a scanner's GET or a path below it", async () => {
    // Only 127.0.0.2 may call back: this test's requests come from 127.0.0.1.
    harness = await startHarness({
      env: { ALLOWED_CIDRS: "127.0.0.2", CALLBACK_SECRET: "s3cr3t" },
      service: { worker: false },
    });
    const base = `${harness.service.url}${harness.config.http.callbackPath}`;
    // Refused all the same, and logged, but no callback finAPI could have sent.
    for (const method of ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]) {
      expect({ method, status: await send(base, method) }).toEqual({ method, status: 403 });
    }
    expect(await send(`${base}/s3cr3t`, "GET")).toBe(403);
    expect(await send(`${base}/s3cr3t/admin.php`, "POST")).toBe(403);
    expect(await counted("forbidden")).toBe(0);

    expect(await send(base, "POST")).toBe(403);
    expect(await send(`${base}/s3cr3t`, "POST")).toBe(403);
    expect(await send(`${base}/s3cr3t/`, "POST")).toBe(403);
    expect(await counted("forbidden")).toBe(3);
  });

  it("counts as unauthorized a wrong secret on a POST only", async () => {
    harness = await startHarness({
      env: { CALLBACK_SECRET: "s3cr3t" },
      service: { worker: false },
    });
    const base = `${harness.service.url}${harness.config.http.callbackPath}`;
    // A broken %-escape where the secret goes is refused before any route is matched.
    expect(await send(`${base}/s3cr3t%zz`, "GET")).toBe(401);
    expect(await send(`${base}/s3cr3t%zz/more`, "POST")).toBe(401);
    expect(await counted("unauthorized")).toBe(0);

    expect(await send(`${base}/s3cr3t%zz`, "POST")).toBe(401);
    expect(await send(`${base}/wrong`, "POST")).toBe(401);
    expect(await counted("unauthorized")).toBe(2);
  });
});

import { afterEach, describe, expect, it } from "vitest";
import {
  type RunningSimulator,
  type SimulatorOptions,
  startSimulator,
} from "../../src/simulator/server.js";
import { TokenStore } from "../../src/simulator/tokens.js";
import { authed, checkUrl, type ErrorBody, FORM, requestToken, tokenOf } from "./helpers.js";

interface TokenBody {
  access_token: string;
  token_type: string;
  expires_in: number;
  scope: string;
}

let sim: RunningSimulator | undefined;
async function start(options: SimulatorOptions = {}): Promise<RunningSimulator> {
  sim = await startSimulator(options);
  return sim;
}
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

describe("token endpoint", () => {
  it("returns the same token for the same credentials until it expires", async () => {
    const s = await start();
    const first = (await (await requestToken(s)).json()) as TokenBody;
    const second = (await (await requestToken(s)).json()) as TokenBody;
    expect(first).toMatchObject({ token_type: "bearer", scope: "all" });
    expect(first.access_token.length).toBeGreaterThanOrEqual(64);
    expect(first.expires_in).toBe(3600);
    expect(second.access_token).toBe(first.access_token);
    expect(second.expires_in).toBeLessThanOrEqual(3600);
    expect(s.stats().tokensIssued).toBe(1);
  });

  it("mints a new token once the old one has expired, and the old one is refused", async () => {
    const s = await start({ tokenLifetimeSec: 1 });
    const old = await tokenOf(s);
    expect((await fetch(checkUrl(s), authed(old))).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1100));

    const expired = await fetch(checkUrl(s), authed(old));
    expect(expired.status).toBe(401);
    expect(((await expired.json()) as ErrorBody).errors[0]?.code).toBe("UNAUTHORIZED_ACCESS");

    const res = await requestToken(s);
    const fresh = (await res.json()) as TokenBody;
    expect(fresh.access_token).not.toBe(old);
    expect(fresh.expires_in).toBe(1);
    expect((await fetch(checkUrl(s), authed(fresh.access_token))).status).toBe(200);
    expect(s.stats().tokensIssued).toBe(2);
  });

  it("revocation invalidates the token at once and the next request mints a new one", async () => {
    const s = await start();
    const old = await tokenOf(s);
    s.revokeToken();
    const res = await fetch(checkUrl(s), authed(old));
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({
      errors: [{ code: "UNAUTHORIZED_ACCESS", type: "BUSINESS" }],
    });
    const fresh = await tokenOf(s);
    expect(fresh).not.toBe(old);
    expect((await fetch(checkUrl(s), authed(fresh))).status).toBe(200);
  });

  it("answers 401 invalid_client for a wrong secret or client id", async () => {
    const s = await start({ clientId: "me", clientSecret: "pw" });
    const wrong: Record<string, string>[] = [
      { client_secret: "nope" },
      { client_id: "other" },
      { client_secret: "" },
    ];
    for (const overrides of wrong) {
      const res = await requestToken(s, overrides);
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ error: "invalid_client" });
    }
    expect(s.stats().tokensIssued).toBe(0);
    expect(s.stats().statuses.token).toEqual({ "401": 3 });
  });

  it("answers 400 unsupported_grant_type for another grant type", async () => {
    const s = await start();
    const res = await requestToken(s, { grant_type: "password" });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: string; error_description: string };
    expect(body.error).toBe("unsupported_grant_type");
    expect(body.error_description).toMatch(/password/);
  });

  it("answers 400 invalid_request when grant_type is missing (RFC 6749 5.2)", async () => {
    const s = await start();
    const res = await fetch(s.tokenUrl, {
      method: "POST",
      headers: FORM,
      body: new URLSearchParams({ client_id: s.clientId, client_secret: s.clientSecret }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe("invalid_request");
  });

  it("serves the v1 path too and accepts HTTP Basic client authentication", async () => {
    const s = await start();
    const v1 = await requestToken(s, {}, `${s.url}/oauth/token`);
    expect(v1.status).toBe(200);
    const basic = await fetch(s.tokenUrl, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        authorization: `Basic ${Buffer.from(`${s.clientId}:${s.clientSecret}`).toString("base64")}`,
      },
      body: "grant_type=client_credentials",
    });
    expect(basic.status).toBe(200);
    expect(((await basic.json()) as TokenBody).access_token).toBe(
      ((await v1.json()) as TokenBody).access_token,
    );
  });

  it("reports expires_in 0 for tokens that never expire", async () => {
    const s = await start({ tokenLifetimeSec: 0 });
    expect(((await (await requestToken(s)).json()) as TokenBody).expires_in).toBe(0);
  });

  it("is down with 503 and Retry-After until tokenDownUntil", async () => {
    const s = await start({ tokenDownUntil: Date.now() + 5000 });
    const down = await requestToken(s);
    expect(down.status).toBe(503);
    expect(Number(down.headers.get("retry-after"))).toBeGreaterThanOrEqual(4);
    s.setFaults({ tokenDownUntil: 0 });
    expect((await requestToken(s)).status).toBe(200);
  });

  it("refuses data calls without or with an unknown bearer token", async () => {
    const s = await start();
    const none = await fetch(checkUrl(s));
    expect(none.status).toBe(401);
    expect(((await none.json()) as ErrorBody).errors[0]).toMatchObject({
      code: "UNAUTHORIZED_ACCESS",
      type: "BUSINESS",
    });
    expect((await fetch(checkUrl(s), authed("made-up"))).status).toBe(401);
    expect((await fetch(`${s.diUrl}/cases/x/reports`, authed("made-up"))).status).toBe(401);
  });
});

describe("TokenStore", () => {
  it("counts expires_in down, rounding up, and mints anew at expiry", () => {
    let now = 1_000_000;
    const store = new TokenStore(
      () => 3600,
      () => now,
    );
    const first = store.obtain();
    expect(first.expiresIn).toBe(3600);
    now += 3599_500;
    const later = store.obtain();
    expect(later).toEqual({ accessToken: first.accessToken, expiresIn: 1 });
    expect(store.check(first.accessToken)).toEqual({ ok: true });
    now += 500;
    expect(store.check(first.accessToken).ok).toBe(false);
    const next = store.obtain();
    expect(next.accessToken).not.toBe(first.accessToken);
    expect(store.issuedCount).toBe(2);
  });

  it("applies a changed lifetime to the token already issued", () => {
    let lifetime = 3600;
    let now = 0;
    const store = new TokenStore(
      () => lifetime,
      () => now,
    );
    const { accessToken } = store.obtain();
    now = 10_000;
    lifetime = 5;
    expect(store.check(accessToken).ok).toBe(false);
  });
});

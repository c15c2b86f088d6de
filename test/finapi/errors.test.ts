import { createServer } from "node:http";
import type { Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { errorForStatus, networkError, tokenError } from "../../src/finapi/errors.js";
import { createTransport } from "../../src/http-transport.js";

const context = { requestId: "r-1" };

/** What a call to `url` throws when it goes through `proxy` (as HTTPS_PROXY sets it). */
async function failureThrough(
  proxy: { url: string; variable: string },
  url: string,
): Promise<unknown> {
  const { http, close } = createTransport({
    timeoutMs: 2000,
    proxies: { http: undefined, https: proxy, all: undefined, noProxy: undefined },
  });
  const failure = await http.get(url).then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  await close();
  return failure;
}

/**
 * Which answers a job retries and which end it at once: a retryable one marked permanent
 * kills a check that the next attempt would have fetched (a single 500 from finAPI).
 */
describe("finAPI answers: retried or final", () => {
  it.each([
    [400, "finapi_rejected", false],
    [401, "finapi_unauthorized", true],
    [403, "finapi_forbidden", false],
    [404, "finapi_not_found", false],
    [408, "finapi_unavailable", true],
    [409, "finapi_rejected", false],
    [422, "finapi_rejected", false],
    [429, "finapi_rate_limited", true],
    [500, "finapi_unavailable", true],
    [502, "finapi_unavailable", true],
    [503, "finapi_unavailable", true],
    [504, "finapi_unavailable", true],
  ] as const)("HTTP %i is %s, retryable: %s", (status, code, retryable) => {
    const error = errorForStatus({ ...context, endpoint: "kreditcheck", status });
    expect({ code: error.code, retryable: error.retryable }).toEqual({ code, retryable });
  });
});

/** What an operator reads in a job's last error: the fix names the setting to check. */
describe("finAPI errors name what to check", () => {
  it("a 404 names the URL variable of its endpoint, with the path that URL ends in", () => {
    const dac = errorForStatus({ ...context, endpoint: "dac", status: 404 });
    expect(dac.code).toBe("finapi_not_found");
    expect(dac.fix).toContain("FINAPI_DI_URL");
    expect(dac.fix).toContain("…/api/v1");
    expect(errorForStatus({ ...context, endpoint: "kreditcheck", status: 404 }).fix).toContain(
      "FINAPI_PROCESSCTRL_URL",
    );
  });

  it("a document's 404 is a missing document, not a wrong URL", () => {
    const fix = errorForStatus({ ...context, endpoint: "dac_zip", status: 404 }).fix;
    expect(fix).toContain("FETCH_DOCUMENTS");
    expect(fix).not.toContain("FINAPI_PROCESSCTRL_URL");
  });

  it("an unreachable token endpoint names FINAPI_TOKEN_URL and the token path", () => {
    const error = networkError({ ...context, endpoint: "token" }, new Error("ECONNREFUSED"), false);
    expect(error.retryable).toBe(true);
    expect(error.fix).toBe(
      "If this keeps happening, check that this machine can reach finAPI (DNS, a firewall; calls that must go through a proxy need HTTPS_PROXY), and check that FINAPI_TOKEN_URL points at the finAPI environment (sandbox or live) your client credentials are for, including the path (…/api/v2/oauth/token).",
    );
    // A data call: the callback said which environment.
    expect(
      networkError({ ...context, endpoint: "dac" }, new Error("ENOTFOUND"), false).fix,
    ).toMatch(
      /check that FINAPI_DI_URL points at the finAPI environment \(sandbox or live\) the callback came from/,
    );
  });

  it("a call that failed through a proxy names the proxy's variable, not only the URL's", async () => {
    // Port 1: nothing listens there, and no other test can start listening there meanwhile.
    const deadProxy = "http://127.0.0.1:1";
    const failure = await failureThrough(
      { url: deadProxy, variable: "https_proxy" },
      "https://token.finapi.invalid/api/v2/oauth/token",
    );
    const error = networkError({ ...context, endpoint: "token" }, failure, false);
    expect(error.message).toMatch(
      /^finAPI could not be reached through the proxy in https_proxy: /,
    );
    expect(error.fix).toMatch(/check that the proxy in https_proxy is up.*FINAPI_TOKEN_URL/);
    const timedOut = networkError({ ...context, endpoint: "dac" }, failure, true);
    expect(timedOut.fix).toBe(
      "If every call times out, raise FINAPI_TIMEOUT_MS or check FINAPI_DI_URL and https_proxy.",
    );
  });

  it("a proxy that asks for credentials (407 to CONNECT) is named with what to put in its variable", async () => {
    const proxy = createServer();
    proxy.on("connect", (_req, socket: Socket) => {
      socket.end(
        "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n",
      );
    });
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    const { port } = proxy.address() as { port: number };
    const failure = await failureThrough(
      { url: `http://127.0.0.1:${port}`, variable: "HTTPS_PROXY" },
      "https://di.finapi.invalid/api/v1/cases/c/reports",
    );
    proxy.close();
    const error = networkError({ ...context, endpoint: "dac" }, failure, false);
    expect(error.message).toMatch(/through the proxy in HTTPS_PROXY: .*407/);
    expect(error.fix).toMatch(/^The proxy in HTTPS_PROXY asks for credentials.*user:password/);
    expect(error.retryable).toBe(true);
  });

  it("a token endpoint that is not one (404, 405, a redirect) is a wrong URL, not bad credentials", () => {
    for (const status of [301, 308, 404, 405]) {
      const error = tokenError({ ...context, endpoint: "token", status });
      expect(error.code, String(status)).toBe("finapi_token_url_wrong");
      expect(error.retryable).toBe(false);
    }
    expect(tokenError({ ...context, endpoint: "token", status: 401 }).code).toBe(
      "finapi_auth_failed",
    );
  });
});

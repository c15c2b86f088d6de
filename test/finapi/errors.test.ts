import { describe, expect, it } from "vitest";
import { errorForStatus, networkError, tokenError } from "../../src/finapi/errors.js";

const context = { requestId: "r-1" };

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
    expect(error.fix).toContain("FINAPI_TOKEN_URL");
    expect(error.fix).toContain("…/api/v2/oauth/token");
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

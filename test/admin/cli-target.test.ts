import { describe, expect, it } from "vitest";
import { cliTarget } from "../../src/admin/cli-target.js";

describe("where npm run cli looks for the admin API", () => {
  it("reads ADMIN_HOST and ADMIN_PORT as the service does, empty values as unset", () => {
    const url = (env: Record<string, string>) => cliTarget(env).adminUrl;
    expect(url({})).toBe("http://127.0.0.1:9090");
    expect(url({ ADMIN_URL: "", ADMIN_HOST: " ", ADMIN_PORT: "" })).toBe("http://127.0.0.1:9090");
    expect(url({ ADMIN_PORT: "9191" })).toBe("http://127.0.0.1:9191");
    // A wildcard listen address is reached on loopback.
    expect(url({ ADMIN_HOST: "0.0.0.0" })).toBe("http://127.0.0.1:9090");
    expect(url({ ADMIN_HOST: "::" })).toBe("http://127.0.0.1:9090");
    // An IPv6 literal, bare or bracketed, goes into the URL bracketed.
    expect(url({ ADMIN_HOST: "::1", ADMIN_PORT: "9191" })).toBe("http://[::1]:9191");
    expect(url({ ADMIN_HOST: "[::1]" })).toBe("http://[::1]:9090");
    expect(url({ ADMIN_HOST: "10.0.0.5" })).toBe("http://10.0.0.5:9090");
  });

  it("prefers --admin-url, then ADMIN_URL (without trailing slashes); the token likewise", () => {
    const env = { ADMIN_URL: "http://admin.internal:9000/ ", ADMIN_TOKEN: " from-env-token " };
    expect(cliTarget(env)).toEqual({
      adminUrl: "http://admin.internal:9000",
      token: "from-env-token",
    });
    expect(cliTarget(env, { adminUrl: "http://flag:1//", token: "from-flag" })).toEqual({
      adminUrl: "http://flag:1",
      token: "from-flag",
    });
    expect(cliTarget({ ADMIN_TOKEN: "" }).token).toBeUndefined();
  });
});

import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { AdminTargetError, cliTarget } from "../../src/admin/cli-target.js";
import { freePort } from "../support/child-service.js";

const run = promisify(execFile);

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

  it("names an ADMIN_PORT that is no port, instead of asking whether the service runs", () => {
    for (const port of ["abc", "70000", "0", "9090x"]) {
      expect(() => cliTarget({ ADMIN_PORT: port })).toThrow(
        new AdminTargetError(
          `ADMIN_PORT=${port} is not a port the admin API can be reached on (1-65535); or give ADMIN_URL`,
        ),
      );
    }
  });

  it("prefers --admin-url, then ADMIN_URL (without trailing slashes); the token likewise", () => {
    const env = { ADMIN_URL: "http://admin.internal:9000/ ", ADMIN_TOKEN: " from-env-token " };
    expect(cliTarget(env)).toEqual({
      adminUrl: "http://admin.internal:9000",
      token: "from-env-token",
      source: "ADMIN_URL",
    });
    expect(cliTarget(env, { adminUrl: "http://flag:1//", token: "from-flag" })).toEqual({
      adminUrl: "http://flag:1",
      token: "from-flag",
      source: "--admin-url",
    });
    expect(cliTarget({ ADMIN_PORT: "9191" }).source).toBe("ADMIN_HOST/ADMIN_PORT");
    expect(cliTarget({ ADMIN_TOKEN: "" }).token).toBeUndefined();
  });
});

describe("an ADMIN_URL or --admin-url the CLI cannot use", () => {
  const refusal = (env: Record<string, string>, adminUrl?: string): AdminTargetError => {
    try {
      cliTarget(env, { adminUrl });
    } catch (error) {
      if (error instanceof AdminTargetError) return error;
      throw error;
    }
    throw new Error("expected an AdminTargetError");
  };

  it("refuses a user name or password (it would be printed), naming the setting, not the password", () => {
    const fromEnv = refusal({ ADMIN_URL: "http://ops:hunter2-pw@127.0.0.1:9090" });
    expect(fromEnv.message).toMatch(
      /^ADMIN_URL must not contain a user name or password.*ADMIN_TOKEN/,
    );
    expect(fromEnv.message).not.toContain("hunter2-pw");
    const fromFlag = refusal({ ADMIN_URL: "http://ok:9090" }, "http://:hunter2-pw@admin:9090");
    expect(fromFlag.message).toMatch(/^--admin-url must not contain a user name or password/);
    expect(fromFlag.message).not.toContain("hunter2-pw");
  });

  it("refuses what is no http(s) base URL, without repeating it", () => {
    expect(refusal({ ADMIN_URL: "admin:9090" }).message).toMatch(
      /^ADMIN_URL must be an http\(s\) URL/,
    );
    expect(refusal({ ADMIN_URL: "http://[::1" }).message).toMatch(/^ADMIN_URL is not a URL/);
    expect(refusal({}, "http://admin:9090/?token=s3cret").message).toMatch(
      /^--admin-url must be the admin API's base URL, without \?query/,
    );
  });
});

describe("npm run cli when the admin API cannot be reached", () => {
  /** The CLI's exit code and stderr, with a clean environment and no .env file in reach. */
  async function cliFails(env: Record<string, string>, ...args: string[]) {
    const cli = new URL("../../src/cli.ts", import.meta.url).pathname;
    const failed = await run(process.execPath, ["--import", "tsx", cli, "jobs", ...args], {
      cwd: new URL(".", import.meta.url).pathname,
      env: { PATH: process.env.PATH ?? "", ...env },
    }).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );
    expect(failed).toBeDefined();
    return failed as { code: number; stderr: string };
  }

  it("names the setting that chose the address and the error code, each once", async () => {
    const port = await freePort();
    const viaEnv = await cliFails({ ADMIN_URL: `http://127.0.0.1:${port}/` });
    expect(viaEnv.code).toBe(2);
    expect(viaEnv.stderr.trim()).toBe(
      `kreditcheck-receiver cli: cannot reach the admin API at http://127.0.0.1:${port} (ECONNREFUSED): is the service running, and is ADMIN_URL right?`,
    );
    const viaFlag = await cliFails({}, "--admin-url", `http://127.0.0.1:${port}`);
    expect(viaFlag.stderr).toContain(
      "(ECONNREFUSED): is the service running, and is --admin-url right?",
    );
    const viaPort = await cliFails({ ADMIN_PORT: String(port) });
    expect(viaPort.stderr).toContain(
      `http://127.0.0.1:${port} (ECONNREFUSED): is the service running, and is ADMIN_HOST/ADMIN_PORT right?`,
    );
  }, 20_000);

  it("refuses an ADMIN_URL with a password before calling, and never prints it", async () => {
    const port = await freePort();
    const refused = await cliFails({ ADMIN_URL: `http://ops:hunter2-pw@127.0.0.1:${port}` });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("ADMIN_URL must not contain a user name or password");
    expect(refused.stderr).not.toContain("hunter2-pw");
  }, 20_000);
});

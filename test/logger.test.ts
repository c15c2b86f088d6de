import { execFile } from "node:child_process";
import { hostname } from "node:os";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { captureLogs } from "./support/log-capture.js";

/** Builds `{a: {b: value}}` from "a.b". */
function nested(path: string, value: string): Record<string, unknown> {
  return path
    .split(".")
    .reverse()
    .reduce<unknown>((inner, key) => ({ [key]: inner }), value) as Record<string, unknown>;
}

/**
 * Where a secret can sit in a log line: written out here, not read from the logger's own
 * list, so that a path dropped from that list fails its test instead of vanishing from it.
 */
const SECRET_PATHS = [
  "clientSecret",
  "client_secret",
  "accessToken",
  "access_token",
  "refresh_token",
  "token",
  "authorization",
  "Authorization",
  "password",
  "secret",
  "callbackSecret",
  "headers.authorization",
  "headers.Authorization",
  "headers.cookie",
  "req.headers.authorization",
  "req.headers.cookie",
  "config.finapi.clientSecret",
  "config.http.callbackSecret",
  "finapi.clientSecret",
  "http.callbackSecret",
];

describe("the root logger", () => {
  it.each(SECRET_PATHS)("censors %s in a log line and in a child's bindings", (path) => {
    const logs = captureLogs();
    logs.logger.info(nested(path, "super-secret-value"), "line");
    logs.logger.child(nested(path, "bound-secret-value")).info("child line");
    expect(logs.text()).not.toContain("secret-value");
    expect(logs.text()).toContain("[redacted]");
  });

  it("names the replica on every line: service, host and process", () => {
    const logs = captureLogs();
    logs.logger.child({ component: "worker" }).info("line");
    expect(logs.lines()[0]).toMatchObject({
      service: "kreditcheck-receiver",
      hostname: hostname(),
      pid: process.pid,
    });
  });

  it("stamps each line with the ISO time of its millisecond, not of an earlier one", async () => {
    const logs = captureLogs();
    const before = Date.now();
    logs.logger.info("first");
    await new Promise((resolve) => setTimeout(resolve, 5));
    const later = Date.now();
    logs.logger.info("second, later");
    const times = logs.lines().map((line) => Date.parse(String(line.time)));
    expect(String(logs.lines()[0]?.time)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(times[0]).toBeGreaterThanOrEqual(before);
    expect(times[1]).toBeGreaterThanOrEqual(later);
  });

  it("keeps only safe fields of an error, at every depth of its cause", () => {
    const logs = captureLogs();
    const cause = Object.assign(new Error("socket hang up"), {
      config: { data: "client_secret=abc123", headers: { Authorization: "Bearer tok" } },
    });
    logs.logger.error({ err: new Error("finAPI call failed", { cause }) }, "failed");
    const text = logs.text();
    expect(text).toContain("socket hang up");
    expect(text).not.toContain("abc123");
    expect(text).not.toContain("Bearer tok");
  });

  it("writes LOG_PRETTY's lines without colour codes into a pipe, still redacted", async () => {
    const script = `import { createLogger } from "./src/logger.ts";
      createLogger({ level: "info", pretty: true }).info({ clientSecret: "s3cret" }, "pretty line");`;
    const pretty = async (env: Record<string, string>) => {
      // What colorette reads besides the terminal: none of it from the test's own run.
      const inherited = { ...process.env };
      for (const name of ["NO_COLOR", "FORCE_COLOR", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI"]) {
        delete inherited[name];
      }
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ["--import", "tsx", "--input-type=module", "-e", script],
        { env: { ...inherited, ...env } },
      );
      return stdout;
    };
    const piped = await pretty({});
    expect(piped).toContain("pretty line");
    expect(piped).toContain("[redacted]");
    expect(piped).not.toContain("s3cret");
    expect(piped).not.toContain("\u001b[");
    // Asked for explicitly, colours come through a pipe too.
    expect(await pretty({ FORCE_COLOR: "1" })).toContain("\u001b[");
  });
});

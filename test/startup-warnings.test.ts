import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";
import { warnAboutSettings } from "../src/startup-warnings.js";
import { captureLogs } from "./support/log-capture.js";

const credentials = { FINAPI_CLIENT_ID: "id", FINAPI_CLIENT_SECRET: "secret" };

/** The warnings about sink settings that start-up logs for these settings. */
function warningsFor(env: Record<string, string>): string[] {
  const logs = captureLogs();
  warnAboutSettings(loadConfig({ ...credentials, ...env }), logs.logger);
  return logs
    .lines()
    .filter((line) => line.level === 40)
    .map((line) => String(line.msg))
    .filter((message) => message.includes("SINKS"));
}

describe("start-up warnings", () => {
  it("names a sink's settings when SINKS does not name the sink, so they are not silently unused", () => {
    const warnings = warningsFor({
      HTTP_SINK_URL: "http://127.0.0.1:3450/hook",
      HTTP_SINK_SECRET: "abcdefghijklmnopqrstu",
      POSTGRES_SINK_URL: "postgres://u@db/kc",
    });
    expect(warnings).toContain(
      "HTTP_SINK_URL, HTTP_SINK_SECRET are set but SINKS does not name http: not used; add http to SINKS (a comma list) if bundles should go there",
    );
    expect(warnings).toContain(
      "POSTGRES_SINK_URL is set but SINKS does not name postgres: not used; add postgres to SINKS (a comma list) if bundles should go there",
    );
    // A module sink gets the whole config: it may be the one that reads them.
    expect(
      warningsFor({ SINKS: "module:./audit.mjs", HTTP_SINK_URL: "http://127.0.0.1:3450/hook" }),
    ).toEqual([
      "HTTP_SINK_URL is set but SINKS does not name http: not used by a built-in sink; add http to SINKS (a comma list) if bundles should go there",
    ]);
    // MODULE_SINK_TIMEOUT_MS bounds module sinks only.
    expect(warningsFor({ MODULE_SINK_TIMEOUT_MS: "90000" })).toEqual([
      "MODULE_SINK_TIMEOUT_MS is set but SINKS does not name module:<path>: not used; add module:<path> to SINKS (a comma list) if bundles should go there",
    ]);
    expect(warningsFor({ SINKS: "module:./audit.mjs", MODULE_SINK_TIMEOUT_MS: "90000" })).toEqual(
      [],
    );
  });

  it("says nothing about FILE_SINK_DIR, which the Docker image sets for every container", () => {
    const dockerfile = readFileSync(new URL("../Dockerfile", import.meta.url), "utf8");
    const fileSinkDir = /^\s*(?:ENV\s+)?FILE_SINK_DIR=(\S+)/m.exec(dockerfile)?.[1];
    expect(fileSinkDir).toBeDefined();
    expect(warningsFor({ SINKS: "stdout", FILE_SINK_DIR: String(fileSinkDir) })).toEqual([]);
  });

  it("says nothing about the settings of sinks that SINKS names, nor about empty ones", () => {
    expect(
      warningsFor({
        SINKS: "file,http",
        FILE_SINK_DIR: "/srv/results",
        HTTP_SINK_URL: "http://127.0.0.1:3450/hook",
        HTTP_SINK_SECRET: "abcdefghijklmnopqrstu",
        POSTGRES_SINK_URL: " ",
      }),
    ).toEqual([]);
  });

  it("names a variable that nothing reads but is a letter or two from one, and what it meant", () => {
    const logs = captureLogs();
    const environment = {
      ...credentials,
      SINK: "stdout",
      FILE_SINK_DIRS: "/srv/results",
      log_level: "debug",
      STORE_URL: "sqlite:./data/inbox.db",
      STORE_URI: "sqlite:./elsewhere.db",
      // A duration without its unit: three edits away, the likeliest slip of all.
      SHUTDOWN_TIMEOUT: "20000",
      // Set on every machine or container, and near a name of ours: not typos.
      HOME: "/root",
      PATH: "/usr/bin",
      HOSTNAME: "kcr-1",
      PGPORT: "5432",
      PGHOST: "db",
      NODE_VERSION: "24.1.0",
      ADMIN_URL: "http://127.0.0.1:9090",
      https_proxy: "http://proxy.internal:3128",
    };
    warnAboutSettings(loadConfig(environment), logs.logger);
    const warnings = logs
      .lines()
      .filter((line) => line.level === 40 && String(line.msg).includes("no variable of that name"))
      .map((line) => String(line.msg));
    expect(warnings).toEqual([
      "SINK is set, but no variable of that name is read: did you mean SINKS? SINKS keeps its default",
      "FILE_SINK_DIRS is set, but no variable of that name is read: did you mean FILE_SINK_DIR? FILE_SINK_DIR keeps its default",
      "log_level is set, but no variable of that name is read: did you mean LOG_LEVEL? LOG_LEVEL keeps its default",
      "STORE_URI is set, but no variable of that name is read: did you mean STORE_URL? STORE_URL is set too, and is what applies",
      "SHUTDOWN_TIMEOUT is set, but no variable of that name is read: did you mean SHUTDOWN_TIMEOUT_MS? SHUTDOWN_TIMEOUT_MS keeps its default",
    ]);
  });
});

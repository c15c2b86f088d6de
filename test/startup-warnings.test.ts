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
});

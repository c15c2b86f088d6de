import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, startHarness } from "./support/harness.js";

/**
 * No Docker engine here, so the image cannot be built; its HEALTHCHECK is a plain node
 * command, and that command is run as it is against the real admin server.
 */
async function healthcheckCommand(): Promise<string[]> {
  const dockerfile = await readFile(new URL("../Dockerfile", import.meta.url), "utf8");
  const match = /^HEALTHCHECK[^\n]*\\\n\s*CMD (\[.*\])$/m.exec(dockerfile);
  if (!match?.[1]) throw new Error("no HEALTHCHECK ... CMD [...] in the Dockerfile");
  return JSON.parse(match[1]) as string[];
}

async function probe(env: Record<string, string>): Promise<number> {
  const [command, ...args] = await healthcheckCommand();
  expect(command).toBe("node");
  try {
    await promisify(execFile)(process.execPath, args, {
      env: { PATH: process.env.PATH ?? "", ...env },
      timeout: 10_000,
    });
    return 0;
  } catch (error) {
    return (error as { code?: number }).code ?? -1;
  }
}

describe("the Dockerfile's HEALTHCHECK", () => {
  let harness: Harness;
  let adminPort: string;
  beforeAll(async () => {
    harness = await startHarness();
    adminPort = new URL(harness.service.adminUrl).port;
  });
  afterAll(async () => {
    await harness.close();
  });

  it("passes against a running service, on the default and on a wildcard ADMIN_HOST", async () => {
    expect(await probe({ ADMIN_PORT: adminPort })).toBe(0);
    expect(await probe({ ADMIN_PORT: adminPort, ADMIN_HOST: "0.0.0.0" })).toBe(0);
    expect(await probe({ ADMIN_PORT: adminPort, ADMIN_HOST: "127.0.0.1" })).toBe(0);
  });

  it("fails when nothing answers on ADMIN_HOST:ADMIN_PORT", async () => {
    // The admin server listens on 127.0.0.1 only: another loopback address gets no answer.
    expect(await probe({ ADMIN_PORT: adminPort, ADMIN_HOST: "127.0.0.2" })).toBe(1);
    expect(await probe({ ADMIN_PORT: "1" })).toBe(1);
  });
});

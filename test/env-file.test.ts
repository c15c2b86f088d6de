import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadEnvFile } from "../src/env-file.js";

describe(".env, as the service, its CLI and the health check read it", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kcr-env-file-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("fills what the environment leaves unset or blank, and keeps what it sets", async () => {
    const path = join(dir, ".env");
    await writeFile(path, "FINAPI_CLIENT_ID=from-file\nPORT=4000\nLOG_LEVEL=debug\n");
    // compose's `FINAPI_CLIENT_ID=${FINAPI_CLIENT_ID}` with nothing to put there: blank.
    const env: Record<string, string | undefined> = { FINAPI_CLIENT_ID: " ", PORT: "3000" };
    expect(loadEnvFile(env, path)).toBeUndefined();
    expect(env).toEqual({ FINAPI_CLIENT_ID: "from-file", PORT: "3000", LOG_LEVEL: "debug" });
  });

  it("reads the file DOTENV_CONFIG_PATH names instead, as dotenv does", async () => {
    const path = join(dir, "service.env");
    await writeFile(path, "PORT=4000\n");
    const env: Record<string, string | undefined> = { DOTENV_CONFIG_PATH: path };
    expect(loadEnvFile(env)).toBeUndefined();
    expect(env.PORT).toBe("4000");
  });

  it("is fine without a .env file", () => {
    const env = {};
    expect(loadEnvFile(env, undefined, join(dir, ".env"))).toBeUndefined();
    expect(env).toEqual({});
  });

  it("stops when the file DOTENV_CONFIG_PATH names is not there, instead of starting on defaults", () => {
    const missing = join(dir, "does-not-exist.env");
    const env: Record<string, string | undefined> = { DOTENV_CONFIG_PATH: missing };
    expect(loadEnvFile(env)).toBe(
      `DOTENV_CONFIG_PATH=${missing}: there is no such file (${missing}): fix the path, or unset DOTENV_CONFIG_PATH to read ./.env`,
    );
  });

  it("stops the service when the file is there but cannot be read, naming it", async () => {
    // Unreadable for root too (tests may run as root, to whom 0600 means nothing).
    await mkdir(join(dir, ".env"));
    const main = fileURLToPath(new URL("../src/main.ts", import.meta.url));
    // tsx by its path: the working folder is the temporary one.
    const tsx = import.meta.resolve("tsx");
    const failed = await promisify(execFile)(process.execPath, ["--import", tsx, main], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? "" },
      timeout: 15_000,
    }).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toContain(
      `kreditcheck-receiver: cannot read .env (${join(dir, ".env")}): it is a folder: put a file there, or remove it`,
    );
    // Not the defaults' complaint, which hid why the settings were not there.
    expect(failed?.stderr).not.toContain("FINAPI_CLIENT_ID is required");
  }, 20_000);
});

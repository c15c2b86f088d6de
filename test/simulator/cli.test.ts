import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { CliError, envName, parseCli, USAGE } from "../../src/simulator/cli-args.js";

describe("parseCli", () => {
  it("reads flags, falls back to SIM_* environment variables, flags winning", () => {
    const result = parseCli(
      ["--port", "8080", "--rate-5xx", "0.1", "--client-id", "x", "--seed=-3"],
      { SIM_PORT: "9999", SIM_LATENCY_MS: "50", SIM_HANG_RATE: "0.2" },
    );
    expect(result).toEqual({
      help: false,
      options: { port: 8080, rate5xx: 0.1, clientId: "x", seed: -3, latencyMs: 50, hangRate: 0.2 },
    });
    expect(envName("token-lifetime-sec")).toBe("SIM_TOKEN_LIFETIME_SEC");
  });

  it("builds the account shape from its three flags", () => {
    const result = parseCli(["--connections", "3"], { SIM_ACCOUNTS_WITHOUT_CASE_ID: "0" });
    expect(result.help === false && result.options.accounts).toEqual({
      connections: 3,
      accountsPerConnection: 2,
      accountsWithoutCaseId: 0,
    });
  });

  it("rejects unknown flags and bad values", () => {
    expect(() => parseCli(["--nope", "1"], {})).toThrow(CliError);
    expect(() => parseCli(["--rate-5xx", "2"], {})).toThrow(CliError);
    expect(() => parseCli(["--port", "abc"], {})).toThrow(CliError);
    expect(() => parseCli([], { SIM_LATENCY_MS: "1.5" })).toThrow(CliError);
  });

  it("reads SIM_* as the service reads its variables: trimmed, empty as unset", () => {
    expect(
      parseCli([], {
        SIM_PORT: "",
        SIM_HOST: " 127.0.0.1 ",
        SIM_RATE_5XX: " 0.5\n",
        SIM_SEED: " ",
      }),
    ).toEqual({ help: false, options: { host: "127.0.0.1", rate5xx: 0.5 } });
    // A bracketed IPv6 literal, as in a URL, is unbracketed for listen().
    expect(parseCli(["--host", "[::1]"], {})).toEqual({ help: false, options: { host: "::1" } });
  });

  it("names the variable when a bad value came from the environment, the flag when from it", () => {
    expect(() => parseCli([], { SIM_PORT: "abc" })).toThrow(/^SIM_PORT: not a number: abc$/);
    expect(() => parseCli([], { SIM_RATE_5XX: "2" })).toThrow(/^SIM_RATE_5XX: must be between/);
    expect(() => parseCli(["--port=-1"], { SIM_PORT: "abc" })).toThrow(
      /^--port: must not be negative$/,
    );
  });

  it("names the flag or variable of a value out of range, instead of a stack trace", () => {
    expect(() => parseCli(["--latency-ms", "700000"], {})).toThrow(/^--latency-ms: Too big/);
    expect(() => parseCli([], { SIM_LATENCY_MS: "700000" })).toThrow(/^SIM_LATENCY_MS: Too big/);
    expect(() => parseCli(["--connections", "1000"], {})).toThrow(/^--connections: Too big/);
    expect(() => parseCli(["--port", "70000"], {})).toThrow(/^--port: must be 0 to 65535$/);
    expect(() => parseCli(["--seed", "99999999999999999999"], {})).toThrow(
      /^--seed: not an integer/,
    );
    expect(() => parseCli(["--rate-5xx", "0.8"], { SIM_RATE_429: "0.8" })).toThrow(
      /--rate-5xx and --rate-429 .*must not exceed 1/,
    );
    // An empty flag value is a mistake: --host "" listened on every interface.
    expect(() => parseCli(["--host", ""], {})).toThrow(/^--host: empty value$/);
    expect(() => parseCli(["--latency-ms="], {})).toThrow(/^--latency-ms: empty value$/);
  });

  it("reads a token outage window relative to start", () => {
    expect(parseCli(["--token-down-ms", "30000"], {})).toEqual({
      help: false,
      options: { tokenDownForMs: 30_000 },
    });
    expect(parseCli([], { SIM_TOKEN_DOWN_MS: "500" })).toEqual({
      help: false,
      options: { tokenDownForMs: 500 },
    });
  });

  it("starts refusing data calls for want of the scope with --forbidden or SIM_FORBIDDEN", () => {
    const forbidden = { help: false, options: { forbidden: true } };
    expect(parseCli(["--forbidden"], {})).toEqual(forbidden);
    expect(parseCli([], { SIM_FORBIDDEN: " Yes " })).toEqual(forbidden);
    expect(parseCli([], { SIM_FORBIDDEN: "0" })).toEqual({
      help: false,
      options: { forbidden: false },
    });
    expect(() => parseCli([], { SIM_FORBIDDEN: "maybe" })).toThrow(
      /^SIM_FORBIDDEN: must be 1\/true\/yes\/on or 0\/false\/no\/off: maybe$/,
    );
  });

  it("recognises --help, and the help says what each option does", () => {
    expect(parseCli(["--help"], {})).toEqual({ help: true });
    const optionLines = USAGE.split("\n").filter((line) => /^ {2}--[a-z]/.test(line));
    expect(optionLines.length).toBeGreaterThan(10);
    // flag, env name, then words: no option is listed bare
    for (const line of optionLines) expect(line).toMatch(/^ {2}--\S+\s+(SIM_\S+\s+)?\S+ \S+/);
  });
});

describe("simulator CLI", () => {
  it("prints its URLs but not the secret, and stops on SIGTERM", async () => {
    const cli = fileURLToPath(new URL("../../src/simulator/cli.ts", import.meta.url));
    const child = spawn(
      process.execPath,
      ["--import", "tsx", cli, "--port", "0", "--client-secret", "top-secret-value"],
      { env: { ...process.env, SIM_CLIENT_ID: "cli-client" }, stdio: ["ignore", "pipe", "pipe"] },
    );
    let out = "";
    child.stderr.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`CLI did not start:\n${out}`)), 8000);
      child.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes("client id")) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const url = /listening on (http:\/\/\S+)/.exec(out)?.[1];
    expect(url).toBeDefined();
    expect(out).toContain(`${url}/api/v2/oauth/token`);
    expect(out).toContain(`${url}/processctrl/api/v1`);
    expect(out).toContain(`${url}/di/api/v1`);
    expect(out).toContain("cli-client");
    expect(out).not.toContain("top-secret-value");
    expect((await fetch(`${url}/_control/stats`)).status).toBe(200);

    const exited = new Promise<number | null>((resolve) =>
      child.once("exit", (code) => resolve(code)),
    );
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  }, 15_000);

  it("ends a bad option's output with what is wrong, not with 30 lines of help", async () => {
    const cli = fileURLToPath(new URL("../../src/simulator/cli.ts", import.meta.url));
    const child = spawn(process.execPath, ["--import", "tsx", cli, "--latency-ms", "soon"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (chunk: Buffer) => {
      err += chunk.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(code).toBe(2);
    expect(err.trim().split("\n")).toEqual([
      "--latency-ms: not a number: soon",
      "(npm run simulator -- --help lists every option)",
    ]);
  }, 15_000);
});

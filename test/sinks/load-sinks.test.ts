import { execFile } from "node:child_process";
import { copyFile, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { closeSinks, loadFailureHint, loadSinks } from "../../src/sinks/load.js";
import type { Bundle, Sink } from "../../src/sinks/sink.js";
import { childEnv } from "../support/child-env.js";
import { NO_FINAPI, serviceEnv } from "../support/child-service.js";
import { captureLogs } from "../support/log-capture.js";

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

const base = { FINAPI_CLIENT_ID: "id", FINAPI_CLIENT_SECRET: "secret", FILE_SINK_DIR: "/tmp/x" };

function sinksFor(names: string) {
  return loadSinks(loadConfig({ ...base, SINKS: names }), captureLogs().logger);
}

describe("SINKS=module:<path>", () => {
  it("loads a factory exported as createSink when there is no default export", async () => {
    const [sink] = await sinksFor("module:test/fixtures/named-export-sink.mjs");
    expect(sink?.name).toBe("named-export");
    const bundle = {
      callback: { processToken: "pt", kreditCheckId: "kc-named", status: "SUCCESSFUL" },
    } as unknown as Bundle;
    await sink?.deliver(bundle, { logger: captureLogs().logger });
    const url = pathToFileURL(resolve("test/fixtures/named-export-sink.mjs")).href;
    const { delivered } = (await import(url)) as { delivered: unknown[] };
    expect(delivered).toEqual([{ kreditCheckId: "kc-named", fileDir: expect.any(String) }]);
  });

  it("stops start-up naming the module when it exports no factory, and what it exports", async () => {
    await expect(sinksFor("module:test/fixtures/not-a-sink.mjs")).rejects.toThrow(
      /^SINKS: module:test\/fixtures\/not-a-sink\.mjs must export a sink factory as default or as createSink; it exports answer \(number\)$/,
    );
  });

  it("stops start-up when the factory's sink has no name", async () => {
    await expect(sinksFor("module:test/fixtures/nameless-sink.mjs")).rejects.toThrow(
      "must return { name, deliver(bundle, ctx) }",
    );
  });

  it("stops start-up when two sinks share a name (a failed one would count as delivered)", async () => {
    await expect(
      sinksFor(
        "module:test/fixtures/named-export-sink.mjs,module:./test/fixtures/named-export-sink.mjs",
      ),
    ).rejects.toThrow(
      'SINKS: module:./test/fixtures/named-export-sink.mjs names its sink "named-export", as module:test/fixtures/named-export-sink.mjs does',
    );
    await expect(sinksFor("file,module:test/fixtures/file-named-sink.mjs")).rejects.toThrow(
      'names its sink "file", as file does',
    );
  });

  it("stops start-up naming the SINKS entry whose factory failed, with the factory's own message", async () => {
    await expect(sinksFor("file,module:./test/fixtures/throwing-sink.mjs")).rejects.toThrow(
      /^SINKS: module:\.\/test\/fixtures\/throwing-sink\.mjs could not start its sink: NEEDS QUEUE_URL$/,
    );
    await expect(sinksFor("module:test/fixtures/rejecting-sink.mjs")).rejects.toThrow(
      /^SINKS: module:test\/fixtures\/rejecting-sink\.mjs could not start its sink: queue at 127\.0\.0\.1:9 refused the connection$/,
    );
  });

  it("stops start-up naming the path when the module cannot be loaded", async () => {
    await expect(sinksFor("file,module:test/fixtures/missing.mjs")).rejects.toThrow(
      /^SINKS: module:test\/fixtures\/missing\.mjs could not be loaded/,
    );
  });

  it.each([
    [
      "does not parse",
      "syntax-error-sink.mjs",
      "Unexpected identifier 'b' (at <fixture>:8: b: 2,)",
    ],
    [
      "imports a name its dependency lacks",
      "missing-export-sink.mjs",
      "The requested module 'node:fs/promises' does not provide an export named 'writeFileAtomically' (at <fixture>:3: import { writeFileAtomically } from \"node:fs/promises\";)",
    ],
  ])(
    "says where a module that %s goes wrong (file:line), as the service started by node",
    async (_what, name, expected) => {
      // A child process: in-process, vitest's own transform would parse the module instead of
      // Node, with a message of its own.
      const dir = await mkdtemp(join(tmpdir(), "kcr-syntax-"));
      try {
        const env = serviceEnv(NO_FINAPI, dir, {
          PORT: "0",
          SINKS: `file,module:./test/fixtures/${name}`,
        });
        const failed = await execFileAsync(process.execPath, ["--import", "tsx", "src/main.ts"], {
          cwd: ROOT,
          env: childEnv({ NODE_ENV: "production", ...env }),
          timeout: 20_000,
        }).then(
          () => ({ code: 0, stderr: "" }),
          (error: { code?: number; stderr?: string }) => error,
        );
        expect(failed.code).toBe(1);
        const fixture = join(ROOT, "test/fixtures", name);
        expect(failed.stderr).toBe(
          `kreditcheck-receiver failed to start: SINKS: module:./test/fixtures/${name} could not be loaded: ${expected.replace("<fixture>", fixture)}\n`,
        );
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );

  describe("as Node itself loads them (the built service, no tsx)", () => {
    // tsx and vitest rewrite import() to unwrap a CommonJS module's `__esModule` default
    // themselves: in-process, and under `npm run dev`, a .cjs that `npm start` refuses loads.
    let app = "";
    beforeAll(async () => {
      // Laid out as the image's /app: package.json ("type": "module"), node_modules, dist/.
      app = await mkdtemp(join(tmpdir(), "kcr-app-"));
      await execFileAsync(
        process.execPath,
        [
          join(ROOT, "node_modules/typescript/bin/tsc"),
          "-p",
          "tsconfig.build.json",
          "--outDir",
          join(app, "dist"),
        ],
        { cwd: ROOT, timeout: 90_000 },
      );
      await copyFile(join(ROOT, "package.json"), join(app, "package.json"));
      await symlink(join(ROOT, "node_modules"), join(app, "node_modules"));
    }, 120_000);
    afterAll(() => rm(app, { recursive: true, force: true }));

    /** Each entry's sink names once delivered to, or its error message, from a child node. */
    async function loadedByNode(...entries: string[]): Promise<unknown[]> {
      const script = `
        const [config, load, ...entries] = process.argv.slice(1);
        const { loadConfig } = await import(config);
        const { loadSinks } = await import(load);
        const { default: pino } = await import("pino");
        const logger = pino({ level: "silent" });
        const base = { FINAPI_CLIENT_ID: "id", FINAPI_CLIENT_SECRET: "secret", FILE_SINK_DIR: "/tmp/x" };
        const bundle = { callback: { processToken: "pt", kreditCheckId: "kc-1", status: "SUCCESSFUL" } };
        for (const SINKS of entries) {
          const result = await loadSinks(loadConfig({ ...base, SINKS }), logger).then(
            async (sinks) => {
              for (const sink of sinks) await sink.deliver(bundle, { logger });
              return sinks.map((sink) => sink.name);
            },
            (error) => error.message,
          );
          console.log(JSON.stringify(result));
        }`;
      const url = (file: string) => pathToFileURL(join(app, "dist", file)).href;
      const { stdout } = await execFileAsync(
        process.execPath,
        ["--input-type=module", "-e", script, url("config.js"), url("sinks/load.js"), ...entries],
        { cwd: ROOT, env: childEnv({}), timeout: 20_000 },
      );
      return stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as unknown);
    }

    it("loads tsc's CommonJS output named .cjs (exports.default beside __esModule), and says what a module exports when no factory is among it", async () => {
      expect(
        await loadedByNode(
          "module:./test/fixtures/tsc-commonjs-sink.cjs",
          "module:test/fixtures/tsc-commonjs-misnamed-sink.cjs",
        ),
      ).toEqual([
        ["tsc-commonjs"],
        "SINKS: module:test/fixtures/tsc-commonjs-misnamed-sink.cjs must export a sink factory as default or as createSink; it exports default (object: makeSink), makeSink (function)",
      ]);
    });
  });

  it("tells how to run a TypeScript module where Node refuses it, and only there", () => {
    // What Node 20 throws for `import("./my-sink.ts")` (Node 22.18+ strips the types).
    const refused = Object.assign(new TypeError('Unknown file extension ".ts"'), {
      code: "ERR_UNKNOWN_FILE_EXTENSION",
    });
    expect(loadFailureHint("./my-sink.ts", refused)).toMatch(
      /compile the sink to an ES module \(rename it \.mts; `npx tsc --module nodenext --target es2022 my-sink\.mts` writes my-sink\.mjs\) and name that file, or run Node 22\.18 or newer/,
    );
    expect(loadFailureHint("sinks/queue.mts", refused)).not.toBe("");
    expect(loadFailureHint("./my-sink.json", refused)).toBe("");
    const missing = Object.assign(new Error("Cannot find module"), {
      code: "ERR_MODULE_NOT_FOUND",
    });
    expect(loadFailureHint("./my-sink.ts", missing)).toBe("");
  });

  it("closes every sink at shutdown even when one's close throws at once instead of rejecting, and says which", async () => {
    const closed: string[] = [];
    const sink = (name: string, close: () => Promise<void>): Sink => ({
      name,
      deliver: async () => undefined,
      close,
    });
    const sinks = [
      sink("throws", () => {
        throw new Error("close threw");
      }),
      sink("async", async () => {
        closed.push("async");
      }),
    ];
    const logs = captureLogs();
    await expect(
      closeSinks(sinks, { timeoutMs: 1000, logger: logs.logger }),
    ).resolves.toBeUndefined();
    expect(closed).toEqual(["async"]);
    // Said, not swallowed: what it holds may stay open until the process ends.
    expect(logs.lines()).toEqual([
      expect.objectContaining({ level: 40, sink: "throws", msg: "sink throws failed to close" }),
    ]);
  });
});

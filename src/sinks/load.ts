import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { settledWithin } from "../abortable.js";
import { type Config, redactUrl } from "../config.js";
import { ReceiverError } from "../errors.js";
import type { Logger } from "../logger.js";
import { FileSink } from "./file.js";
import { HttpSink } from "./http.js";
import { moduleSinkError } from "./module-error.js";
import { PostgresSink } from "./postgres.js";
import type { Sink } from "./sink.js";
import { StdoutSink } from "./stdout.js";

const execFileAsync = promisify(execFile);

/** What a `module:<path>` sink exports: as default, or named `createSink`. */
export type SinkFactory = (config: Config, logger: Logger) => Sink | Promise<Sink>;

/**
 * Builds the sinks named in SINKS, in order (config has checked the names). A sink that
 * cannot be built stops start-up; the ones built before it are closed again.
 */
export async function loadSinks(config: Config, logger: Logger): Promise<Sink[]> {
  const sinks: Sink[] = [];
  /** The SINKS entry that built each sink name so far. */
  const entries = new Map<string, string>();
  try {
    for (const entry of config.sinks.names) {
      const sink = await loadSink(entry, config, logger);
      sinks.push(sink);
      const earlier = entries.get(sink.name);
      if (earlier !== undefined) {
        // A job records which sinks have its bundle by name: two sinks of one name would
        // count as one, and a failed one would never be tried again.
        throw new Error(
          `SINKS: ${entry} names its sink "${sink.name}", as ${earlier} does; delivery is tracked by sink name, so each sink needs a name of its own (change the name its factory returns)`,
        );
      }
      entries.set(sink.name, entry);
    }
  } catch (error) {
    // Start-up failed: closing what was built may not hold up the exit for long either.
    await closeSinks(sinks, { timeoutMs: config.shutdownTimeoutMs, logger });
    throw error;
  }
  return sinks;
}

/** How long closeSinks gives each sink at most, and where it says which one did not close. */
export interface CloseSinksOptions {
  timeoutMs: number;
  logger: Logger;
}

/**
 * Closes every sink that can be closed, all at once; one that fails to close, or does not
 * finish within `timeoutMs`, does not keep the others open. A module sink's close may wait
 * for something that never comes (a flush to a broker that is gone): unbounded, it held up
 * closing the inbox and the ports until main.ts's last-resort exit. Such a sink is named in
 * a warning and left behind; whatever it holds ends with the process.
 */
export async function closeSinks(
  sinks: readonly Sink[],
  { timeoutMs, logger }: CloseSinksOptions,
): Promise<void> {
  await Promise.all(
    sinks.map(async (sink) => {
      if (typeof sink.close !== "function") return;
      let failure: { error: unknown } | undefined;
      // async: a module sink's close that throws at once counts as failed, like one that rejects.
      const closed = (async () => sink.close?.())().then(
        () => undefined,
        (error: unknown) => {
          failure = { error };
        },
      );
      if (!(await settledWithin(closed, timeoutMs))) {
        logger.warn(
          { sink: sink.name, timeoutMs },
          `sink ${sink.name} did not close within ${timeoutMs} ms; carrying on without it (what it holds ends with the process)`,
        );
      } else if (failure) {
        logger.warn({ sink: sink.name, err: failure.error }, `sink ${sink.name} failed to close`);
      }
    }),
  );
}

async function loadSink(name: string, config: Config, logger: Logger): Promise<Sink> {
  const { sinks } = config;
  if (name === "file") return FileSink.open(sinks.fileDir);
  if (name === "stdout") return new StdoutSink();
  if (name === "http" && sinks.http)
    return new HttpSink({
      ...sinks.http,
      // The worker keeps at most twice its concurrency in jobs, fetching or delivering.
      maxConnections: 2 * config.worker.concurrency,
      proxies: config.proxies,
    });
  if (name === "postgres" && sinks.postgres) {
    const target = sinks.postgres;
    // Named by the variable it came from: without POSTGRES_SINK_URL it is STORE_URL's.
    return PostgresSink.open(target).catch((error: unknown) => {
      throw new Error(`${target.variable}=${redactUrl(target.url)}: ${(error as Error).message}`, {
        cause: error,
      });
    });
  }
  if (name.startsWith("module:"))
    return loadModuleSink(name.slice("module:".length), config, logger);
  throw new Error(`SINKS: sink "${name}" is not configured`);
}

async function loadModuleSink(path: string, config: Config, logger: Logger): Promise<Sink> {
  // Resolved against the working directory, as operators write paths in .env.
  const file = resolve(process.cwd(), path);
  let exports: Record<string, unknown>;
  try {
    exports = (await import(pathToFileURL(file).href)) as typeof exports;
  } catch (error) {
    const place = error instanceof SyntaxError ? await syntaxErrorPlace(file, path, error) : "";
    throw new Error(
      `SINKS: module:${path} could not be loaded: ${(error as Error).message}${place}${loadFailureHint(path, error)}`,
      { cause: error },
    );
  }
  const factory = factoryIn(exports);
  if (factory === undefined) {
    throw new Error(
      `SINKS: module:${path} must export a sink factory as default or as createSink; it exports ${exportsOf(exports)}`,
    );
  }
  let sink: Partial<Sink>;
  try {
    sink = await (factory as SinkFactory)(config, logger.child({ sink: path }));
  } catch (error) {
    // Its own words (a setting it misses, a connection refused), and which entry it was.
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`SINKS: module:${path} could not start its sink: ${message}`, {
      cause: error,
    });
  }
  if (typeof sink?.name !== "string" || sink.name === "" || typeof sink.deliver !== "function") {
    throw new Error(`SINKS: module:${path}'s factory must return { name, deliver(bundle, ctx) }`);
  }
  const loaded = sink as Sink;
  const timeoutMs = config.sinks.moduleTimeoutMs;
  return {
    name: loaded.name,
    // Its errors read for retryable, code, fix and retryAfterMs (see moduleSinkError).
    deliver: async (bundle, ctx) => {
      // Bounded as the built-in sinks are: a deliver() that never settles kept its job
      // running under a renewed lease, without a word, and held a worker slot for good.
      const deadline = new AbortController();
      const onJobAbort = () => deadline.abort(ctx.signal?.reason);
      if (ctx.signal?.aborted) onJobAbort();
      else ctx.signal?.addEventListener("abort", onJobAbort, { once: true });
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => {
          const error = moduleTimeoutError(path, timeoutMs);
          // Failed first, then aborted: a module that rejects with the abort's own error
          // (fetch's AbortError) must not stand in for the timeout.
          reject(error);
          deadline.abort(error);
        }, timeoutMs);
      });
      try {
        // async: a deliver() that throws at once fails like one that rejects. A module that
        // ignores the abort is left running; its delivery has failed all the same.
        const delivered = (async () =>
          loaded.deliver(bundle, { ...ctx, signal: deadline.signal }))();
        await Promise.race([delivered, timedOut]);
      } catch (error) {
        throw moduleSinkError(error);
      } finally {
        clearTimeout(timer);
        ctx.signal?.removeEventListener("abort", onJobAbort);
      }
    },
    ...(typeof loaded.close === "function"
      ? { close: () => loaded.close?.() ?? Promise.resolve() }
      : {}),
  };
}

/**
 * The sink factory a module exports: its default or `createSink`, or those of the object a
 * CommonJS module assigns to `module.exports`, which Node's import() hands over as
 * `default`. tsc's CommonJS output (`exports.default = createSink`, beside `__esModule`)
 * arrives as `default.default`; tsx and vitest unwrap that at the import() themselves, so
 * `npm run dev` and the tests loaded a `.cjs` file that `npm start` refused.
 */
function factoryIn(exports: Record<string, unknown>): SinkFactory | undefined {
  const candidates = [exports.default, exports.createSink];
  const moduleExports = exports.default;
  if (typeof moduleExports === "object" && moduleExports !== null) {
    const inner = moduleExports as Record<string, unknown>;
    candidates.push(inner.default, inner.createSink);
  }
  return candidates.find((candidate): candidate is SinkFactory => typeof candidate === "function");
}

/** Markers Node and compilers add to a CommonJS module's exports, not names anyone wrote. */
const INTEROP_NAMES = new Set(["__esModule", "module.exports"]);

/**
 * What a module exports, as `createsink (function), default (object: makeSink)`: a
 * misspelt name or a factory one level down shows at a glance, where "must export a sink
 * factory" alone left the file to be read.
 */
function exportsOf(exports: Record<string, unknown>): string {
  const names = (object: object) => Object.keys(object).filter((name) => !INTEROP_NAMES.has(name));
  const listed = names(exports).map((name) => {
    const value = exports[name];
    if (typeof value !== "object" || value === null)
      return `${name} (${value === null ? "null" : typeof value})`;
    const inside = names(value);
    return `${name} (object${inside.length > 0 ? `: ${inside.slice(0, 10).join(", ")}` : ""})`;
  });
  return listed.length > 0 ? listed.slice(0, 10).join(", ") : "nothing";
}

/** A module sink's delivery that passed MODULE_SINK_TIMEOUT_MS: retried, as a hang may pass. */
function moduleTimeoutError(path: string, timeoutMs: number): ReceiverError {
  return new ReceiverError(
    `module:${path} did not finish delivering within ${timeoutMs} ms (MODULE_SINK_TIMEOUT_MS); its signal was aborted`,
    {
      code: "module_sink_timeout",
      retryable: true,
      fix: `find what the module ${path} waits for in deliver() (a connection or a promise that never settles) and make it end there, honouring ctx.signal; raise MODULE_SINK_TIMEOUT_MS if its deliveries need longer than ${timeoutMs} ms.`,
      details: { timeoutMs },
    },
  );
}

/** How long `node --check` may take to say where a module does not parse. */
const SYNTAX_CHECK_TIMEOUT_MS = 5000;

/**
 * Where a module that does not parse goes wrong: ` (at <file>:<line>: <that line>)`. Node's
 * SyntaxError from import() names no place ("Unexpected identifier 'b'"), which left a
 * mounted file to be searched by eye. A link error (an import of an export the other module
 * lacks) has it as its stack's first lines; otherwise `node --check` parses the file, without
 * running it, and says where. Only on this failure path, so start-up pays nothing for it.
 * Failing that (the error is in a file the module imports), how to find it.
 */
async function syntaxErrorPlace(file: string, path: string, error: SyntaxError): Promise<string> {
  const fromStack = placeIn(error.stack ?? "");
  if (fromStack) return fromStack;
  const checked = await execFileAsync(process.execPath, ["--check", file], {
    timeout: SYNTAX_CHECK_TIMEOUT_MS,
  }).then(
    () => undefined,
    (failure: { stderr?: unknown }) => placeIn(String(failure.stderr ?? "")),
  );
  return checked ?? `; \`node --check ${path}\` (and on the files it imports) shows where`;
}

/** `<file>:<line>` and the source line below it, as Node prints a SyntaxError's place. */
function placeIn(text: string): string | undefined {
  const [first = "", source = ""] = text.split("\n");
  // Node prints the file as a path (`node --check`) or a file: URL (a link error).
  const match = /^(file:\/\/.+|\/.+|[A-Za-z]:\\.+):(\d+)$/.exec(first);
  if (!match) return undefined;
  const where = match[1]?.startsWith("file:") ? fileURLToPath(match[1]) : match[1];
  const line = source.trim().slice(0, 120);
  return ` (at ${where}:${match[2]}${line ? `: ${line}` : ""})`;
}

/**
 * What to do when Node refuses a TypeScript module: Node 20 (and 22 before 22.18) runs
 * only JavaScript, while `npm run dev` (tsx) ran the same file, so the message alone
 * ("Unknown file extension") left users guessing.
 */
export function loadFailureHint(path: string, error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (code !== "ERR_UNKNOWN_FILE_EXTENSION" || !/\.[cm]?ts$/i.test(path)) return "";
  // tsc's default output for a .ts file is CommonJS, which Node refuses as a .js below the
  // service's package.json ("type": "module"): the hint names a command whose output loads.
  return "; this Node runs JavaScript modules only: compile the sink to an ES module (rename it .mts; `npx tsc --module nodenext --target es2022 my-sink.mts` writes my-sink.mjs) and name that file, or run Node 22.18 or newer, which runs a .ts file that uses only erasable syntax";
}

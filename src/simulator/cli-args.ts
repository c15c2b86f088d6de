import { parseArgs } from "node:util";
import { z } from "zod";
import { bareHost, cleanEnv } from "../env-values.js";
import { DEFAULT_FAULTS, mergeFaults } from "./faults.js";
import type { SimulatorOptions } from "./server.js";
import { pickFaults } from "./state.js";

type Kind = "int" | "rate" | "string" | "bool";

/** flag name -> option key and how to read it; the env name is derived: --rate-5xx -> SIM_RATE_5XX. */
const FLAGS = {
  port: { key: "port", kind: "int", help: "listen port (default: a free port, printed at start)" },
  host: { key: "host", kind: "string", help: "listen address (default 127.0.0.1)" },
  "latency-ms": {
    key: "latencyMs",
    kind: "int",
    help: "delay before every answer, ms (default 0)",
  },
  "jitter-ms": {
    key: "jitterMs",
    kind: "int",
    help: "extra random delay 0..N ms on top (default 0)",
  },
  "rate-5xx": {
    key: "rate5xx",
    kind: "rate",
    help: "share of data calls answered 503, 0..1 (default 0)",
  },
  "rate-429": {
    key: "rate429",
    kind: "rate",
    help: "share of data calls answered 429 with Retry-After, 0..1 (default 0)",
  },
  "retry-after-sec": {
    key: "retryAfterSec",
    kind: "int",
    help: "Retry-After of those 429s, seconds (default 1)",
  },
  "reset-rate": {
    key: "resetRate",
    kind: "rate",
    help: "share of data calls whose connection is reset, 0..1 (default 0)",
  },
  "hang-rate": {
    key: "hangRate",
    kind: "rate",
    help: "share of data calls never answered, 0..1 (default 0)",
  },
  "token-lifetime-sec": {
    key: "tokenLifetimeSec",
    kind: "int",
    help: "expires_in of issued tokens, seconds; 0: tokens never expire (default 3600)",
  },
  "token-down-ms": {
    key: "tokenDownForMs",
    kind: "int",
    help: "token endpoint answers 503 for this long after start, ms (default 0)",
  },
  forbidden: {
    key: "forbidden",
    kind: "bool",
    help: 'answer every data call 403 "Missing scope data_intelligence:manager" (no value; SIM_FORBIDDEN=1)',
  },
  "client-id": {
    key: "clientId",
    kind: "string",
    help: "accepted client id (default demo-client)",
  },
  "client-secret": {
    key: "clientSecret",
    kind: "string",
    help: "accepted client secret (default demo-secret)",
  },
  seed: { key: "seed", kind: "int", help: "seed of the fault and jitter draws (default 1)" },
  connections: { key: "connections", kind: "int", help: "bank connections per check (default 2)" },
  "accounts-per-connection": {
    key: "accountsPerConnection",
    kind: "int",
    help: "accounts per bank connection (default 2)",
  },
  "accounts-without-case-id": {
    key: "accountsWithoutCaseId",
    kind: "int",
    help: "accounts without caseId, i.e. no DAC report (default 1)",
  },
} as const satisfies Record<string, { key: string; kind: Kind; help: string }>;

type Flag = keyof typeof FLAGS;

export function envName(flag: string): string {
  return `SIM_${flag.replace(/-/g, "_").toUpperCase()}`;
}

export const USAGE = `Usage: npm run simulator -- [options]

A fake finAPI (token, ProcessCtrl KreditCheck, Data Intelligence reports) for tests and demos.
Every option can also be set by environment variable, e.g. --rate-5xx by SIM_RATE_5XX.

${(Object.keys(FLAGS) as Flag[]).map((f) => `  --${f.padEnd(26)} ${envName(f).padEnd(30)} ${FLAGS[f].help}`).join("\n")}
  --help                       ${"".padEnd(30)} print this text

Control endpoints on the same server: GET /_control/stats, GET /_control/requests,
GET and POST /_control/faults (also {"tokenDownForMs": N}),
POST /_control/fail-next, POST /_control/revoke, POST /_control/reset.`;

export class CliError extends Error {}

/** `source` is what the value came from, --flag or SIM_*, so the error names what to fix. */
function parseValue(
  flag: Flag,
  source: string,
  kind: Kind,
  raw: string | boolean,
): string | number | boolean {
  if (typeof raw === "boolean") return raw;
  // Only a flag can be empty here (an empty SIM_* is unset): `--host ""` listened on every
  // interface instead of the default loopback address.
  if (raw.trim() === "") throw new CliError(`${source}: empty value`);
  if (kind === "string") return raw;
  if (kind === "bool") {
    // As the service reads LOG_PRETTY.
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw new CliError(`${source}: must be 1/true/yes/on or 0/false/no/off: ${raw}`);
  }
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new CliError(`${source}: not a number: ${raw}`);
  if (kind === "int" && !Number.isSafeInteger(n))
    throw new CliError(`${source}: not an integer (or too large): ${raw}`);
  if (flag === "port" && n > 65535) throw new CliError(`${source}: must be 0 to 65535`);
  if (kind === "rate" && (n < 0 || n > 1)) throw new CliError(`${source}: must be between 0 and 1`);
  if (kind === "int" && n < 0 && flag !== "seed")
    throw new CliError(`${source}: must not be negative`);
  return n;
}

export type CliResult = { help: true } | { help: false; options: SimulatorOptions };

/**
 * Flags win over environment variables (SIM_*, read as the service reads its own); unknown
 * flags are an error, not silently ignored.
 */
export function parseCli(argv: readonly string[], env: NodeJS.ProcessEnv): CliResult {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: "boolean", short: "h" },
        ...Object.fromEntries(
          (Object.keys(FLAGS) as Flag[]).map((f) => [
            f,
            { type: FLAGS[f].kind === "bool" ? ("boolean" as const) : ("string" as const) },
          ]),
        ),
      },
    }));
  } catch (err) {
    throw new CliError(err instanceof Error ? err.message : String(err));
  }
  if (values.help === true) return { help: true };

  // As the service reads its environment: trimmed, and an empty value is unset.
  const settings = cleanEnv(env);
  const flat: Record<string, string | number | boolean> = {};
  const sources = new Map<string, string>();
  for (const flag of Object.keys(FLAGS) as Flag[]) {
    const { key, kind } = FLAGS[flag];
    const fromFlag = values[flag];
    const [source, raw] =
      fromFlag !== undefined ? [`--${flag}`, fromFlag] : [envName(flag), settings[envName(flag)]];
    if (raw !== undefined) {
      flat[key] = parseValue(flag, source, kind, raw);
      sources.set(key, source);
    }
  }
  // A listen address as the service reads HOST: an IPv6 literal may come bracketed.
  if (typeof flat.host === "string") flat.host = bareHost(flat.host);
  const { connections, accountsPerConnection, accountsWithoutCaseId, ...rest } = flat;
  const options = rest as SimulatorOptions;
  if (
    connections !== undefined ||
    accountsPerConnection !== undefined ||
    accountsWithoutCaseId !== undefined
  ) {
    options.accounts = {
      connections: Number(connections ?? 2),
      accountsPerConnection: Number(accountsPerConnection ?? 2),
      accountsWithoutCaseId: Number(accountsWithoutCaseId ?? 1),
    };
  }
  checkFaults(options, sources);
  return { help: false, options };
}

/**
 * The limits the control endpoint applies (faults.ts), checked here so that a value out of
 * range is named as the flag or variable it came from instead of failing with a stack trace.
 */
function checkFaults(options: SimulatorOptions, sources: Map<string, string>): void {
  try {
    mergeFaults(DEFAULT_FAULTS, pickFaults(options as Record<string, unknown>));
  } catch (err) {
    if (!(err instanceof z.ZodError)) throw err;
    const lines = err.issues.map((issue) => {
      // ["latencyMs"] or ["accounts", "connections"]: the option key is the last part.
      const key = issue.path.at(-1);
      const source =
        typeof key === "string"
          ? sources.get(key)
          : "--reset-rate, --hang-rate, --rate-5xx and --rate-429 (or their SIM_* variables)";
      return `${source ?? String(key)}: ${issue.message}`;
    });
    throw new CliError(lines.join("\n"));
  }
}

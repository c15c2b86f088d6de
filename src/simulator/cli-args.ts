import { parseArgs } from "node:util";
import type { SimulatorOptions } from "./server.js";

type Kind = "int" | "rate" | "string";

/** flag name -> option key and how to read it; the env name is derived: --rate-5xx -> SIM_RATE_5XX. */
const FLAGS = {
  port: { key: "port", kind: "int" },
  host: { key: "host", kind: "string" },
  "latency-ms": { key: "latencyMs", kind: "int" },
  "jitter-ms": { key: "jitterMs", kind: "int" },
  "rate-5xx": { key: "rate5xx", kind: "rate" },
  "rate-429": { key: "rate429", kind: "rate" },
  "retry-after-sec": { key: "retryAfterSec", kind: "int" },
  "reset-rate": { key: "resetRate", kind: "rate" },
  "hang-rate": { key: "hangRate", kind: "rate" },
  "token-lifetime-sec": { key: "tokenLifetimeSec", kind: "int" },
  "token-down-ms": { key: "tokenDownForMs", kind: "int" },
  "client-id": { key: "clientId", kind: "string" },
  "client-secret": { key: "clientSecret", kind: "string" },
  seed: { key: "seed", kind: "int" },
  connections: { key: "connections", kind: "int" },
  "accounts-per-connection": { key: "accountsPerConnection", kind: "int" },
  "accounts-without-case-id": { key: "accountsWithoutCaseId", kind: "int" },
} as const satisfies Record<string, { key: string; kind: Kind }>;

type Flag = keyof typeof FLAGS;

export function envName(flag: string): string {
  return `SIM_${flag.replace(/-/g, "_").toUpperCase()}`;
}

export const USAGE = `Usage: npm run simulator -- [options]

A fake finAPI (token, ProcessCtrl KreditCheck, Data Intelligence reports) for tests and demos.
Every option can also be set by environment variable, e.g. --rate-5xx by SIM_RATE_5XX.

${(Object.keys(FLAGS) as Flag[]).map((f) => `  --${f.padEnd(26)} ${envName(f)}`).join("\n")}
  --help                       print this text

Control endpoints on the same server: GET /_control/stats, GET /_control/requests,
GET and POST /_control/faults (also {"tokenDownForMs": N}),
POST /_control/fail-next, POST /_control/revoke, POST /_control/reset.`;

export class CliError extends Error {}

function parseValue(flag: string, kind: Kind, raw: string): string | number {
  if (kind === "string") return raw;
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n))
    throw new CliError(`--${flag}: not a number: ${raw}`);
  if (kind === "int" && !Number.isInteger(n))
    throw new CliError(`--${flag}: not an integer: ${raw}`);
  if (kind === "rate" && (n < 0 || n > 1)) throw new CliError(`--${flag}: must be between 0 and 1`);
  if (kind === "int" && n < 0 && flag !== "seed")
    throw new CliError(`--${flag}: must not be negative`);
  return n;
}

export type CliResult = { help: true } | { help: false; options: SimulatorOptions };

/** Flags win over environment variables; unknown flags are an error, not silently ignored. */
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
          (Object.keys(FLAGS) as Flag[]).map((f) => [f, { type: "string" as const }]),
        ),
      },
    }));
  } catch (err) {
    throw new CliError(err instanceof Error ? err.message : String(err));
  }
  if (values.help === true) return { help: true };

  const flat: Record<string, string | number> = {};
  for (const flag of Object.keys(FLAGS) as Flag[]) {
    const { key, kind } = FLAGS[flag];
    const fromFlag = values[flag];
    const raw = typeof fromFlag === "string" ? fromFlag : env[envName(flag)];
    if (raw !== undefined) flat[key] = parseValue(flag, kind, raw);
  }
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
  return { help: false, options };
}

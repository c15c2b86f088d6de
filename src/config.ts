import { z } from "zod";
import { SCHEMA_NAME_PATTERN } from "./postgres/identifier.js";

/**
 * Base URLs per finAPI environment (../shared/finapi/FACTS.md). `unconfirmed` lists the
 * presets that public documentation does not state outright; start-up warns about them.
 */
export const FINAPI_PRESETS = {
  sandbox: {
    tokenUrl: "https://sandbox.finapi.io/api/v2/oauth/token",
    processctrlUrl: "https://di-processctl-finapi-general-sandbox.finapi.io/api/v1",
    diUrl: "https://di-sandbox.finapi.io/api/v1",
    unconfirmed: [] as string[],
  },
  live: {
    tokenUrl: "https://live.finapi.io/api/v2/oauth/token",
    processctrlUrl: "https://di-processctl-finapi-general-live.finapi.io/api/v1",
    diUrl: "https://di-live.finapi.io/api/v1",
    unconfirmed: [
      "FINAPI_PROCESSCTRL_URL (path /api/v1 by analogy)",
      "FINAPI_DI_URL (path /api/v1 by analogy)",
    ],
  },
} as const;

export const DEFAULT_KREDITCHECK_PATH = "/checks/{processToken}/kreditcheck/{kreditCheckId}";

const int = (min: number, fallback: number) => z.coerce.number().int().min(min).default(fallback);
const bool = z
  .enum(["1", "0", "true", "false", "yes", "no", ""])
  .default("0")
  .transform((value) => value === "1" || value === "true" || value === "yes");
const httpUrl = z.url({ protocol: /^https?$/, error: "must be an http(s) URL" });
const optionalUrl = z.preprocess((value) => (value === "" ? undefined : value), httpUrl.optional());
const required = (name: string) =>
  z.string({ error: `${name} is required` }).min(1, `${name} is required`);

/** The environment, exactly as operators write it: one key per variable. */
const envSchema = z.object({
  NODE_ENV: z.enum(["development", "production", "test"]).default("development"),
  HOST: z.string().min(1).default("0.0.0.0"),
  PORT: int(0, 3000).pipe(z.number().max(65535)),
  CALLBACK_PATH: z
    .string()
    .regex(/^\/[A-Za-z0-9._~\-/]*$/, "must start with / and contain only URL path characters")
    .default("/callbacks/kreditcheck"),
  STORE_URL: z
    .string()
    .regex(/^(sqlite:.+|postgres(ql)?:\/\/.+)$/, "must be sqlite:<path> or postgres://…")
    .default("sqlite:./data/receiver.db"),
  PG_SCHEMA: z
    .string()
    .regex(SCHEMA_NAME_PATTERN, "must be a plain lower-case PostgreSQL identifier")
    .default("public"),
  LEASE_MS: int(1000, 30_000),
  WORKER_CONCURRENCY: int(1, 4),
  WORKER_POLL_MS: int(10, 1000),
  MAX_ATTEMPTS: int(1, 10),
  JOB_MAX_AGE_MS: int(1000, 7 * 24 * 3600 * 1000),
  BACKOFF_BASE_MS: int(1, 1000),
  BACKOFF_MAX_MS: int(1, 5 * 60 * 1000),
  NOT_FOUND_GRACE_MS: int(0, 10 * 60 * 1000),
  FINAPI_ENV: z.enum(["sandbox", "live"]).default("sandbox"),
  FINAPI_TOKEN_URL: optionalUrl,
  FINAPI_PROCESSCTRL_URL: optionalUrl,
  FINAPI_DI_URL: optionalUrl,
  FINAPI_KREDITCHECK_PATH: z
    .string()
    .refine(
      (path) =>
        path.startsWith("/") && path.includes("{processToken}") && path.includes("{kreditCheckId}"),
      "must start with / and contain {processToken} and {kreditCheckId}",
    )
    .default(DEFAULT_KREDITCHECK_PATH),
  FINAPI_CLIENT_ID: required("FINAPI_CLIENT_ID"),
  FINAPI_CLIENT_SECRET: required("FINAPI_CLIENT_SECRET"),
  FINAPI_TIMEOUT_MS: int(100, 15_000),
  FINAPI_RETRIES: int(0, 2),
  TOKEN_REFRESH_MARGIN_MS: int(0, 60_000),
  DAC_CONCURRENCY: int(1, 4),
  SINKS: z.string().min(1).default("file"),
  FILE_SINK_DIR: z.string().min(1).default("./data/results"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  LOG_PRETTY: bool,
});

export type Env = z.input<typeof envSchema>;

export interface Config {
  nodeEnv: "development" | "production" | "test";
  http: { host: string; port: number; callbackPath: string; bodyLimitBytes: number };
  store: {
    url: string;
    kind: "sqlite" | "postgres";
    sqlitePath: string;
    /** PostgreSQL schema of the inbox (and of the postgres sink's tables). */
    schema: string;
  };
  worker: {
    leaseMs: number;
    concurrency: number;
    pollMs: number;
    maxAttempts: number;
    maxAgeMs: number;
    backoffBaseMs: number;
    backoffMaxMs: number;
  };
  finapi: {
    env: "sandbox" | "live";
    tokenUrl: string;
    processctrlUrl: string;
    diUrl: string;
    kreditCheckPath: string;
    clientId: string;
    clientSecret: string;
    timeoutMs: number;
    retries: number;
    refreshMarginMs: number;
    dacConcurrency: number;
    notFoundGraceMs: number;
    /** Preset URLs in use that public documentation does not confirm. */
    unconfirmed: string[];
  };
  sinks: { names: string[]; fileDir: string };
  log: { level: string; pretty: boolean };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/** Parses the environment once; the result is frozen so nothing changes it later. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  // Empty strings (KEY= in a .env file) mean "not set", as operators expect.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== ""));
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((issue) => {
        const name = String(issue.path[0] ?? "environment");
        return issue.message.startsWith(name) ? issue.message : `${name}: ${issue.message}`;
      }),
    );
  }
  const e = parsed.data;
  const preset = FINAPI_PRESETS[e.FINAPI_ENV];
  const unconfirmed = preset.unconfirmed.filter(
    (name) =>
      (name.startsWith("FINAPI_PROCESSCTRL_URL") && !e.FINAPI_PROCESSCTRL_URL) ||
      (name.startsWith("FINAPI_DI_URL") && !e.FINAPI_DI_URL),
  );
  if (e.FINAPI_KREDITCHECK_PATH === DEFAULT_KREDITCHECK_PATH) {
    unconfirmed.push(
      "FINAPI_KREDITCHECK_PATH (from finAPI's integration guide, not its public API table)",
    );
  }
  const config: Config = {
    nodeEnv: e.NODE_ENV,
    http: { host: e.HOST, port: e.PORT, callbackPath: e.CALLBACK_PATH, bodyLimitBytes: 64 * 1024 },
    store: {
      url: e.STORE_URL,
      kind: e.STORE_URL.startsWith("sqlite:") ? "sqlite" : "postgres",
      sqlitePath: e.STORE_URL.startsWith("sqlite:") ? e.STORE_URL.slice("sqlite:".length) : "",
      schema: e.PG_SCHEMA,
    },
    worker: {
      leaseMs: e.LEASE_MS,
      concurrency: e.WORKER_CONCURRENCY,
      pollMs: e.WORKER_POLL_MS,
      maxAttempts: e.MAX_ATTEMPTS,
      maxAgeMs: e.JOB_MAX_AGE_MS,
      backoffBaseMs: e.BACKOFF_BASE_MS,
      backoffMaxMs: e.BACKOFF_MAX_MS,
    },
    finapi: {
      env: e.FINAPI_ENV,
      tokenUrl: e.FINAPI_TOKEN_URL ?? preset.tokenUrl,
      processctrlUrl: stripSlash(e.FINAPI_PROCESSCTRL_URL ?? preset.processctrlUrl),
      diUrl: stripSlash(e.FINAPI_DI_URL ?? preset.diUrl),
      kreditCheckPath: e.FINAPI_KREDITCHECK_PATH,
      clientId: e.FINAPI_CLIENT_ID,
      clientSecret: e.FINAPI_CLIENT_SECRET,
      timeoutMs: e.FINAPI_TIMEOUT_MS,
      retries: e.FINAPI_RETRIES,
      refreshMarginMs: e.TOKEN_REFRESH_MARGIN_MS,
      dacConcurrency: e.DAC_CONCURRENCY,
      notFoundGraceMs: e.NOT_FOUND_GRACE_MS,
      unconfirmed,
    },
    sinks: {
      names: e.SINKS.split(",")
        .map((name) => name.trim())
        .filter(Boolean),
      fileDir: e.FILE_SINK_DIR,
    },
    log: { level: e.LOG_LEVEL, pretty: e.LOG_PRETTY },
  };
  return deepFreeze(config);
}

/** A URL fit for logs: the password, if any, replaced. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return url;
  }
}

function stripSlash(url: string): string {
  return url.replace(/\/+$/, "");
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === "object") {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

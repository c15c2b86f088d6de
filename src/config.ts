import ipaddr from "ipaddr.js";
import proxyaddr from "proxy-addr";
import { z } from "zod";
import { nearest } from "./edit-distance.js";
import { bareHost, cleanEnv } from "./env-values.js";
import { DOCUMENT_NAMES, type DocumentName } from "./finapi/documents.js";
import { LOOPBACK_CIDRS, parseCidrList } from "./http/allowlist.js";
import { SCHEMA_NAME_PATTERN } from "./postgres/identifier.js";
import type { EgressProxies, EgressProxy } from "./undici-adapter.js";

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

/**
 * Whole decimal numbers only: " ", "0x50" or "1e3" are mistakes, not numbers. A minus sign
 * passes here so that "-1" is told it is below the minimum, not that it is not a number.
 */
const int = (min: number, fallback: number, max = Number.MAX_SAFE_INTEGER, tooBig?: string) => {
  // The range and the default, in the words of the README's table, instead of zod's
  // "Too small: expected number to be >=1".
  const bounds =
    max === Number.MAX_SAFE_INTEGER
      ? `${min} or more (default ${fallback})`
      : `from ${min} to ${max} (default ${fallback})`;
  return z
    .string()
    .regex(/^-?\d+$/, `must be a whole number: ${bounds}`)
    .transform(Number)
    .pipe(
      z
        .number()
        .int()
        .min(min, `must be ${bounds}`)
        .max(max, tooBig ?? `must be ${bounds}`),
    )
    .prefault(String(fallback));
};

/**
 * Longest delay of a Node timer: setTimeout and setInterval run a longer one after 1 ms, so
 * WORKER_POLL_MS=2200000000 would poll in a busy loop. Ages that are only compared with
 * dates (JOB_MAX_AGE_MS, the retentions) are not timers and may be longer.
 */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** main.ts's last-resort exit fires this long after SHUTDOWN_TIMEOUT_MS: its timer must fit too. */
export const SHUTDOWN_EXIT_GRACE_MS = 2000;

/** A duration that ends up in a timer (see MAX_TIMER_MS). */
const timerMs = (min: number, fallback: number, max = MAX_TIMER_MS) =>
  int(
    min,
    fallback,
    max,
    `must be at most ${max} (about 24.8 days): Node runs a longer timer after 1 ms`,
  );
const bool = z
  .preprocess(
    (value) => (typeof value === "string" ? value.toLowerCase() : value),
    z.enum(["1", "0", "true", "false", "yes", "no", "on", "off", ""]),
  )
  .default("0")
  .transform((value) => value === "1" || value === "true" || value === "yes" || value === "on");
/** A URL's scheme, as `https://`; what lacks one (`host:port/path`, `/path`) is told so. */
const HAS_SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;
const httpUrl = z.url({
  protocol: /^https?$/,
  error: (issue) =>
    typeof issue.input === "string" && !HAS_SCHEME.test(issue.input)
      ? "must be an http(s) URL, with http:// or https:// in front (like https://host/path)"
      : "must be an http(s) URL",
});
const optionalUrl = z.preprocess((value) => (value === "" ? undefined : value), httpUrl.optional());
/**
 * An optional http(s) URL without a user name or password: the undici adapter does not send
 * them, so the call would go out without the credentials. `instead` says where they belong.
 */
const urlWithoutCredentials = (instead: string) =>
  optionalUrl.refine(
    (url) => url === undefined || !hasUserinfo(url),
    `must not contain a user name or password (they are not sent): ${instead}`,
  );
const FINAPI_CREDENTIALS = "the client credentials go in FINAPI_CLIENT_ID and FINAPI_CLIENT_SECRET";
/**
 * A service's base URL, which each call's path is appended to: a query or fragment in it
 * ended up before the path (`…/v1?tenant=acme/checks/…`), so every call asked for the base.
 */
const finapiBaseUrl = urlWithoutCredentials(FINAPI_CREDENTIALS).refine(
  (url) => url === undefined || !/[?#]/.test(url),
  "must not hold a query (?) or fragment (#): each call's path is appended to it",
);

/**
 * An egress proxy is an http(s) URL, or host:port read as http:// as curl reads it (axios
 * took the target's scheme, so an https call spoke TLS to a plain proxy). Only the
 * variables in effect are checked (see effectiveProxies): a desktop's all_proxy=socks://…
 * beside http_proxy and https_proxy is never used, and must not stop start-up.
 */
const PROXY_URL_PROBLEM =
  "must be the URL of an HTTP proxy (http:// or https://, not SOCKS), like http://proxy.internal:3128";
const PROXY_USER_PROBLEM =
  "has a user name but no password: the proxy would get neither (write user:password@), or leave both out";
const POSTGRES_URL = /^postgres(ql)?:\/\/.+/;
const PG_URL_PROBLEM =
  "must be a postgres:// URL the PostgreSQL driver can read: the port a number, and @ : / ? # in the user name or password percent-encoded (%40 %3A %2F %3F %23)";
/** SQLite's in-memory database (only this exact name: better-sqlite3 opens no URI filenames). */
const SQLITE_MEMORY = "sqlite::memory:";
const DAY_MS = 24 * 3600 * 1000;
/**
 * Longest span added to or taken from now (a retention's cut-off, a backoff's next run):
 * far beyond any use, and the result is still a valid date.
 */
const MAX_DATE_SPAN_MS = 100 * 365 * DAY_MS;
const required = (name: string) =>
  z.string({ error: `${name} is required` }).min(1, `${name} is required`);

/** Shortest signing key a whsec_ secret may decode to: an empty or tiny key signs nothing. */
const MIN_WEBHOOK_KEY_BYTES = 16;
/** The least length of an HTTP_SINK_SECRET written without `whsec_` (its raw bytes are the key). */
const MIN_PLAIN_SECRET_CHARS = 16;

/** How to make a good signing key; every message about a bad one ends with it. */
const GOOD_KEY = "e.g. whsec_ + `openssl rand -base64 32`";

/**
 * What is wrong with an HTTP_SINK_SECRET, or undefined. Whoever guesses the key can sign a
 * bundle the receiver trusts. A plain secret is the key's bytes as written; a `whsec_` one
 * has two mistakes that need different fixes (URL-safe base64 from another tool, or a key
 * too short to be secret).
 */
function signingSecretProblem(secret: string): string | undefined {
  if (!secret.startsWith("whsec_")) {
    return secret.length >= MIN_PLAIN_SECRET_CHARS
      ? undefined
      : `must be at least ${MIN_PLAIN_SECRET_CHARS} characters (a short key can be guessed, and with it anyone can sign bundles); ${GOOD_KEY}`;
  }
  const base64 = secret.slice("whsec_".length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) {
    return `a whsec_ secret must be followed by standard base64 (A-Z a-z 0-9 + /, not URL-safe - _; the Standard Webhooks format), ${GOOD_KEY}`;
  }
  const bytes = Buffer.from(base64, "base64").length;
  if (bytes < MIN_WEBHOOK_KEY_BYTES) {
    return `the base64 after whsec_ decodes to ${bytes} bytes; the key needs at least ${MIN_WEBHOOK_KEY_BYTES}, ${GOOD_KEY}`;
  }
  return undefined;
}

/** A listen address, unbracketed (see bareHost). */
function listenHost(fallback: string) {
  return z.string().min(1).default(fallback).transform(bareHost);
}

/**
 * One of `values`, in any letter case (`LOG_LEVEL=INFO`, `FINAPI_ENV=Live`): the case of a
 * word is no mistake worth a refused start. Anything else is refused with the list.
 */
function wordOf<const T extends readonly [string, ...string[]]>(values: T, fallback: T[number]) {
  return z
    .preprocess(
      (value) => (typeof value === "string" ? value.toLowerCase() : value),
      z.enum(values),
    )
    .default(fallback);
}

/** The environment, exactly as operators write it: one key per variable. */
const envSchema = z.object({
  NODE_ENV: z.enum(["development", "production", "test"]).default("development"),
  HOST: listenHost("0.0.0.0"),
  PORT: int(0, 3000, 65535),
  CALLBACK_PATH: z
    .string()
    .regex(
      /^\/[A-Za-z0-9._~-][A-Za-z0-9._~\-/]*$/,
      "must start with / and name a path (URL path characters only)",
    )
    .default("/callbacks/kreditcheck"),
  ALLOWED_CIDRS: z
    .string()
    .min(1)
    .superRefine((list, ctx) => {
      try {
        if (parseCidrList(list).length === 0)
          ctx.addIssue({ code: "custom", message: "lists no network" });
      } catch (error) {
        ctx.addIssue({ code: "custom", message: (error as Error).message });
      }
    })
    .optional(),
  TRUST_PROXY: z
    .string()
    .refine(
      (value) => /^\d+$/.test(value) || (compilesAsTrustProxy(value) && !trustsNearlyAll(value)),
      "must be a hop count or a comma list of CIDRs / loopback / linklocal / uniquelocal, none wider than an IPv4 /8 or an IPv6 /7 (::ffff:0:0/96 is every IPv4 address): a wider one trusts nearly everyone's X-Forwarded-For",
    )
    .superRefine((value, ctx) => {
      const odd = notFourPartDecimal(value);
      if (odd !== undefined) {
        ctx.addIssue({
          code: "custom",
          message: `"${odd}" is not an IPv4 address of four decimal parts: proxy-addr reads 010.0.0.1 as octal (8.0.0.1) and 10.1 as 10.0.0.1, trusting another address than meant (ALLOWED_CIDRS refuses them too)`,
        });
      }
    })
    .optional(),
  CALLBACK_SECRET: z
    .string()
    .regex(/^[A-Za-z0-9._~-]+$/, "must contain only URL-safe characters A-Z a-z 0-9 . _ ~ -")
    .optional(),
  // Not a JS timer, but Node's connection check reads the server's requestTimeout as 32 bits.
  REQUEST_TIMEOUT_MS: timerMs(100, 10_000),
  MAX_CONNECTIONS: int(1, 1000, 1_000_000),
  ADMIN_PORT: int(0, 9090, 65535),
  ADMIN_HOST: listenHost("127.0.0.1"),
  // Node reads a request's header bytes as Latin-1 and the token is compared as UTF-8, so a
  // character beyond ASCII never matches what curl sends (a '€' cannot even be put into the
  // CLI's fetch header). Visible ASCII passes every client as it is; tokens in use with
  // `!`, `$` or `#` keep working (RFC 6750's narrower set would have refused them).
  ADMIN_TOKEN: z
    .string()
    .min(8, "must be at least 8 characters")
    .regex(
      /^[\x21-\x7e]+$/,
      "must contain only visible ASCII characters (no spaces, no letters beyond ASCII): ä or € say are sent differently by curl, browsers and the CLI and would never match; openssl rand -base64 32 makes one",
    )
    .optional(),
  SHUTDOWN_TIMEOUT_MS: timerMs(100, 15_000, MAX_TIMER_MS - SHUTDOWN_EXIT_GRACE_MS),
  SHUTDOWN_DELAY_MS: timerMs(0, 0),
  STORE_URL: z
    .string()
    .refine(
      (url) => /^sqlite:.+/.test(url) || POSTGRES_URL.test(url),
      "must be sqlite:<path> or postgres://…",
    )
    .refine(pgCanReadIfPostgres, PG_URL_PROBLEM)
    .default("sqlite:./data/receiver.db"),
  PG_SCHEMA: z
    .string()
    .regex(SCHEMA_NAME_PATTERN, "must be a plain lower-case PostgreSQL identifier")
    .default("public"),
  LEASE_MS: timerMs(1000, 30_000),
  WORKER_CONCURRENCY: int(1, 4),
  WORKER_POLL_MS: timerMs(10, 1000),
  // 25 attempts, backoff up to 30 min: a job that keeps failing (finAPI maintenance, a
  // sink being deployed) is retried for about 3.5 hours typically, under 2 for about one
  // job in 600 (full jitter). With 10 and 5 min, a 5-minute outage killed most jobs.
  MAX_ATTEMPTS: int(1, 25),
  JOB_MAX_AGE_MS: int(1000, 7 * DAY_MS),
  // Not timers: the delay sets the job's next run_at, which the polling worker picks up.
  BACKOFF_BASE_MS: int(1, 1000, MAX_DATE_SPAN_MS),
  BACKOFF_MAX_MS: int(1, 30 * 60 * 1000, MAX_DATE_SPAN_MS),
  NOT_FOUND_GRACE_MS: int(0, 10 * 60 * 1000),
  // 0 keeps finished jobs forever.
  DONE_RETENTION_MS: int(0, 7 * DAY_MS, MAX_DATE_SPAN_MS),
  DEAD_RETENTION_MS: int(0, 30 * DAY_MS, MAX_DATE_SPAN_MS),
  PRUNE_INTERVAL_MS: timerMs(10, 3600 * 1000),
  FINAPI_ENV: wordOf(["sandbox", "live"], "sandbox"),
  FINAPI_TOKEN_URL: urlWithoutCredentials(FINAPI_CREDENTIALS),
  FINAPI_PROCESSCTRL_URL: finapiBaseUrl,
  FINAPI_DI_URL: finapiBaseUrl,
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
  FINAPI_TIMEOUT_MS: timerMs(100, 15_000),
  FINAPI_RETRIES: int(0, 2),
  TOKEN_REFRESH_MARGIN_MS: int(0, 60_000),
  DAC_CONCURRENCY: int(1, 4),
  SINKS: z.string().min(1).default("file").transform(parseSinkNames),
  FILE_SINK_DIR: z.string().min(1).default("./data/results"),
  HTTP_SINK_URL: urlWithoutCredentials(
    "the receiver checks the bundles' signature, made with HTTP_SINK_SECRET",
  ),
  HTTP_SINK_SECRET: z
    .string()
    .min(1)
    .superRefine((secret, ctx) => {
      const problem = signingSecretProblem(secret);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    })
    .optional(),
  HTTP_SINK_TIMEOUT_MS: timerMs(100, 10_000),
  POSTGRES_SINK_URL: z
    .string()
    .regex(POSTGRES_URL, "must be a postgres:// URL")
    .refine(pgCanReadIfPostgres, PG_URL_PROBLEM)
    .optional(),
  POSTGRES_SINK_TIMEOUT_MS: timerMs(100, 10_000),
  MODULE_SINK_TIMEOUT_MS: timerMs(100, 60_000),
  FETCH_DOCUMENTS: z.string().default("").transform(parseDocumentNames),
  // Outgoing calls (finAPI, the http sink); axios reads the lower-case names first.
  HTTP_PROXY: z.string().optional(),
  http_proxy: z.string().optional(),
  HTTPS_PROXY: z.string().optional(),
  https_proxy: z.string().optional(),
  ALL_PROXY: z.string().optional(),
  all_proxy: z.string().optional(),
  NO_PROXY: z.string().optional(),
  no_proxy: z.string().optional(),
  LOG_LEVEL: wordOf(["fatal", "error", "warn", "info", "debug", "trace", "silent"], "info"),
  LOG_PRETTY: bool,
});

/** The sinks SINKS may name; `module:<path>` loads a custom one. */
export const BUILT_IN_SINKS = ["file", "stdout", "http", "postgres"] as const;

function splitList(value: string): string[] {
  return value
    .split(",")
    .map((name) => name.trim())
    .filter(Boolean);
}

/** The variables only a built-in sink reads. */
const SINK_SETTINGS: Record<string, readonly string[]> = {
  // Not FILE_SINK_DIR: it has a default and the Docker image sets it, so it would warn in
  // every container that writes elsewhere, with no way to silence it.
  http: ["HTTP_SINK_URL", "HTTP_SINK_SECRET", "HTTP_SINK_TIMEOUT_MS"],
  postgres: ["POSTGRES_SINK_URL", "POSTGRES_SINK_TIMEOUT_MS"],
  // Any module sink: named as SINKS would name one.
  "module:<path>": ["MODULE_SINK_TIMEOUT_MS"],
};

function unusedSinkSettings(
  settings: Record<string, string | undefined>,
  sinks: readonly string[],
): { sink: string; variables: string[] }[] {
  return Object.entries(SINK_SETTINGS).flatMap(([sink, names]) => {
    const variables = names.filter((name) => settings[name] !== undefined);
    const named = sink.startsWith("module:")
      ? sinks.some((name) => name.startsWith("module:"))
      : sinks.includes(sink);
    return named || variables.length === 0 ? [] : [{ sink, variables }];
  });
}

const MODULE_PREFIX = /^module:/i;

function parseSinkNames(value: string, ctx: z.RefinementCtx): string[] {
  const seen = new Set<string>();
  const names = splitList(value).map((entry) => {
    // Built-in names and the prefix in any letter case, as LOG_LEVEL and FINAPI_ENV; a
    // module's path as written (file systems tell case apart), less the blanks around it:
    // `module: ./x.cjs` looked for "<cwd>/ ./x.cjs".
    const name = MODULE_PREFIX.test(entry)
      ? `module:${entry.slice("module:".length).trim()}`
      : entry.toLowerCase();
    const known =
      (BUILT_IN_SINKS as readonly string[]).includes(name) ||
      (name.startsWith("module:") && name.length > "module:".length);
    if (!known) {
      ctx.addIssue({
        code: "custom",
        message: `SINKS: unknown sink "${entry}" (known: ${BUILT_IN_SINKS.join(", ")}, module:<path>)`,
      });
    }
    if (seen.has(name))
      ctx.addIssue({ code: "custom", message: `SINKS: "${entry}" is listed twice` });
    seen.add(name);
    return name;
  });
  if (names.length === 0)
    ctx.addIssue({ code: "custom", message: "SINKS: name at least one sink" });
  return names;
}

function parseDocumentNames(value: string, ctx: z.RefinementCtx): DocumentName[] {
  const names = splitList(value);
  for (const name of names) {
    if (!(DOCUMENT_NAMES as string[]).includes(name)) {
      ctx.addIssue({
        code: "custom",
        message: `FETCH_DOCUMENTS: unknown document "${name}" (known: ${DOCUMENT_NAMES.join(", ")})`,
      });
    }
  }
  return [...new Set(names)] as DocumentName[];
}

type EnvOutput = z.output<typeof envSchema>;

/** Whether every named variable parsed: a bad one still holds its raw text in the value. */
type Parsed = (...names: (keyof EnvOutput)[]) => boolean;

/** Settings that only matter together with a sink. */
function checkSinkSettings(e: EnvOutput, ctx: z.RefinementCtx, parsed: Parsed): void {
  if (!parsed("SINKS")) return;
  if (e.SINKS.includes("http")) {
    if (!e.HTTP_SINK_URL && parsed("HTTP_SINK_URL")) {
      ctx.addIssue({ code: "custom", message: "HTTP_SINK_URL is required when SINKS names http" });
    }
    if (!e.HTTP_SINK_SECRET && parsed("HTTP_SINK_SECRET")) {
      ctx.addIssue({
        code: "custom",
        message:
          "HTTP_SINK_SECRET is required when SINKS names http (the bundles are signed with it)",
      });
    }
  }
  if (
    e.SINKS.includes("postgres") &&
    parsed("POSTGRES_SINK_URL", "STORE_URL") &&
    !e.POSTGRES_SINK_URL &&
    !POSTGRES_URL.test(e.STORE_URL)
  ) {
    ctx.addIssue({
      code: "custom",
      message:
        "POSTGRES_SINK_URL is required when SINKS names postgres and STORE_URL is not a PostgreSQL URL",
    });
  }
}

/**
 * Checks across variables. They run even when other variables are bad (see configSchema),
 * so that one run reports every problem; a check whose own variables are bad stays quiet,
 * their own messages say what is wrong.
 */
function checkCombinations(e: EnvOutput, ctx: z.RefinementCtx): void {
  const bad = new Set(ctx.issues.map((issue) => issue.path?.[0]));
  const parsed: Parsed = (...names) => names.every((name) => !bad.has(name));
  checkSinkSettings(e, ctx, parsed);
  if (parsed("NODE_ENV", "ALLOWED_CIDRS") && e.NODE_ENV === "production" && !e.ALLOWED_CIDRS) {
    ctx.addIssue({
      code: "custom",
      message:
        "ALLOWED_CIDRS: must be set when NODE_ENV=production (finAPI's IP range from finAPI support; 0.0.0.0/0,::/0 allows everyone)",
    });
  }
  // A 202 promises the callback is on disk; SQLite keeps ":memory:" in this process only.
  if (parsed("NODE_ENV", "STORE_URL") && e.STORE_URL === SQLITE_MEMORY && e.NODE_ENV !== "test") {
    ctx.addIssue({
      code: "custom",
      message: `STORE_URL: ${SQLITE_MEMORY} keeps the inbox in memory, so accepted callbacks are lost when the process stops; use sqlite:<path> or postgres://… (only NODE_ENV=test may use it)`,
    });
  }
  if (parsed("BACKOFF_BASE_MS", "BACKOFF_MAX_MS") && e.BACKOFF_BASE_MS > e.BACKOFF_MAX_MS) {
    ctx.addIssue({
      code: "custom",
      message: `BACKOFF_BASE_MS: ${e.BACKOFF_BASE_MS} is larger than BACKOFF_MAX_MS=${e.BACKOFF_MAX_MS}`,
    });
  }
  for (const proxy of Object.values(effectiveProxies(e))) {
    const problem = isHttpProxyUrl(proxy.url)
      ? hasUserWithoutPassword(proxy.url) && PROXY_USER_PROBLEM
      : PROXY_URL_PROBLEM;
    if (problem) ctx.addIssue({ code: "custom", path: [proxy.variable], message: problem });
  }
  if (parsed("ADMIN_HOST", "ADMIN_TOKEN") && !isLoopbackHost(e.ADMIN_HOST) && !e.ADMIN_TOKEN) {
    ctx.addIssue({
      code: "custom",
      message: `ADMIN_TOKEN: must be set when ADMIN_HOST=${e.ADMIN_HOST} exposes the admin API beyond this machine`,
    });
  }
}

// `when`: the checks run even after a variable failed (zod skips them by default).
const configSchema = envSchema.superRefine(checkCombinations, { when: () => true });

export type Env = z.input<typeof envSchema>;

export interface Config {
  nodeEnv: "development" | "production" | "test";
  http: {
    host: string;
    port: number;
    callbackPath: string;
    bodyLimitBytes: number;
    requestTimeoutMs: number;
    /** Open connections the public port holds at most; more are closed at once. */
    maxConnections: number;
    /** Comma list of CIDRs allowed to send callbacks. */
    allowedCidrs: string;
    /** Express "trust proxy": false, a hop count or a list of CIDRs. */
    trustProxy: false | number | string;
    callbackSecret: string | undefined;
  };
  admin: { host: string; port: number; token: string | undefined };
  shutdownTimeoutMs: number;
  /** After a stop signal, how long readiness says 503 while everything still runs. */
  shutdownDelayMs: number;
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
  /** How long finished jobs stay in the inbox after `finished_at`; null keeps them forever. */
  retention: {
    doneMs: number | null;
    deadMs: number | null;
    pruneIntervalMs: number;
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
  sinks: {
    names: string[];
    fileDir: string;
    http: { url: string; secret: string; timeoutMs: number } | undefined;
    /** Where the postgres sink writes: POSTGRES_SINK_URL, else STORE_URL when PostgreSQL. */
    postgres:
      | {
          url: string;
          schema: string;
          variable: "POSTGRES_SINK_URL" | "STORE_URL";
          /** POSTGRES_SINK_TIMEOUT_MS: longest one delivery (connect, write, commit) may take. */
          timeoutMs: number;
        }
      | undefined;
    /** MODULE_SINK_TIMEOUT_MS: longest one delivery of a `module:<path>` sink may take. */
    moduleTimeoutMs: number;
    /**
     * Set variables of sinks SINKS does not name, by sink: start-up warns about them (an
     * HTTP_SINK_URL without http in SINKS forwards nothing, and said nothing about it).
     */
    unusedSettings: { sink: string; variables: string[] }[];
  };
  /** Set variables the service does not read that look like typos of one it does. */
  misspelt: { variable: string; meant: string; meantIsSet: boolean }[];
  /** Egress proxies of the outgoing calls (finAPI, the http sink). */
  proxies: EgressProxies;
  /** Documents fetched besides the JSON results and handed to the sinks. */
  documents: DocumentName[];
  log: { level: string; pretty: boolean };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

/**
 * Settings that protect the service: a misspelling of one, while it is not set itself, stops
 * start-up instead of only warning, because the service would run without the protection
 * (no callback secret, no admin token, callbacks from anywhere, unsigned webhooks).
 */
const PROTECTION_SETTINGS = new Set([
  "CALLBACK_SECRET",
  "ALLOWED_CIDRS",
  "ADMIN_TOKEN",
  "HTTP_SINK_SECRET",
]);

/** Parses the environment once; the result is frozen so nothing changes it later. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const settings = cleanEnv(env);
  const misspelt = misspeltVariables(settings);
  const parsed = configSchema.safeParse(settings);
  // FINAPI_CLIENT_ID "is required" while FINAPI_CLIENTID is set: say so beside it.
  const typoOf = new Map(misspelt.map(({ variable, meant }) => [meant, variable]));
  const problems = parsed.success
    ? []
    : parsed.error.issues.map((issue) => {
        // A check of several variables names its subject at the start of its message.
        const name = issue.path[0] ?? /^([A-Z][A-Z0-9_]*):/.exec(issue.message)?.[1];
        if (name === undefined) return issue.message;
        const problem = issue.message.startsWith(String(name))
          ? issue.message
          : `${String(name)}: ${issue.message}`;
        const typo = typoOf.get(String(name));
        typoOf.delete(String(name));
        return typo ? `${problem} (${typo} is set: a misspelling of ${String(name)}?)` : problem;
      });
  for (const { variable, meant, meantIsSet } of misspelt) {
    if (!PROTECTION_SETTINGS.has(meant) || meantIsSet || !typoOf.has(meant)) continue;
    problems.push(
      `${variable} is set, but no variable of that name is read: did you mean ${meant}? Rename it (or unset it): the service does not start without the protection ${meant} gives`,
    );
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  const e = parsed.data;
  const preset = FINAPI_PRESETS[e.FINAPI_ENV];
  const unconfirmed = preset.unconfirmed.filter(
    (name) =>
      (name.startsWith("FINAPI_PROCESSCTRL_URL") && !e.FINAPI_PROCESSCTRL_URL) ||
      (name.startsWith("FINAPI_DI_URL") && !e.FINAPI_DI_URL),
  );
  // Only a warning about finAPI's own hosts: against a simulator or proxy it means nothing.
  if (e.FINAPI_KREDITCHECK_PATH === DEFAULT_KREDITCHECK_PATH && !e.FINAPI_PROCESSCTRL_URL) {
    unconfirmed.push(
      "FINAPI_KREDITCHECK_PATH (from finAPI's integration guide, not its public API table)",
    );
  }
  const config: Config = {
    nodeEnv: e.NODE_ENV,
    http: {
      host: e.HOST,
      port: e.PORT,
      callbackPath:
        e.CALLBACK_PATH.length > 1 ? e.CALLBACK_PATH.replace(/\/+$/, "") : e.CALLBACK_PATH,
      bodyLimitBytes: 64 * 1024,
      requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
      maxConnections: e.MAX_CONNECTIONS,
      allowedCidrs: e.ALLOWED_CIDRS ?? LOOPBACK_CIDRS,
      trustProxy:
        e.TRUST_PROXY === undefined
          ? false
          : /^\d+$/.test(e.TRUST_PROXY)
            ? Number(e.TRUST_PROXY)
            : e.TRUST_PROXY,
      callbackSecret: e.CALLBACK_SECRET,
    },
    admin: { host: e.ADMIN_HOST, port: e.ADMIN_PORT, token: e.ADMIN_TOKEN },
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    shutdownDelayMs: e.SHUTDOWN_DELAY_MS,
    store: {
      url: e.STORE_URL,
      kind: POSTGRES_URL.test(e.STORE_URL) ? "postgres" : "sqlite",
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
    retention: {
      doneMs: e.DONE_RETENTION_MS === 0 ? null : e.DONE_RETENTION_MS,
      deadMs: e.DEAD_RETENTION_MS === 0 ? null : e.DEAD_RETENTION_MS,
      pruneIntervalMs: e.PRUNE_INTERVAL_MS,
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
      names: e.SINKS,
      fileDir: e.FILE_SINK_DIR,
      http:
        e.HTTP_SINK_URL && e.HTTP_SINK_SECRET
          ? { url: e.HTTP_SINK_URL, secret: e.HTTP_SINK_SECRET, timeoutMs: e.HTTP_SINK_TIMEOUT_MS }
          : undefined,
      postgres: postgresSinkTarget(e),
      moduleTimeoutMs: e.MODULE_SINK_TIMEOUT_MS,
      unusedSettings: unusedSinkSettings(settings, e.SINKS),
    },
    misspelt,
    proxies: egressProxies(e),
    documents: e.FETCH_DOCUMENTS,
    log: { level: e.LOG_LEVEL, pretty: e.LOG_PRETTY },
  };
  return deepFreeze(config);
}

/** Read by the command-line tool (npm run cli), not by the service. */
const CLI_VARIABLES = ["ADMIN_URL"];

/**
 * Variables set that nothing reads but that are a letter or two from one that something
 * does (SINK for SINKS, FILE_SINK_DIRS, a lower-case sinks): most likely typos, and the
 * setting meant silently keeps its default. Names of up to 5 letters get one edit, longer
 * ones two: HOST is two from HOME, PORT two from PGPORT, and both are set everywhere.
 */
function misspeltVariables(settings: Record<string, string>): Config["misspelt"] {
  const read = new Set([...Object.keys(envSchema.shape), ...CLI_VARIABLES]);
  const names = [...read].filter((name) => name === name.toUpperCase());
  return Object.keys(settings).flatMap((variable) => {
    if (read.has(variable)) return [];
    // A duration without its unit (SHUTDOWN_TIMEOUT for SHUTDOWN_TIMEOUT_MS) is three edits.
    const withUnit = `${variable.toUpperCase()}_MS`;
    const meant = read.has(withUnit)
      ? withUnit
      : nearest(variable.toUpperCase(), names, (name) => (name.length <= 5 ? 1 : 2));
    return meant === undefined ? [] : [{ variable, meant, meantIsSet: meant in settings }];
  });
}

type ProxyVariable = "HTTP_PROXY" | "HTTPS_PROXY" | "ALL_PROXY" | "NO_PROXY";

/** A variable's value, the lower-case name winning over the upper-case one, as in axios. */
function proxySetting(e: EnvOutput, name: ProxyVariable) {
  const lower = name.toLowerCase() as Lowercase<ProxyVariable>;
  const variable = e[lower] !== undefined ? lower : name;
  const value = e[variable];
  return value === undefined ? undefined : { value, variable };
}

/**
 * The proxies the outgoing calls use: per scheme, and ALL_PROXY only for a scheme that has
 * none of its own. host:port reads as http://host:port.
 */
function effectiveProxies(e: EnvOutput): Partial<Record<"http" | "https" | "all", EgressProxy>> {
  const proxy = (name: ProxyVariable): EgressProxy | undefined => {
    const found = proxySetting(e, name);
    if (!found) return undefined;
    const url = found.value.includes("://") ? found.value : `http://${found.value}`;
    return { url, variable: found.variable };
  };
  const http = proxy("HTTP_PROXY");
  const https = proxy("HTTPS_PROXY");
  const all = http && https ? undefined : proxy("ALL_PROXY");
  return { ...(http && { http }), ...(https && { https }), ...(all && { all }) };
}

/** The proxy settings in effect, each with its variable (checked by checkCombinations). */
function egressProxies(e: EnvOutput): EgressProxies {
  const { http, https, all } = effectiveProxies(e);
  const noProxy = proxySetting(e, "NO_PROXY");
  return {
    http,
    https,
    all,
    noProxy: noProxy && { hosts: noProxy.value, variable: noProxy.variable },
  };
}

/** proxy-addr's names for ranges in TRUST_PROXY. */
const TRUST_KEYWORDS = new Set(["loopback", "linklocal", "uniquelocal"]);

/** The first IPv4 entry of a TRUST_PROXY list that is not four decimal parts, if any. */
function notFourPartDecimal(value: string): string | undefined {
  if (/^\d+$/.test(value)) return undefined;
  return value
    .split(",")
    .map((entry) => entry.trim())
    .find((entry) => {
      const address = entry.split("/")[0] ?? "";
      return (
        !TRUST_KEYWORDS.has(entry) &&
        !address.includes(":") &&
        !ipaddr.IPv4.isValidFourPartDecimal(address)
      );
    });
}

function compilesAsTrustProxy(value: string): boolean {
  try {
    // The library Express itself hands TRUST_PROXY to: what it refuses would crash start-up.
    proxyaddr.compile(value.split(",").map((entry) => entry.trim()));
    return true;
  } catch {
    return false;
  }
}

/**
 * A TRUST_PROXY range wider than any proxy network: a client there may claim an allowed
 * address in X-Forwarded-For. proxy-addr refuses /0 itself, but takes 0.0.0.0/1 or
 * ::ffff:0:0/96 (all of IPv4, written as IPv6). The widest usual ones stay: 10.0.0.0/8,
 * fc00::/7 (uniquelocal).
 */
function trustsNearlyAll(value: string): boolean {
  return value.split(",").some((entry) => {
    const range = trustRange(entry.trim());
    if (!range) return false;
    const [address, prefix] = range;
    if (address.kind() === "ipv4") return prefix < 8;
    const v6 = address as ipaddr.IPv6;
    // The IPv4-mapped block: its IPv4 part is the prefix's last 32 bits.
    if (v6.isIPv4MappedAddress() && prefix >= 96) return prefix - 96 < 8;
    // A range holding that whole block (::/8, say) trusts every IPv4 address too.
    return prefix < 7 || ipaddr.parseCIDR("::ffff:0:0/96")[0].match(v6, prefix);
  });
}

/**
 * A TRUST_PROXY entry with a range, as proxy-addr reads it: `address/prefix`, or an IPv4
 * address with a netmask (`0.0.0.0/128.0.0.0` is `0.0.0.0/1`: without this the netmask
 * spelling got past the width check). Undefined for a single address or a name.
 */
function trustRange(text: string): [ipaddr.IPv4 | ipaddr.IPv6, number] | undefined {
  if (ipaddr.isValidCIDR(text)) return ipaddr.parseCIDR(text);
  const slash = text.lastIndexOf("/");
  if (slash < 0) return undefined;
  const [address, mask] = [text.slice(0, slash), text.slice(slash + 1)];
  if (!ipaddr.IPv4.isValid(address) || !ipaddr.IPv4.isValid(mask)) return undefined;
  const prefix = ipaddr.IPv4.parse(mask).prefixLengthFromSubnetMask();
  return prefix === null ? undefined : [ipaddr.IPv4.parse(address), prefix];
}

function isHttpProxyUrl(url: string): boolean {
  if (!URL.canParse(url)) return false;
  const { protocol, hostname } = new URL(url);
  return (protocol === "http:" || protocol === "https:") && hostname !== "";
}

function hasUserWithoutPassword(url: string): boolean {
  const parsed = new URL(url);
  return parsed.username !== "" && parsed.password === "";
}

/**
 * Whether a URL carries a user name or password. Zod runs a refinement even after the
 * URL check failed, so `url` may be no URL at all: that is the URL check's to report
 * (a throw here would end loadConfig with a bare "Invalid URL", naming no variable).
 */
function hasUserinfo(url: string): boolean {
  if (!URL.canParse(url)) return false;
  const parsed = new URL(url);
  return parsed.username !== "" || parsed.password !== "";
}

/**
 * An @ after the host: a password starting with / ? # (or a user name holding one) ended
 * the host early (`postgres://kc:/pw@db/x` is host "kc"), and the rest, password and all,
 * was taken for the path, query or fragment.
 */
function hasAtAfterHost(url: URL): boolean {
  return `${url.pathname}${url.search}${url.hash}`.includes("@");
}

/** A postgres:// URL must be one pg reads; other values are the other checks' to judge. */
function pgCanReadIfPostgres(url: string): boolean {
  return !POSTGRES_URL.test(url) || pgCanRead(url);
}

/**
 * Whether the pg driver reads a postgres:// URL, as its parser (pg-connection-string's
 * parse) does: spaces and a stray % encoded first, then the WHATWG URL parser, again with
 * a placeholder host for `user@/db` (host from PGHOST). One it refuses would stop start-up
 * later with a bare "Invalid URL", after this run's other problems were reported.
 */
function pgCanRead(url: string): boolean {
  let text = url;
  if (/ |%[^a-f0-9]|%[a-f0-9][^a-f0-9]/i.test(text)) {
    try {
      text = encodeURI(text).replace(/%25(\d\d)/g, "%$1");
    } catch {
      return false;
    }
  }
  const parsed =
    URL.parse(text, "postgres://base") ??
    URL.parse(text.replace("@/", "@___DUMMY___/"), "postgres://base");
  if (!parsed) return false;
  // The driver would call the wrong host.
  if (hasAtAfterHost(parsed)) return false;
  // Then it decodes the parts, and a stray escape such as %ff is a URIError there.
  try {
    decodeURIComponent(parsed.username);
    decodeURIComponent(parsed.password);
    decodeURIComponent(parsed.hostname);
    decodeURI(parsed.pathname);
    return true;
  } catch {
    return false;
  }
}

function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function postgresSinkTarget(e: EnvOutput): Config["sinks"]["postgres"] {
  const common = { schema: e.PG_SCHEMA, timeoutMs: e.POSTGRES_SINK_TIMEOUT_MS };
  if (e.POSTGRES_SINK_URL) {
    return { url: e.POSTGRES_SINK_URL, variable: "POSTGRES_SINK_URL", ...common };
  }
  return POSTGRES_URL.test(e.STORE_URL)
    ? { url: e.STORE_URL, variable: "STORE_URL", ...common }
    : undefined;
}

/** The value of a query parameter that carries a secret (libpq's `password`, `sslpassword`, …). */
const SECRET_QUERY_VALUE = /([?&][^=&#]*(?:pass|secret|token|key)[^=&#]*=)[^&#]*/gi;

/**
 * A URL fit for logs: the password, if any, and secret query parameters replaced. A URL
 * with an unencoded "@", "/", "#" or "?" in its password is refused or misread by the URL
 * parser; such a one is masked from the first ":" after the user name to the last "@",
 * which may hide more than the password but never shows part of it.
 */
export function redactUrl(url: string): string {
  if (url.indexOf("@") === url.lastIndexOf("@")) {
    try {
      const parsed = new URL(url);
      // Its password is where the parser does not look: masked by the pattern below.
      if (hasAtAfterHost(parsed)) throw new Error();
      if (parsed.password) parsed.password = "***";
      // The values only, by pattern: URLSearchParams would re-encode the whole query.
      parsed.search = parsed.search.replace(SECRET_QUERY_VALUE, "$1***");
      return parsed.toString();
    } catch {
      // masked below
    }
  }
  // The user name may hold an "@" too (Azure's legacy `user@server` logins): from the
  // first ":" after the scheme, wherever the user name's "@" are, to the last "@".
  return url
    .replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/]*:).*@/i, "$1***@")
    .replace(SECRET_QUERY_VALUE, "$1***");
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

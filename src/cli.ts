import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { adminClient, answerTimeoutMs, CliError } from "./admin/admin-client.js";
import { AdminTargetError, cliTarget } from "./admin/cli-target.js";
import {
  ERROR_CODE,
  knownErrorCodes,
  noMatchHint,
  OlderServiceError,
  retryJobs,
  retryPath,
  unknownCodeWarning,
} from "./admin/retry-dead.js";
import { loadEnvFile } from "./env-file.js";

/**
 * Admin CLI: `npm run cli -- <command>`. It talks to the running service's admin API
 * (ADMIN_PORT), so it sees the same inbox whatever the store is.
 */
const COMMANDS: Record<
  string,
  { usage: string; summary: string; options: readonly string[]; arguments: number }
> = {
  jobs: {
    options: ["state", "limit", "after", "process-token", "kreditcheck-id"],
    arguments: 0,
    usage:
      "jobs [--state pending|running|done|dead] [--limit N] [--after <job id> (pages in id order; prints next)] [--process-token <token>] [--kreditcheck-id <id>]",
    summary:
      "list jobs, most recently updated first; with --process-token and/or --kreditcheck-id, the jobs of that check (latest received first)",
  },
  job: {
    options: [],
    arguments: 1,
    usage: "job <id>",
    summary: "show one job: attempts, last error, timings",
  },
  retry: {
    options: ["all-dead", "all-pending", "code", "fresh"],
    arguments: 1,
    usage:
      "retry <id> [--fresh] | retry --all-dead [--code <error code>] [--fresh] | retry --all-pending [--code <error code>]",
    summary:
      "dead job: back to pending with fresh attempts (a fetched bundle goes to the sinks that lack it; --fresh: fetched again for every sink); done job: fetched and delivered again; pending job: due now; --all-dead: every dead job, or those whose last error has that code; --all-pending: every pending job (or those whose last error has that code) due now, e.g. after an outage instead of waiting out each one's backoff",
  },
  replay: {
    options: [],
    arguments: 1,
    usage: "replay <callback.json>",
    summary:
      "enqueue a callback from a JSON file, its bytes sent as they are: checked as finAPI's callback is",
  },
  fetch: {
    options: ["process-token", "kreditcheck-id", "status"],
    arguments: 0,
    usage: "fetch --process-token <token> --kreditcheck-id <id> [--status SUCCESSFUL]",
    summary:
      "fetch one check from finAPI now and print the bundle (nothing is enqueued or delivered)",
  },
};

const COMMON = `Options for every command:
  --admin-url <url>   admin API (default $ADMIN_URL, else $ADMIN_HOST:$ADMIN_PORT, 127.0.0.1:9090)
  --token <token>     admin token (default $ADMIN_TOKEN; prefer that or .env: other users
                      of this machine can read a --token in the process list)
  --help              this help`;

function usage(command?: string): string {
  if (command && COMMANDS[command]) {
    const entry = COMMANDS[command];
    return `Usage: npm run cli -- ${entry.usage}\n\n${entry.summary}\n\n${COMMON}\n`;
  }
  const lines = Object.values(COMMANDS).map(
    (entry) => `  ${entry.usage.padEnd(72)} ${entry.summary}`,
  );
  return `Usage: npm run cli -- <command> [options]\n\nCommands:\n${lines.join("\n")}\n\n${COMMON}\n`;
}

async function main(argv: string[]): Promise<number> {
  const unreadable = loadEnvFile();
  if (unreadable) {
    process.stderr.write(`kreditcheck-receiver cli: ${unreadable}\n`);
    return 2;
  }
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      "admin-url": { type: "string" },
      token: { type: "string" },
      state: { type: "string" },
      limit: { type: "string" },
      after: { type: "string" },
      "process-token": { type: "string" },
      "kreditcheck-id": { type: "string" },
      status: { type: "string" },
      "all-dead": { type: "boolean" },
      "all-pending": { type: "boolean" },
      code: { type: "string" },
      fresh: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [command, argument, ...extra] = positionals;
  if (values.help || !command) {
    process.stdout.write(usage(command));
    return command || values.help ? 0 : 2;
  }
  const spec = COMMANDS[command];
  if (!spec) throw new CliError(`unknown command "${command}"\n\n${usage()}`);
  // Refused, not ignored: `retry <a> <b>` would retry only <a>, `jobs --code x` list all.
  const surplus = [...(argument !== undefined && spec.arguments === 0 ? [argument] : []), ...extra];
  if (surplus.length > 0) {
    throw new CliError(
      `${command} takes no argument ${surplus.map((text) => JSON.stringify(text)).join(", ")}\n\n${usage(command)}`,
    );
  }
  const foreign = Object.keys(values).filter(
    (name) => !["admin-url", "token", "help", ...spec.options].includes(name),
  );
  if (foreign.length > 0) {
    throw new CliError(
      `${command} has no option ${foreign.map((name) => `--${name}`).join(", ")}\n\n${usage(command)}`,
    );
  }

  const { adminUrl, token, source } = cliTarget(process.env, {
    adminUrl: values["admin-url"],
    token: values.token,
  });
  const call = adminClient({
    adminUrl,
    token,
    source,
    tokenFrom: values.token !== undefined ? "--token" : "ADMIN_TOKEN",
    timeoutMs: answerTimeoutMs(command),
  });
  const needArgument = (what: string) => {
    if (!argument) throw new CliError(`missing ${what}\n\n${usage(command)}`);
    return argument;
  };

  let result: unknown;
  switch (command) {
    case "jobs": {
      const query = new URLSearchParams();
      if (values.state) query.set("state", values.state);
      if (values.limit) query.set("limit", values.limit);
      // The API's cursor: all jobs one page at a time, each once (`next` is the next --after).
      if (values.after !== undefined) query.set("after", values.after);
      const wanted = {
        processToken: values["process-token"],
        kreditCheckId: values["kreditcheck-id"],
      };
      if (wanted.processToken !== undefined) query.set("processToken", wanted.processToken);
      if (wanted.kreditCheckId !== undefined) query.set("kreditCheckId", wanted.kreditCheckId);
      result = await call("GET", `/jobs${query.size > 0 ? `?${query}` : ""}`);
      // A service older than these parameters ignores them and lists every check's jobs.
      const listed = (result as { jobs?: Record<string, unknown>[] }).jobs ?? [];
      const foreign = listed.filter(
        (job) =>
          (wanted.processToken !== undefined && job.processToken !== wanted.processToken) ||
          (wanted.kreditCheckId !== undefined && job.kreditCheckId !== wanted.kreditCheckId),
      );
      if (foreign.length > 0) {
        throw new CliError(
          "the admin API answered jobs of other checks: the service is older than --process-token and --kreditcheck-id (update it)",
        );
      }
      break;
    }
    case "job":
      result = await call("GET", `/jobs/${encodeURIComponent(needArgument("<id>"))}`);
      break;
    case "retry":
      if (values["all-dead"] || values["all-pending"]) {
        const state = values["all-dead"] ? "dead" : "pending";
        if (values["all-dead"] && values["all-pending"]) {
          throw new CliError(`give --all-dead or --all-pending, not both\n\n${usage(command)}`);
        }
        if (argument)
          throw new CliError(`give a job id or --all-${state}, not both\n\n${usage(command)}`);
        if (state === "pending" && values.fresh) {
          throw new CliError(
            `--fresh is for dead and done jobs; a pending job keeps what it fetched\n\n${usage(command)}`,
          );
        }
        if (values.code !== undefined && !ERROR_CODE.test(values.code)) {
          throw new CliError(
            `--code ${JSON.stringify(values.code)} is not an error code (like finapi_forbidden: lower case, digits, _)`,
          );
        }
        const code = values.code;
        const unknown = code === undefined ? undefined : unknownCodeWarning(code, state);
        if (unknown) process.stderr.write(`kreditcheck-receiver cli: warning: ${unknown}\n`);
        const codesSeen = new Set<string>();
        const retried = await retryJobs(call, code, values.fresh === true, codesSeen, state);
        // A run that retried nothing says why, instead of a bare "requeued": 0; with a
        // code the service does not know (a typo, most likely) it is an error.
        if (
          code !== undefined &&
          retried.requeued === 0 &&
          retried.failed.length === 0 &&
          !retried.noLongerPending
        ) {
          const hint = noMatchHint(code, codesSeen, state);
          if (unknown) {
            throw new CliError(
              `no ${state} job has code ${code}; nothing was requeued.${hint} The service's error codes: ${knownErrorCodes()}`,
            );
          }
          process.stderr.write(
            `kreditcheck-receiver cli: no ${state} job has code ${code}.${hint}\n`,
          );
        }
        process.stdout.write(`${JSON.stringify(retried, null, 2)}\n`);
        // Some jobs not put back, or the run cut short: say so in the exit status too.
        return retried.failed.length > 0 || retried.error !== undefined ? 1 : 0;
      } else {
        if (values.code !== undefined) {
          throw new CliError(`--code goes with --all-dead or --all-pending\n\n${usage(command)}`);
        }
        result = await call("POST", retryPath(needArgument("<id>"), values.fresh === true));
      }
      break;
    case "replay": {
      if (!argument) throw new CliError(`missing <callback.json>\n\n${usage(command)}`);
      // The file's bytes as they are: the service reads them as it reads finAPI's (a
      // duplicate key, bytes that are not UTF-8 refused; a BOM taken), where a parse and
      // re-serialisation here would have kept the last of two keys and replaced bad bytes.
      let bytes: Buffer;
      try {
        bytes = await readFile(argument);
      } catch (error) {
        throw new CliError(`cannot read ${argument}: ${(error as Error).message}`);
      }
      result = await call("POST", "/callbacks", bytes);
      const replayed = result as { duplicate?: unknown; id?: unknown };
      if (replayed.duplicate === true && typeof replayed.id === "string") {
        // A stored callback is not run again by a replay: say what is there and what would.
        const job = (await call("GET", `/jobs/${encodeURIComponent(replayed.id)}`).catch(
          () => undefined,
        )) as { state?: unknown } | undefined;
        const state = typeof job?.state === "string" ? ` (${job.state})` : "";
        process.stderr.write(
          `kreditcheck-receiver cli: this callback is stored already as job ${replayed.id}${state}; a replay does not run it again: npm run cli -- retry ${replayed.id}\n`,
        );
      }
      break;
    }
    case "fetch": {
      const processToken = values["process-token"];
      const kreditCheckId = values["kreditcheck-id"];
      if (!processToken || !kreditCheckId) {
        throw new CliError(
          `--process-token and --kreditcheck-id are required\n\n${usage(command)}`,
        );
      }
      result = await call("POST", "/checks/fetch", {
        processToken,
        kreditCheckId,
        status: values.status,
      });
      break;
    }
  }
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  return 0;
}

/**
 * Exits once stdout and stderr have taken everything: process.exit drops what a pipe has
 * not accepted yet (beyond its 64 KiB when the reader is slower), cutting the JSON short.
 */
function exitWhenWritten(code: number): void {
  process.stdout.write("", () => process.stderr.write("", () => process.exit(code)));
}

main(process.argv.slice(2)).then(exitWhenWritten, (error: unknown) => {
  process.stderr.write(
    `kreditcheck-receiver cli: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  exitWhenWritten(
    error instanceof CliError ||
      error instanceof AdminTargetError ||
      error instanceof OlderServiceError ||
      (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
      ? 2
      : 1,
  );
});

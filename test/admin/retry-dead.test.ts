import { describe, expect, it } from "vitest";
import {
  type AdminCall,
  errorCodesOf,
  knownErrorCodes,
  retryJobs,
  unknownCodeWarning,
} from "../../src/admin/retry-dead.js";
import { type ErrorCode, ReceiverError } from "../../src/errors.js";
import { deliveryFailure } from "../../src/pipeline/process-check.js";
import { decideRetry } from "../../src/pipeline/retry.js";

const POLICY = { maxAttempts: 3, maxAgeMs: 86_400_000, baseMs: 10, maxMs: 100 };

function failure(code: ErrorCode, message: string, retryable = false): ReceiverError {
  return new ReceiverError(message, { code, retryable, fix: "do something." });
}

/** A job's last error as the worker writes it when the job dies of `error`. */
function lastErrorFor(error: ReceiverError): string {
  const decision = decideRetry(error, { attempts: 3, receivedAt: new Date() }, POLICY, Date.now());
  if (decision.action !== "dead") throw new Error("expected the job to die");
  return decision.reason;
}

const forbidden = lastErrorFor(failure("finapi_forbidden", "finAPI refused access (403)."));
const gaveUpOnDisk = lastErrorFor(
  deliveryFailure([
    { sink: "file", error: failure("file_sink_write_failed", "could not write: ENOSPC", true) },
    { sink: "stdout", error: failure("stdout_closed", "standard output is closed (EPIPE)", true) },
  ]),
);
// A delivery failure whose message quotes another code in free text.
const rejected = lastErrorFor(
  deliveryFailure([
    {
      sink: "http",
      error: failure(
        "http_sink_rejected",
        'HTTP_SINK_URL answered 422: {"detail":"(x: finapi_forbidden: y)"}',
      ),
    },
  ]),
);

const quoting = lastErrorFor(
  deliveryFailure([
    {
      sink: "http",
      error: failure("http_sink_rejected", "HTTP_SINK_URL answered 422: a; b: finapi_forbidden: c"),
    },
  ]),
);

/**
 * The admin API over dead jobs, as the stores serve it: id order after a cursor, `limit`
 * per page, `next` when a page is full. A job in `diesAgain` is dead again at once after
 * a retry (same id); `refused` ids answer 409.
 */
function fakeAdmin(
  dead: { id: string; lastError: string; lastErrorCodes?: string[] | null }[],
  options: {
    diesAgain?: string[];
    refused?: string[];
    /** After this many retries: no answer at all, or this status for every one. */
    downAfterPosts?: number;
    statusWhenDown?: number;
    /** A service from before the cursor: no `next`, `after` ignored. */
    old?: boolean;
  } = {},
) {
  const jobs = new Map(dead.map((job) => [job.id, job]));
  const posts: string[] = [];
  let gets = 0;
  const call: AdminCall = async (method, path) => {
    if (method === "GET") {
      gets += 1;
      const url = new URL(path, "http://admin");
      expect(url.pathname).toBe("/jobs");
      expect(url.searchParams.get("state")).toBe("dead");
      const after = url.searchParams.get("after") ?? "";
      const limit = Number(url.searchParams.get("limit"));
      if (options.old) return { jobs: [...jobs.values()].slice(0, limit), counts: {} };
      const page = [...jobs.values()]
        .filter((job) => job.id > after)
        .sort((a, b) => (a.id < b.id ? -1 : 1))
        .slice(0, limit);
      return { jobs: page, next: page.length === limit ? (page.at(-1)?.id ?? null) : null };
    }
    if (options.downAfterPosts !== undefined && posts.length >= options.downAfterPosts) {
      const status = options.statusWhenDown;
      throw Object.assign(new Error(status ? `→ ${status}` : "cannot reach the admin API"), {
        status,
      });
    }
    const url = new URL(path, "http://admin");
    const id = decodeURIComponent(url.pathname.split("/")[2] ?? "");
    // Sent with every retry of a run: the job only if it is still dead.
    expect(url.searchParams.get("ifState")).toBe("dead");
    posts.push(id);
    if (options.refused?.includes(id)) {
      throw Object.assign(new Error(`POST /admin/jobs/${id}/retry → 409`), { status: 409 });
    }
    if (!options.diesAgain?.includes(id)) jobs.delete(id);
    // As the service answers: the condition echoed (a service older than it would not).
    return { requeued: true, id, previousState: "dead", ifState: "dead" };
  };
  return { call, posts, gets: () => gets };
}

const idOf = (index: number) => `00000000-0000-7000-8000-${String(index).padStart(12, "0")}`;

describe("retry --all-dead", () => {
  it("reads the codes a dead job's last error names, its sinks' included, and no others", () => {
    expect(errorCodesOf(forbidden)).toEqual(["finapi_forbidden"]);
    expect(errorCodesOf(gaveUpOnDisk)).toEqual([
      "sink_delivery_failed",
      "file_sink_write_failed",
      "stdout_closed",
    ]);
    expect(errorCodesOf(rejected)).toEqual(["sink_delivery_failed", "http_sink_rejected"]);
    expect(errorCodesOf("")).toEqual([]);
  });

  it("puts back each of 2,500 dead jobs once, though some die again at once and some are refused", async () => {
    const dead = Array.from({ length: 2500 }, (_, index) => ({
      id: idOf(index),
      lastError: index % 2 === 0 ? forbidden : gaveUpOnDisk,
    }));
    const admin = fakeAdmin(dead, {
      diesAgain: [idOf(1), idOf(1500)],
      refused: [idOf(7), idOf(2499)],
    });
    const result = await retryJobs(admin.call);
    expect(result.requeued).toBe(2498);
    expect(result.failed.map((entry) => entry.id)).toEqual([idOf(7), idOf(2499)]);
    expect(result.error).toBeUndefined();
    expect(new Set(admin.posts).size).toBe(2500);
    expect(admin.posts).toHaveLength(2500);
    expect(admin.gets()).toBe(3);
  });

  it("with --code, retries the jobs with that code wherever they are in the list", async () => {
    const dead = Array.from({ length: 1500 }, (_, index) => ({
      id: idOf(index),
      // The matching jobs are the oldest: behind 1,000 that do not match.
      lastError: index < 5 ? gaveUpOnDisk : index < 1200 ? rejected : forbidden,
    }));
    expect((await retryJobs(fakeAdmin(dead).call, "stdout_closed")).requeued).toBe(5);
    expect((await retryJobs(fakeAdmin(dead).call, "finapi_forbidden")).requeued).toBe(300);
    expect((await retryJobs(fakeAdmin(dead).call, "no_such_code")).requeued).toBe(0);
  });

  it("with --code, goes by the codes the store kept, and reads the text only where there are none", async () => {
    const dead = [
      // The text quotes a receiver's answer that reads like a sink's code; the store knows better.
      {
        id: idOf(1),
        lastError: quoting,
        lastErrorCodes: ["sink_delivery_failed", "http_sink_rejected"],
      },
      { id: idOf(2), lastError: gaveUpOnDisk, lastErrorCodes: null },
      { id: idOf(3), lastError: forbidden },
      { id: idOf(4), lastError: "unexpected_error: stdout_closed: x", lastErrorCodes: [] },
    ];
    const run = async (code: string) => (await retryJobs(fakeAdmin(dead).call, code)).ids;
    expect(await run("http_sink_rejected")).toEqual([idOf(1)]);
    expect(await run("stdout_closed")).toEqual([idOf(2)]);
    expect(await run("finapi_forbidden")).toEqual([idOf(3)]);
    expect(await run("unexpected_error")).toEqual([]);
    expect(errorCodesOf(quoting)).toContain("finapi_forbidden");
  });

  it("warns of a --code that is none of the service's, with the code it most likely meant", () => {
    expect(unknownCodeWarning("http_sink_rejected")).toBeUndefined();
    expect(unknownCodeWarning("http_sink_rejectd")).toBe(
      "--code http_sink_rejectd is none of the service's error codes (did you mean http_sink_rejected?); looking for dead jobs with it anyway, as a module sink may use codes of its own",
    );
    expect(unknownCodeWarning("queue_full")).not.toContain("did you mean");
    expect(knownErrorCodes()).toMatch(
      /^file_sink_write_failed, finapi_auth_failed, .*unsafe_file_name$/,
    );
  });

  it("refuses to page through a service that answers no cursor (an older release)", async () => {
    const dead = [{ id: idOf(1), lastError: forbidden }];
    await expect(retryJobs(fakeAdmin(dead, { old: true }).call)).rejects.toThrow(
      /older than this CLI/,
    );
  });

  it("stops at the first answer that would fail every job alike (the store is down)", async () => {
    const dead = Array.from({ length: 10 }, (_, index) => ({
      id: idOf(index),
      lastError: forbidden,
    }));
    const admin = fakeAdmin(dead, { downAfterPosts: 3, statusWhenDown: 503 });
    const result = await retryJobs(admin.call);
    expect(result).toMatchObject({ requeued: 3, failed: [], error: "→ 503" });
    expect(admin.posts).toHaveLength(3);
    // Nothing done at all: the error itself, as for any other command.
    await expect(
      retryJobs(fakeAdmin(dead, { downAfterPosts: 0, statusWhenDown: 401 }).call),
    ).rejects.toThrow("→ 401");
  });

  it("stops when the admin API goes away, with what it did so far", async () => {
    const dead = Array.from({ length: 10 }, (_, index) => ({
      id: idOf(index),
      lastError: forbidden,
    }));
    const result = await retryJobs(fakeAdmin(dead, { downAfterPosts: 4 }).call);
    expect(result).toEqual({
      requeued: 4,
      ids: dead.slice(0, 4).map((job) => job.id),
      failed: [],
      error: "cannot reach the admin API",
    });
  });
});

import { describe, expect, it } from "vitest";
import { type AdminCall, retryDeadJobs } from "../../src/admin/retry-dead.js";

/** An admin API over a list of dead jobs; `diesAgain` jobs are dead again right after a retry. */
function fakeAdmin(dead: { id: string; lastError: string }[], diesAgain: string[] = []) {
  const jobs = new Map(dead.map((job) => [job.id, job]));
  const retried: string[] = [];
  const call: AdminCall = async (method, path) => {
    if (method === "GET") {
      expect(path).toBe("/jobs?state=dead&limit=1000");
      return { jobs: [...jobs.values()] };
    }
    const id = decodeURIComponent(path.split("/")[2] ?? "");
    if (id === "taken") throw new Error("POST /admin/jobs/taken/retry → 409: job is pending");
    retried.push(id);
    if (!diesAgain.includes(id)) jobs.delete(id);
    return { requeued: true, id };
  };
  return { call, retried };
}

const DEAD = [
  { id: "a1", lastError: "finapi_forbidden: missing scope. Fix: ask finAPI" },
  {
    id: "a2",
    lastError:
      "gave up after 10 attempts (MAX_ATTEMPTS=10); last error: finapi_forbidden: missing scope",
  },
  { id: "b1", lastError: "file_sink_write_failed: could not write" },
  {
    id: "s1",
    lastError:
      "gave up after 10 attempts (MAX_ATTEMPTS=10); last error: sink_delivery_failed: delivery failed (file: file_sink_write_failed: disk full; stdout: stdout_closed: standard output is closed (write EPIPE)) Fix: …",
  },
  // Mentions the code, but its own code is another one.
  { id: "b2", lastError: "http_sink_rejected: the receiver said finapi_forbidden: no" },
];

describe("retry --all-dead", () => {
  it("puts back every dead job, each once, even one that dies again at once", async () => {
    const admin = fakeAdmin(DEAD, ["b1"]);
    const result = await retryDeadJobs(admin.call);
    expect(result).toEqual({ requeued: 5, ids: ["a1", "a2", "b1", "s1", "b2"], failed: [] });
    expect(admin.retried).toEqual(["a1", "a2", "b1", "s1", "b2"]);
  });

  it("with --code, only jobs whose last error has that code, also after 'gave up'", async () => {
    const admin = fakeAdmin(DEAD);
    expect((await retryDeadJobs(admin.call, "finapi_forbidden")).ids).toEqual(["a1", "a2"]);
    expect((await retryDeadJobs(admin.call, "no_such_code")).requeued).toBe(0);
    // A sink's code inside a delivery failure, and the delivery failure's own.
    expect((await retryDeadJobs(fakeAdmin(DEAD).call, "stdout_closed")).ids).toEqual(["s1"]);
    expect((await retryDeadJobs(fakeAdmin(DEAD).call, "file_sink_write_failed")).ids).toEqual([
      "b1",
      "s1",
    ]);
    expect((await retryDeadJobs(fakeAdmin(DEAD).call, "sink_delivery_failed")).ids).toEqual(["s1"]);
  });

  it("lists a job it could not put back and goes on with the others", async () => {
    const admin = fakeAdmin([{ id: "taken", lastError: "x: y" }, ...DEAD.slice(0, 1)]);
    const result = await retryDeadJobs(admin.call);
    expect(result.ids).toEqual(["a1"]);
    expect(result.failed).toEqual([
      { id: "taken", error: "POST /admin/jobs/taken/retry → 409: job is pending" },
    ]);
  });
});

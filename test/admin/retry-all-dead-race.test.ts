import { afterEach, describe, expect, it } from "vitest";
import { adminClient } from "../../src/admin/admin-client.js";
import { type AdminCall, retryJobs } from "../../src/admin/retry-dead.js";
import { CountingSink } from "../support/counting-sink.js";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";

describe("retry --all-dead, two operators at once", () => {
  let harness: Harness | undefined;
  afterEach(async () => {
    await harness?.close();
    harness = undefined;
  });

  it("lists in failed, and does not replay, a dead job another operator retried while the run held its page", async () => {
    const sink = new CountingSink();
    harness = await startHarness({ env: { MAX_ATTEMPTS: "1" }, service: { extraSinks: [sink] } });
    const h = harness;
    // finAPI refuses the first fetch (403): the job is dead at once.
    h.simulator.failNext("kreditcheck", 1, 403);
    const callback = makeCallback();
    const id = String((await h.post(callback)).body.id);
    await h.waitForJob(id, "dead");

    // Operator A's run, over the admin API with the CLI's own client.
    const call = adminClient({
      adminUrl: h.service.adminUrl,
      token: undefined,
      source: "ADMIN_URL",
      tokenFrom: "ADMIN_TOKEN",
      timeoutMs: 10_000,
    });
    // Between A's page and A's retry of the job on it, operator B retries the job, and
    // it is fetched and delivered.
    let racedOnce = false;
    const operatorA: AdminCall = async (method, path, body) => {
      const answer = await call(method, path, body);
      if (method === "GET" && !racedOnce) {
        racedOnce = true;
        const b = await fetch(`${h.service.adminUrl}/admin/jobs/${id}/retry`, { method: "POST" });
        expect(b.status).toBe(200);
        await h.waitForJob(id, "done");
      }
      return answer;
    };
    const result = await retryJobs(operatorA);

    expect(result.requeued).toBe(0);
    expect(result.failed).toEqual([
      {
        id,
        error: `POST /admin/jobs/${id}/retry?ifState=dead → 409: ${JSON.stringify({
          error: "job_not_retryable",
          details: [{ message: "job is done, not dead (ifState=dead): left as it is" }],
        })}`,
      },
    ]);
    // Left as B's retry left it: done, delivered once, not fetched a third time.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await h.service.inbox.get(id))?.state).toBe("done");
    expect(sink.deliveries.get(String(callback.kreditCheckId))).toBe(1);
    expect(h.simulator.stats().calls.kreditcheck).toBe(2);
  }, 30_000);
});

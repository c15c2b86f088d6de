import { createHmac, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startService } from "../../src/service.js";
import { type Harness, makeCallback, startHarness } from "../support/harness.js";
import { captureLogs } from "../support/log-capture.js";
import { waitFor } from "../support/wait-for.js";
import { type ReceivedWebhook, startWebhookReceiver } from "../support/webhook-receiver.js";

/** The Standard Webhooks check, written from the spec, independent of the sink's code. */
function verifies(webhook: ReceivedWebhook, secret: string): boolean {
  const id = String(webhook.headers["webhook-id"]);
  const timestamp = String(webhook.headers["webhook-timestamp"]);
  const key = secret.startsWith("whsec_")
    ? Buffer.from(secret.slice(6), "base64")
    : Buffer.from(secret);
  const expected = createHmac("sha256", key)
    .update(`${id}.${timestamp}.${webhook.rawBody}`)
    .digest();
  return String(webhook.headers["webhook-signature"])
    .split(" ")
    .some((signature) => {
      const [version, value] = signature.split(",");
      const given = Buffer.from(value ?? "", "base64");
      return (
        version === "v1" && given.length === expected.length && timingSafeEqual(given, expected)
      );
    });
}

describe("the http sink", () => {
  let harness: Harness | undefined;
  let receiver: Awaited<ReturnType<typeof startWebhookReceiver>> | undefined;
  afterEach(async () => {
    await harness?.close();
    await receiver?.close();
    harness = undefined;
    receiver = undefined;
  });

  it("posts the bundle signed so that the Standard Webhooks check verifies it (whsec_ secret)", async () => {
    receiver = await startWebhookReceiver();
    const secret = `whsec_${Buffer.from("a shared secret of 32 bytes.....").toString("base64")}`;
    harness = await startHarness({
      env: { SINKS: "file,http", HTTP_SINK_URL: receiver.url, HTTP_SINK_SECRET: secret },
    });
    const callback = makeCallback();
    await harness.post(callback);
    const fileBundle = await harness.waitForBundle(String(callback.kreditCheckId));
    const webhook = await waitFor(() => receiver?.received[0], "the webhook");

    expect(webhook.headers["content-type"]).toMatch(/^application\/json/);
    // The check's id, then 16 hex digits that name this bundle's content.
    const [checkId, digest] = String(webhook.headers["webhook-id"]).split(/\.(?=[^.]+$)/);
    expect(checkId).toBe(callback.kreditCheckId);
    expect(digest).toMatch(/^[0-9a-f]{16}$/);
    const timestamp = Number(webhook.headers["webhook-timestamp"]);
    expect(Math.abs(timestamp - Date.now() / 1000)).toBeLessThan(300);
    expect(verifies(webhook, secret)).toBe(true);
    expect(verifies({ ...webhook, rawBody: `${webhook.rawBody} ` }, secret)).toBe(false);
    expect(verifies(webhook, "whsec_b3RoZXI=")).toBe(false);
    expect(JSON.parse(webhook.rawBody)).toEqual(fileBundle);
  });

  it("uses a secret without the whsec_ prefix as raw bytes", async () => {
    receiver = await startWebhookReceiver();
    harness = await startHarness({
      env: { SINKS: "http", HTTP_SINK_URL: receiver.url, HTTP_SINK_SECRET: "a-plain-secret-of-20" },
    });
    await harness.post(makeCallback());
    const webhook = await waitFor(() => receiver?.received[0], "the webhook");
    expect(verifies(webhook, "a-plain-secret-of-20")).toBe(true);
  });

  it("retries only the failing sink: the receiver's two 503s cost attempts, the other sinks get the bundle once", async () => {
    receiver = await startWebhookReceiver((index) =>
      index < 2 ? { status: 503, headers: { "Retry-After": "0" } } : { status: 200 },
    );
    harness = await startHarness({
      env: {
        SINKS: "file,module:test/fixtures/recording-sink.mjs,http",
        HTTP_SINK_URL: receiver.url,
        HTTP_SINK_SECRET: "a-signing-secret",
      },
    });
    const callback = makeCallback();
    const accepted = await harness.post(callback);
    const job = await harness.waitForJob(accepted.body.id, "done");

    expect(job.attempts).toBe(3);
    expect(receiver.received).toHaveLength(3);
    // The same webhook-id every time: the receiver can tell a repeat.
    expect(new Set(receiver.received.map((webhook) => webhook.headers["webhook-id"])).size).toBe(1);
    const recorded = await readFile(join(harness.dir, "recorded-deliveries.log"), "utf8");
    expect(recorded).toBe(`${callback.kreditCheckId}\n`);
    // The done job records every sink that has the bundle, and no longer keeps the bundle
    // (bank data) it held for the retries: done jobs stay DONE_RETENTION_MS.
    expect(job.progress.deliveredSinks?.sort()).toEqual(["file", "http", "recording"]);
    expect(job.progress.bundle).toBeUndefined();
    expect(JSON.stringify(await harness.service.inbox.get(job.id))).not.toContain("dacReports");
    expect(harness.logs.text()).toContain("HTTP_SINK_URL answered 503");
  });

  it.each([
    [408, 2],
    [500, 2],
    [502, 2],
    [504, 2],
    [200, 1],
    [201, 1],
    [202, 1],
    [204, 1],
  ])(
    "after a %i from the receiver, the job is done in %i attempt(s): a moment's trouble is tried again, any 2xx is delivered",
    async (status, attempts) => {
      receiver = await startWebhookReceiver((index) =>
        index === 0 ? { status } : { status: 204 },
      );
      harness = await startHarness({
        env: { SINKS: "http", HTTP_SINK_URL: receiver.url, HTTP_SINK_SECRET: "a-signing-secret" },
      });
      const accepted = await harness.post(makeCallback());
      const job = await harness.waitForJob(accepted.body.id, "done");
      expect({ attempts: job.attempts, posts: receiver.received.length }).toEqual({
        attempts,
        posts: attempts,
      });
    },
  );

  it("keeps the webhook-id of a bundle fetched again with the same content, and changes it when the content changed", async () => {
    receiver = await startWebhookReceiver();
    harness = await startHarness({
      env: {
        SINKS: "http",
        HTTP_SINK_URL: receiver.url,
        HTTP_SINK_SECRET: "a-signing-secret",
        FINAPI_RETRIES: "0",
        DAC_CONCURRENCY: "1",
      },
    });
    // First fetch: one DAC report is missing (a problem); then the job is retried three
    // times, the last time with the same report missing again.
    harness.simulator.failNext("dac", 1, 404);
    const accepted = await harness.post(makeCallback());
    const id = String(accepted.body.id);
    await harness.waitForJob(id, "done");
    for (const count of [2, 3, 4]) {
      if (count === 4) harness.simulator.failNext("dac", 1, 404);
      expect(await harness.service.inbox.requeue(id)).toEqual({ fellBackToFresh: false });
      await waitFor(() => receiver?.received[count - 1], `webhook ${count}`);
      await harness.waitForJob(id, "done");
    }
    const [partial, complete, again, partialAgain] = receiver.received.map((webhook) => ({
      id: webhook.headers["webhook-id"],
      bundle: JSON.parse(webhook.rawBody) as { problems: unknown[]; completedAt: string },
    }));
    expect(partial?.bundle.problems).toHaveLength(1);
    expect(complete?.bundle.problems).toEqual([]);
    // New content, new id: a receiver that drops repeats takes the complete bundle.
    expect(complete?.id).not.toBe(partial?.id);
    // The same content assembled again (only its completedAt differs): a repeat, same id.
    expect(again?.bundle.completedAt).not.toBe(complete?.bundle.completedAt);
    expect(again?.id).toBe(complete?.id);
    // The same report missing again: its problem's text names other request ids (ours and
    // finAPI's), but the content is the same, so the id is too.
    expect(partialAgain?.bundle.problems).toHaveLength(1);
    expect(JSON.stringify(partialAgain?.bundle.problems)).not.toBe(
      JSON.stringify(partial?.bundle.problems),
    );
    expect(partialAgain?.id).toBe(partial?.id);
  });

  it("after a shutdown in the middle of a delivery, resumes with the same bundle: no second fetch, no sink twice, the same webhook-id", async () => {
    // The first POST is never answered: the service is stopped while it waits.
    receiver = await startWebhookReceiver((index) => ({ status: 204, hang: index === 0 }));
    harness = await startHarness({
      env: {
        SINKS: "module:test/fixtures/recording-sink.mjs,http",
        HTTP_SINK_URL: receiver.url,
        HTTP_SINK_SECRET: "a-signing-secret",
        HTTP_SINK_TIMEOUT_MS: "30000",
        SHUTDOWN_TIMEOUT_MS: "300",
      },
    });
    const callback = makeCallback();
    const id = String((await harness.post(callback)).body.id);
    await waitFor(() => receiver?.received[0], "the first POST");
    await harness.service.close();

    // The next start (a new release, after docker stop) on the same inbox.
    const fetchesBefore = harness.simulator.stats().calls.kreditcheck;
    const restarted = await startService(harness.config, { logger: captureLogs().logger });
    try {
      await waitFor(async () => (await restarted.inbox.get(id))?.state === "done", "job done");
    } finally {
      await restarted.close();
    }
    expect(harness.simulator.stats().calls.kreditcheck).toBe(fetchesBefore);
    const recorded = await readFile(join(harness.dir, "recorded-deliveries.log"), "utf8");
    expect(recorded).toBe(`${callback.kreditCheckId}\n`);
    const [first, second] = receiver.received;
    expect(second?.headers["webhook-id"]).toBe(first?.headers["webhook-id"]);
    expect(second?.rawBody).toBe(first?.rawBody);
  });

  it("waits for the receiver's Retry-After before posting again", async () => {
    const postedAt: number[] = [];
    receiver = await startWebhookReceiver((index) => {
      postedAt.push(Date.now());
      return index === 0 ? { status: 429, headers: { "Retry-After": "1" } } : { status: 204 };
    });
    harness = await startHarness({
      env: { SINKS: "http", HTTP_SINK_URL: receiver.url, HTTP_SINK_SECRET: "a-signing-secret" },
    });
    await harness.post(makeCallback());
    await waitFor(() => postedAt.length >= 2, "the second post");
    expect((postedAt[1] ?? 0) - (postedAt[0] ?? 0)).toBeGreaterThanOrEqual(950);
  });

  // Not idle (a byte every 100 ms) but never done is abandoned too: the limit is on the
  // whole post, not on a pause.
  it.each([
    ["does not answer", { hang: true }],
    ["trickles its answer on", { trickle: true, status: 200 }],
  ])(
    "abandons a post whose receiver %s past HTTP_SINK_TIMEOUT_MS, and posts again",
    async (_what, stall) => {
      receiver = await startWebhookReceiver((index) => ({
        status: 204,
        ...(index === 0 ? stall : {}),
      }));
      harness = await startHarness({
        env: {
          SINKS: "http",
          HTTP_SINK_URL: receiver.url,
          HTTP_SINK_SECRET: "a-signing-secret",
          HTTP_SINK_TIMEOUT_MS: "300",
        },
      });
      const accepted = await harness.post(makeCallback());
      const job = await harness.waitForJob(accepted.body.id, "done");
      expect(job.attempts).toBe(2);
      expect(receiver.received).toHaveLength(2);
      // Abandoned at the limit: the next post follows within the limit plus the backoff
      // (at most 200 ms here), with room for a loaded machine, not many limits later.
      const [first, second] = receiver.received as [ReceivedWebhook, ReceivedWebhook];
      expect(second.receivedAt - first.receivedAt).toBeLessThan(2000);
      const warning = harness.logs
        .lines()
        .find((line) => String(line.error ?? "").includes("did not answer within"));
      // The limit is named by its variable, with what to do about it.
      expect(String(warning?.error)).toContain(
        "(http: http_sink_unreachable: HTTP_SINK_URL did not answer within HTTP_SINK_TIMEOUT_MS=300 ms) Fix: if the receiver is slow, raise HTTP_SINK_TIMEOUT_MS; otherwise check HTTP_SINK_URL.",
      );
    },
  );

  it.each([
    [200, "done"],
    [400, "dead"],
  ] as const)(
    "reads at most 1 MiB of an answer, and its status still decides (%s: %s)",
    async (status, state) => {
      receiver = await startWebhookReceiver(() => ({ status, body: "x".repeat(2 * 1024 * 1024) }));
      harness = await startHarness({
        env: { SINKS: "http", HTTP_SINK_URL: receiver.url, HTTP_SINK_SECRET: "a-signing-secret" },
      });
      const accepted = await harness.post(makeCallback());
      const job = await harness.waitForJob(accepted.body.id, state);
      expect(job.attempts).toBe(1);
      if (state === "dead") {
        expect(job.lastErrorCodes).toEqual(["sink_delivery_failed", "http_sink_rejected"]);
        // The start of the refusal, as for any refusal: 300 characters.
        expect(job.lastError).toContain(`HTTP_SINK_URL answered 400: ${"x".repeat(300)}.`);
      }
    },
  );

  it("keeps as many connections as bundles can be in flight (twice WORKER_CONCURRENCY): none waits for one past HTTP_SINK_TIMEOUT_MS", async () => {
    const concurrency = 12;
    // A job frees its slot once everything is fetched: a slot's next job fetches and posts
    // while the previous post is still held, so 24 posts can be in flight at once.
    const inFlightAtMost = 2 * concurrency;
    // Holds every post until that many are in flight (or 5 s after the worker started),
    // then answers them all.
    let inFlight = 0;
    let mostInFlight = 0;
    const held: ServerResponse[] = [];
    const answerAll = () => {
      for (const res of held.splice(0)) res.writeHead(204).end();
    };
    const server = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        inFlight += 1;
        mostInFlight = Math.max(mostInFlight, inFlight);
        // Answered, or given up by the sink.
        res.on("close", () => {
          inFlight -= 1;
        });
        held.push(res);
        if (inFlight >= inFlightAtMost) answerAll();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    let giveUp: NodeJS.Timeout | undefined;
    try {
      harness = await startHarness({
        env: {
          SINKS: "http",
          HTTP_SINK_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
          HTTP_SINK_SECRET: "a signing secret",
          HTTP_SINK_TIMEOUT_MS: "10000",
          WORKER_CONCURRENCY: String(concurrency),
        },
        service: { worker: false },
      });
      // Straight into the inbox, then the worker: all jobs are there when it starts.
      const ids: string[] = [];
      for (let index = 0; index < inFlightAtMost; index += 1) {
        ids.push((await harness.service.inbox.enqueue(makeCallback() as never, new Date())).id);
      }
      harness.service.worker.start();
      giveUp = setTimeout(answerAll, 5000);
      const jobs = await Promise.all(ids.map((id) => harness?.waitForJob(id, "done")));
      // With fewer connections the posts beyond them waited for one, and no more than
      // that many were ever in flight.
      expect(mostInFlight).toBe(inFlightAtMost);
      expect(jobs.map((job) => job?.attempts)).toEqual(ids.map(() => 1));
    } finally {
      clearTimeout(giveUp);
      server.closeAllConnections();
      server.close();
    }
  });

  it("gives up at once when the receiver refuses the bundle with a 4xx, saying what to fix", async () => {
    receiver = await startWebhookReceiver(() => ({ status: 401 }));
    harness = await startHarness({
      env: {
        SINKS: "http",
        HTTP_SINK_URL: receiver.url,
        HTTP_SINK_SECRET: "not-the-receivers-secret",
      },
    });
    const accepted = await harness.post(makeCallback());
    const job = await harness.waitForJob(accepted.body.id, "dead");
    expect(job.attempts).toBe(1);
    expect(job.lastError).toContain("http_sink_rejected");
    expect(job.lastError).toContain("HTTP_SINK_SECRET");
    expect(job.lastErrorCodes).toEqual(["sink_delivery_failed", "http_sink_rejected"]);
  });

  /**
   * A job that died because the http sink's receiver answered 410, beside the file and
   * recording sinks; `fix()` makes the receiver answer 200 from then on.
   */
  async function deadOfARefusingReceiver() {
    let fixed = false;
    receiver = await startWebhookReceiver(() => ({ status: fixed ? 200 : 410 }));
    harness = await startHarness({
      env: {
        SINKS: "file,module:test/fixtures/recording-sink.mjs,http",
        HTTP_SINK_URL: receiver.url,
        HTTP_SINK_SECRET: "a-signing-secret",
      },
    });
    const callback = makeCallback();
    const id = String((await harness.post(callback)).body.id);
    await harness.waitForJob(id, "dead");
    const { kreditcheck, dac } = harness.simulator.stats().calls;
    return {
      harness,
      receiver,
      callback,
      id,
      fetched: { kreditcheck, dac },
      fix: () => {
        fixed = true;
      },
      retry: (query = "") =>
        fetch(`${harness?.service.adminUrl}/admin/jobs/${id}/retry${query}`, { method: "POST" }),
      recorded: () => readFile(join(harness?.dir ?? "", "recorded-deliveries.log"), "utf8"),
    };
  }

  it("after the receiver is fixed, an operator's retry of the dead job sends the kept bundle to that sink only: no new fetch, nothing written twice", async () => {
    const dead = await deadOfARefusingReceiver();
    dead.fix();
    expect((await dead.retry()).status).toBe(200);
    const job = await dead.harness.waitForJob(dead.id, "done");
    expect(job.progress.deliveredSinks?.sort()).toEqual(["file", "http", "recording"]);
    const posts = dead.receiver.received;
    expect(posts).toHaveLength(2);
    // The same bundle, under the same webhook-id, as the refused post.
    expect(posts[1]?.rawBody).toBe(posts[0]?.rawBody);
    expect(posts[1]?.headers["webhook-id"]).toBe(posts[0]?.headers["webhook-id"]);
    expect(await dead.recorded()).toBe(`${dead.callback.kreditCheckId}\n`);
    const { kreditcheck, dac } = dead.harness.simulator.stats().calls;
    expect({ kreditcheck, dac }).toEqual(dead.fetched);
  });

  it("with ?fresh=true, an operator's retry of a dead job fetches it again for every sink", async () => {
    const dead = await deadOfARefusingReceiver();
    dead.fix();
    const retried = await dead.retry("?fresh=true");
    expect(await retried.json()).toEqual({
      requeued: true,
      id: dead.id,
      previousState: "dead",
      fresh: true,
    });
    await dead.harness.waitForJob(dead.id, "done");
    expect(dead.harness.simulator.stats().calls.kreditcheck).toBe(dead.fetched.kreditcheck + 1);
    const id = dead.callback.kreditCheckId;
    expect(await dead.recorded()).toBe(`${id}\n${id}\n`);
  });

  it("states a refusal without a body once, with its fix once, and does not log it as posted", async () => {
    receiver = await startWebhookReceiver(() => ({ status: 404 }));
    harness = await startHarness({
      env: { SINKS: "http", HTTP_SINK_URL: receiver.url, HTTP_SINK_SECRET: "a-signing-secret" },
    });
    const accepted = await harness.post(makeCallback());
    const job = await harness.waitForJob(accepted.body.id, "dead");
    expect(job.lastError).toContain("HTTP_SINK_URL answered 404 (no body).");
    expect(job.lastError?.split("Fix:")).toHaveLength(2);
    expect(harness.logs.text()).not.toContain("bundle posted to the http sink");
  });

  it("posts through the proxy in HTTP_PROXY, and a failure there names that variable", async () => {
    harness = await startHarness({
      env: {
        SINKS: "http",
        HTTP_SINK_URL: "http://receiver.invalid/hook",
        HTTP_SINK_SECRET: "a shared secret of the receiver",
        // A proxy that is down (port 1: no test or service can listen there, unlike a
        // port that was free a moment ago); finAPI (the simulator on 127.0.0.1) is reached
        // directly.
        HTTP_PROXY: "http://127.0.0.1:1",
        NO_PROXY: "127.0.0.1",
        MAX_ATTEMPTS: "1",
      },
    });
    const accepted = await harness.post(makeCallback());
    const job = await harness.waitForJob(accepted.body.id, "dead");
    expect(job.lastError).toMatch(
      /HTTP_SINK_URL could not be reached through the proxy in HTTP_PROXY: .*ECONNREFUSED/,
    );
  });
});

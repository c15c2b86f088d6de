import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { settleWithLimit } from "../../src/pipeline/map-limit.js";
import { type RunningSimulator, startSimulator } from "../../src/simulator/server.js";
import type { Bundle } from "../../src/sinks/sink.js";
import { type ChildScript, freePort, serviceEnv, spawnService } from "../support/child-service.js";
import { makeCallback } from "../support/harness.js";
import { waitFor } from "../support/wait-for.js";

const CALLBACKS = 300;
const KILLS = 3;
const CONCURRENCY = 4;

/** Sends like a retrying sender: again and again until the answer is 202. */
async function postUntilAccepted(url: () => string, body: unknown): Promise<number> {
  for (let tries = 1; ; tries++) {
    try {
      const response = await fetch(`${url()}/callbacks/kreditcheck`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(5000),
      });
      await response.arrayBuffer();
      if (response.status === 202) return tries;
      expect(response.status).toBeGreaterThanOrEqual(500);
    } catch (error) {
      // The service is down (killed): connection refused or reset. Try again shortly.
      if ((error as Error).name === "AssertionError") throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** How often each check went to the stdout sink, over all the lives of the service. */
function bundleLines(lives: ChildScript[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const life of lives) {
    for (const line of life.lines) {
      if (!line.includes('"kreditcheck.bundle"')) continue;
      const { bundle } = JSON.parse(line) as { bundle: Bundle };
      const id = bundle.callback.kreditCheckId;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
  }
  return counts;
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

describe("crash: kill -9 at random moments", () => {
  let simulator: RunningSimulator | undefined;
  let current: ChildScript | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    current?.child.kill("SIGKILL");
    await simulator?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("loses no callback and writes one whole file per check when the service is killed three times during 300 callbacks", async () => {
    simulator = await startSimulator({ latencyMs: 20 });
    dir = await mkdtemp(join(tmpdir(), "kcr-crash-"));
    const port = await freePort();
    // Short lease: a job its killed owner held is taken over soon after the restart.
    const env = serviceEnv(simulator, dir, {
      PORT: String(port),
      SINKS: "file,stdout",
      WORKER_CONCURRENCY: String(CONCURRENCY),
      LEASE_MS: "1000",
      WORKER_POLL_MS: "50",
      BACKOFF_BASE_MS: "20",
      BACKOFF_MAX_MS: "200",
    });
    const lives: ChildScript[] = [await spawnService(env, { captureStdout: true })];
    current = lives[0];
    const url = () => `http://127.0.0.1:${port}`;

    const callbacks = Array.from({ length: CALLBACKS }, () => makeCallback());
    const ids = callbacks.map((callback) => String(callback.kreditCheckId));
    const sending = settleWithLimit(callbacks, 8, (callback) => postUntilAccepted(url, callback));

    const resultsDir = join(dir, "results");
    const visible = async () =>
      (await readdir(resultsDir).catch(() => [])).filter((name) => !name.startsWith("."));
    const killedAt: number[] = [];
    // Files a reader found torn right after a kill, before a restart could write them again.
    const torn: string[] = [];
    for (let kill = 0; kill < KILLS; kill++) {
      await new Promise((resolve) => setTimeout(resolve, 300 + Math.random() * 900));
      const life = current as ChildScript;
      life.child.kill("SIGKILL");
      await life.exited;
      killedAt.push(bundleLines(lives).size);
      for (const name of await visible()) {
        const text = await readFile(join(resultsDir, name), "utf8");
        if (!isJson(text)) torn.push(name);
      }
      current = await spawnService(env, { captureStdout: true });
      lives.push(current);
    }
    const sent = await sending;
    expect(sent.every((result) => result.status === "fulfilled")).toBe(true);

    await waitFor(async () => (await visible()).length === CALLBACKS, "all files", 60_000);
    await current?.stop();

    // Kills landed while checks were still being delivered.
    expect(killedAt.every((delivered) => delivered < CALLBACKS)).toBe(true);

    // Exactly one file per check, each whole: a reader never sees half a bundle, also not
    // right after a kill.
    expect(torn).toEqual([]);
    expect((await visible()).sort()).toEqual(ids.map((id) => `${id}.json`).sort());
    for (const id of ids) {
      const bundle = JSON.parse(await readFile(join(resultsDir, `${id}.json`), "utf8")) as Bundle;
      expect(bundle.callback.kreditCheckId).toBe(id);
      expect(Object.keys(bundle.dacReports)).toHaveLength(3);
    }
    // A kill between open() and rename() leaves a hidden temporary file, never a visible one.
    const leftovers = (await readdir(resultsDir)).filter((name) => name.startsWith("."));
    expect(leftovers.every((name) => /^\..+\.[0-9a-f]{12}\.tmp$/.test(name))).toBe(true);
    expect(leftovers.length).toBeLessThanOrEqual(KILLS * CONCURRENCY);

    // Delivery is at least once: only a check whose attempt was cut by a kill after its
    // delivery began (and before `complete` was committed) can be delivered again.
    const delivered = bundleLines(lives);
    expect([...delivered.keys()].sort()).toEqual([...ids].sort());
    const twice = [...delivered].filter(([, count]) => count > 1);
    console.info(`crash run: ${JSON.stringify({ deliveredAtKills: killedAt, twice, leftovers })}`);
    expect(twice.length).toBeLessThanOrEqual(KILLS * CONCURRENCY);
    expect(twice.every(([, count]) => count <= 1 + KILLS)).toBe(true);
  }, 90_000); // 17 s alone; it waits up to 60 s for the files on a loaded machine
});

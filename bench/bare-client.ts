import { Pool } from "undici";
import { settleWithLimit } from "../src/pipeline/map-limit.js";

/**
 * The yardstick of the pipeline benchmark: the same finAPI calls as one check (the
 * KreditCheck, then its DAC reports in parallel) from a bare undici pool, C checks at a
 * time, and nothing else: no axios, no validation, no store, no sink, no log. What it
 * measures is the floor of this machine and simulator, so the service's ratio can be read
 * against it. Runs in its own process, like the service; prints one JSON line.
 *
 * Usage: bare-client.ts <simulator url> <client id> <client secret> <checks> <concurrency>
 *        <warm-up checks>
 */
const [baseUrl = "", clientId = "", clientSecret = "", checksArg, concurrencyArg, warmUpArg] =
  process.argv.slice(2);
const checks = Number(checksArg);
const concurrency = Number(concurrencyArg);
const warmUp = Number(warmUpArg);

const tokenAnswer = await fetch(`${baseUrl}/api/v2/oauth/token`, {
  method: "POST",
  headers: { "Content-Type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams({
    grant_type: "client_credentials",
    client_id: clientId,
    client_secret: clientSecret,
  }).toString(),
});
const { access_token: token } = (await tokenAnswer.json()) as { access_token: string };
// As many sockets as calls can be in flight, as the service configures its pool.
const pool = new Pool(baseUrl, { connections: concurrency * 4 });
const headers = { authorization: `Bearer ${token}`, accept: "application/json" };

async function getJson(path: string): Promise<unknown> {
  const { statusCode, body } = await pool.request({ path, method: "GET", headers });
  const json = await body.json();
  if (statusCode !== 200) throw new Error(`${path}: ${statusCode} ${JSON.stringify(json)}`);
  return json;
}

interface KreditCheck {
  bankConnections?: { accounts?: { caseId?: string }[] }[];
}

async function check(name: string): Promise<void> {
  const result = (await getJson(
    `/processctrl/api/v1/checks/${name}/kreditcheck/${name}`,
  )) as KreditCheck;
  const caseIds = (result.bankConnections ?? []).flatMap((connection) =>
    (connection.accounts ?? []).flatMap((account) => (account.caseId ? [account.caseId] : [])),
  );
  await Promise.all(caseIds.map((caseId) => getJson(`/di/api/v1/cases/${caseId}/reports`)));
}

/** `count` checks, `concurrency` at a time; returns the makespan in ms. */
async function run(count: number, prefix: string): Promise<number> {
  const names = Array.from({ length: count }, (_, index) => `${prefix}-${index}`);
  const startedAt = performance.now();
  const settled = await settleWithLimit(names, concurrency, check);
  const makespanMs = performance.now() - startedAt;
  const failed = settled.find((result) => result.status === "rejected");
  if (failed) throw failed.reason;
  return makespanMs;
}

await run(warmUp, "bare-warm-up");
const cpuBefore = process.cpuUsage();
const makespanMs = await run(checks, "bare");
const cpu = process.cpuUsage(cpuBefore);
await pool.close();
console.log(JSON.stringify({ makespanMs, cpuMsPerCheck: (cpu.user + cpu.system) / 1000 / checks }));

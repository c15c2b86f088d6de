import { caseIdFor } from "../../src/simulator/data.js";
import type { LoggedRequest } from "../../src/simulator/server.js";
import type { FinishedJob } from "./inbox-file.js";

/** Mean ms of each step of a check, from the simulator's request log and the inbox file. */
export interface CheckPhases {
  checks: number;
  /** KreditCheck request received -> answered (the simulator's latency). */
  kreditCheck: number;
  /** KreditCheck answered -> first DAC request received: the service read the result. */
  toFirstDac: number;
  /** First DAC request received -> last DAC report answered. */
  dacReports: number;
  /** Last DAC report answered -> job marked done: bundle delivered, outcome committed. */
  toDone: number;
  /** KreditCheck request received -> job marked done. */
  total: number;
  /**
   * A worker slot's way from one check to the next: a check's last DAC answer -> the next
   * KreditCheck request received, pairing the k-th last answer with the (C + k)-th
   * KreditCheck request (slots are taken in the order they come free). With the three
   * fetch steps it makes one turn of a slot, which the ideal counts as 100 ms.
   */
  slotTurnaround: number;
}

/**
 * Where a check's time went, for the finished jobs whose first finAPI request came at or
 * after `from`. Three DAC reports per check (the simulator's default shape), found by
 * their case ids.
 */
export function checkPhases(
  rows: FinishedJob[],
  log: LoggedRequest[],
  from: number,
  concurrency: number,
): CheckPhases {
  // The path without method and query: /…/checks/<token>/kreditcheck/<id>, /…/cases/<id>/reports.
  const byPath = new Map<string, LoggedRequest>();
  for (const entry of log) {
    if (entry.answeredAt === undefined) continue;
    const path = entry.target.replace(/^\S+ /, "").replace(/\?.*$/, "");
    byPath.set(
      path.slice(path.lastIndexOf("/checks/") + 1 || path.lastIndexOf("/cases/") + 1),
      entry,
    );
  }
  const sums = { kreditCheck: 0, toFirstDac: 0, dacReports: 0, toDone: 0, total: 0 };
  let checks = 0;
  const kreditCheckReceived: number[] = [];
  const lastDacAnswered: number[] = [];
  for (const row of rows) {
    const kreditCheck = byPath.get(`checks/${row.processToken}/kreditcheck/${row.kreditCheckId}`);
    if (!kreditCheck || kreditCheck.receivedAt < from || kreditCheck.answeredAt === undefined) {
      continue;
    }
    const dacs = [0, 1, 2].flatMap((index) => {
      const entry = byPath.get(`cases/${caseIdFor(row.kreditCheckId, index)}/reports`);
      return entry ? [entry] : [];
    });
    if (dacs.length === 0) continue;
    const firstDac = Math.min(...dacs.map((entry) => entry.receivedAt));
    const lastAnswer = Math.max(...dacs.map((entry) => entry.answeredAt ?? Number.NaN));
    sums.kreditCheck += kreditCheck.answeredAt - kreditCheck.receivedAt;
    sums.toFirstDac += firstDac - kreditCheck.answeredAt;
    sums.dacReports += lastAnswer - firstDac;
    sums.toDone += row.finishedAt - lastAnswer;
    sums.total += row.finishedAt - kreditCheck.receivedAt;
    kreditCheckReceived.push(kreditCheck.receivedAt);
    lastDacAnswered.push(lastAnswer);
    checks += 1;
  }
  const mean = (sum: number) => (checks === 0 ? Number.NaN : sum / checks);
  return {
    checks,
    kreditCheck: mean(sums.kreditCheck),
    toFirstDac: mean(sums.toFirstDac),
    dacReports: mean(sums.dacReports),
    toDone: mean(sums.toDone),
    total: mean(sums.total),
    slotTurnaround: meanTurnaround(kreditCheckReceived, lastDacAnswered, concurrency),
  };
}

/** Mean of next KreditCheck request - last DAC answer over the slots' turns (see CheckPhases). */
function meanTurnaround(started: number[], freed: number[], concurrency: number): number {
  const starts = [...started].sort((a, b) => a - b).slice(concurrency);
  const frees = [...freed].sort((a, b) => a - b);
  if (starts.length === 0) return Number.NaN;
  let sum = 0;
  starts.forEach((start, index) => {
    sum += start - (frees[index] ?? Number.NaN);
  });
  return sum / starts.length;
}

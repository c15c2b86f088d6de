import { hash } from "node:crypto";
import type { AccountShape } from "./faults.js";

export type Verdict = "GREEN" | "YELLOW" | "RED";
export type KreditCheckShape = AccountShape;

export const DEFAULT_SHAPE: KreditCheckShape = {
  connections: 2,
  accountsPerConnection: 2,
  accountsWithoutCaseId: 1,
};

/** KreditCheck ids with this prefix do not exist, so tests can provoke a 404. */
export const MISSING_PREFIX = "missing-";
/** A processToken with this prefix stands for a mandator with a DAC-only licence. */
export const DAC_ONLY_PREFIX = "dac-only";

export function isMissingId(id: string): boolean {
  return id.startsWith(MISSING_PREFIX);
}

/**
 * A deterministic stream of numbers for one key, so every value is a pure function of the
 * ids. A string hash seeding a small PRNG, not a cryptographic hash: the simulator builds
 * a few dozen of these per check, and under load its CPU is shared with the service.
 * The key is one to three parts joined by NUL; the PRNG is mulberry32 (prng.ts) inlined,
 * so a stream is one small object.
 */
class Derived {
  private state: number;

  constructor(a: string, b?: string, c?: string) {
    let hash = fnv1a(0x811c9dc5, a);
    if (b !== undefined) hash = fnv1a(Math.imul(hash, 0x01000193), b);
    if (c !== undefined) hash = fnv1a(Math.imul(hash, 0x01000193), c);
    this.state = hash >>> 0;
  }

  /** mulberry32's next value times 2^32, which is exactly its 32-bit integer. */
  uint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  int(min: number, max: number): number {
    return min + (this.uint32() % (max - min + 1));
  }

  pick<const A extends readonly unknown[]>(items: A): A[number] {
    return items[this.uint32() % items.length] as A[number];
  }

  /** Cents, kept as a number with two decimals like finAPI amounts. */
  amount(min: number, max: number): number {
    return this.int(Math.round(min * 100), Math.round(max * 100)) / 100;
  }
}

/**
 * FNV-1a, 32 bits, continued from `hash`: spreads similar ids (one digit apart) over
 * unrelated seeds. A NUL between parts only multiplies (x ^ 0 = x), as done above.
 */
function fnv1a(hash: number, text: string): number {
  let h = hash;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h;
}

/** The RFC 4122 variant nibble for a hex digit d: (d & 0x3) | 0x8. */
const VARIANT = "89ab89ab89ab89ab";

export function uuidFrom(...parts: string[]): string {
  // One-shot hash: no Hash object per call; the simulator makes 27 of these per check.
  const h = hash("sha256", parts.join("\u0000"), "hex");
  // Version 4 / RFC 4122 variant bits, so strict UUID validators accept it.
  const variant = VARIANT.charAt(Number.parseInt(h.charAt(16), 16));
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

const BANKS = [
  { name: "Sparkasse KölnBonn", bic: "COLSDE33XXX", blz: "37050198" },
  { name: "Deutsche Bank", bic: "DEUTDEFFXXX", blz: "50070010" },
  { name: "ING-DiBa", bic: "INGDDEFFXXX", blz: "50010517" },
  { name: "Commerzbank", bic: "COBADEFFXXX", blz: "50040000" },
  { name: "DKB Deutsche Kreditbank", bic: "BYLADEM1001", blz: "12030000" },
] as const;

const ACCOUNT_KINDS = [
  { accountType: "Checking", accountName: "Girokonto" },
  { accountType: "Checking", accountName: "Gehaltskonto" },
  { accountType: "Savings", accountName: "Tagesgeld" },
  { accountType: "Credit card", accountName: "Kreditkarte" },
] as const;
const VERDICTS = ["GREEN", "GREEN", "YELLOW", "RED"] as const;
const VERDICT_RANK: Record<Verdict, number> = { GREEN: 0, YELLOW: 1, RED: 2 };

/** German IBAN with a correct mod-97 check, so IBAN validators in clients do not trip. */
function germanIban(blz: string, accountNumber: string): string {
  const bban = `${blz}${accountNumber.padStart(10, "0")}`;
  // "DE00" moved to the end, letters as numbers: D=13, E=14.
  const numeric = `${bban}131400`;
  let rest = 0;
  for (let i = 0; i < numeric.length; i++) rest = (rest * 10 + numeric.charCodeAt(i) - 48) % 97;
  return `DE${String(98 - rest).padStart(2, "0")}${bban}`;
}

const BASE_DATE_MS = Date.UTC(2025, 0, 2, 8, 0, 0);
const DAY_MS = 86_400_000;

/** "YYYY-MM-DD" by day number; generated dates fall on a few hundred days. */
const dayNames = new Map<number, string>();
const MAX_DAY_NAMES = 4096;

function twoDigits(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** finAPI's report timestamp format: "2025-04-08 16:26:35.688" (local time, no offset). */
export function formatFinapiDate(ms: number): string {
  // Integer times from 1970 to 9999 (all the generated ones) without a Date per call.
  if (!Number.isInteger(ms) || ms < 0 || ms >= 253_402_300_800_000) {
    const iso = new Date(ms).toISOString();
    return `${iso.slice(0, 10)} ${iso.slice(11, 23)}`;
  }
  const day = Math.floor(ms / DAY_MS);
  let date = dayNames.get(day);
  if (date === undefined) {
    if (dayNames.size >= MAX_DAY_NAMES) dayNames.clear();
    date = new Date(day * DAY_MS).toISOString().slice(0, 10);
    dayNames.set(day, date);
  }
  let rest = ms - day * DAY_MS;
  const hours = Math.floor(rest / 3_600_000);
  rest -= hours * 3_600_000;
  const minutes = Math.floor(rest / 60_000);
  rest -= minutes * 60_000;
  const seconds = Math.floor(rest / 1000);
  rest -= seconds * 1000;
  const millis = rest < 10 ? `00${rest}` : rest < 100 ? `0${rest}` : String(rest);
  return `${date} ${twoDigits(hours)}:${twoDigits(minutes)}:${twoDigits(seconds)}.${millis}`;
}

interface AccountPlan {
  connectionIndex: number;
  accountIndex: number;
  hasCaseId: boolean;
}

function planAccounts(shape: KreditCheckShape): AccountPlan[] {
  const total = shape.connections * shape.accountsPerConnection;
  const withoutCaseId = Math.min(shape.accountsWithoutCaseId, total);
  const plans: AccountPlan[] = [];
  for (let c = 0; c < shape.connections; c++) {
    for (let a = 0; a < shape.accountsPerConnection; a++) {
      const accountIndex = plans.length;
      plans.push({
        connectionIndex: c,
        accountIndex,
        hasCaseId: accountIndex < total - withoutCaseId,
      });
    }
  }
  return plans;
}

/**
 * A caseId whose last 8 hex digits are a tag of the rest, so the DAC route can tell the
 * ids it issued from made-up ones without keeping state: a client that builds the DAC URL
 * from the wrong field (an accountId, another check's case) gets 404, as from finAPI.
 */
export function caseIdFor(kreditCheckId: string, accountIndex: number): string {
  const id = uuidFrom("case", kreditCheckId, String(accountIndex));
  const head = id.slice(0, CASE_TAG_AT);
  return head + caseTag(head);
}

const CASE_TAG_AT = 36 - 8;
const ISSUED_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function caseTag(head: string): string {
  return hash("sha256", `issued-case\u0000${head}`, "hex").slice(0, 8);
}

/** Whether `caseIdFor` made this id (for any check): the DAC route answers 404 otherwise. */
export function isIssuedCaseId(id: string): boolean {
  return ISSUED_UUID.test(id) && caseTag(id.slice(0, CASE_TAG_AT)) === id.slice(CASE_TAG_AT);
}

export function kreditCheckFor(
  processToken: string,
  kreditCheckId: string,
  shape: KreditCheckShape = DEFAULT_SHAPE,
): Record<string, unknown> {
  const check = new Derived("check", processToken, kreditCheckId);
  const plans = planAccounts(shape);
  const dacOnly = processToken.startsWith(DAC_ONLY_PREFIX);

  const connections = Array.from({ length: shape.connections }, (_, c) => {
    const conn = new Derived("connection", kreditCheckId, String(c));
    const bank = conn.pick(BANKS);
    const bankConnectionId = String(conn.int(1_000_000, 9_999_999));
    const accounts = plans
      .filter((p) => p.connectionIndex === c)
      .map((p) => {
        const acc = new Derived("account", kreditCheckId, String(p.accountIndex));
        const accountId = String(acc.int(1_000_000, 9_999_999));
        const caseId = p.hasCaseId ? { caseId: caseIdFor(kreditCheckId, p.accountIndex) } : {};
        if (dacOnly) return { accountId, ...caseId };
        const accountNumber = String(acc.int(100_000_000, 999_999_999));
        const { accountName, accountType } = acc.pick(ACCOUNT_KINDS);
        return {
          accountId,
          ...caseId,
          resultAccount: acc.pick(VERDICTS) as Verdict,
          accountName,
          accountType,
          iban: germanIban(bank.blz, accountNumber),
          accountCurrency: "EUR",
          balance: acc.amount(-1500, 12_000),
        };
      });
    return dacOnly
      ? { bankConnectionId, accounts }
      : { bankConnectionId, bankName: bank.name, bic: bank.bic, accounts };
  });

  if (dacOnly) return { bankConnections: connections };

  const verdicts = connections.flatMap((c) =>
    c.accounts.map((a) => ("resultAccount" in a ? a.resultAccount : "GREEN")),
  );
  // The traffic light of the whole check is the worst of its accounts, as a lender would read it.
  const overallVerdict = verdicts.reduce<Verdict>(
    (worst, v) => (VERDICT_RANK[v] > VERDICT_RANK[worst] ? v : worst),
    "GREEN",
  );
  const creationMs = BASE_DATE_MS + check.int(0, 300) * DAY_MS + check.int(0, 36_000_000);
  return {
    id: kreditCheckId,
    processToken,
    status: "SUCCESSFUL",
    type: check.pick(["B2C", "B2C", "B2B"]),
    creationDate: formatFinapiDate(creationMs),
    rateAmount: check.int(4, 60) * 50,
    rateInsteadRent: check.int(0, 1) === 1,
    clientReference: `CU${String(check.uint32()).padStart(10, "0")}`,
    overallVerdict,
    currency: "EUR",
    analysisPeriodMonths: check.pick([3, 6, 12]),
    bankConnections: connections,
  };
}

/** Report name -> `type` as finAPI spells it (its docs spell both DEPT and DEBT; we use DEPT). */
export const DAC_REPORT_TYPES = {
  chargebacks: "CHARGEBACKS",
  deptCollection: "DEPTCOLLECTION",
  seizure: "SEIZURE",
  income: "INCOME",
  spending: "SPENDING",
  gambling: "GAMBLING",
  rentAndLiving: "RENTANDLIVING",
  balances: "BALANCES",
} as const;

export type DacReportName = keyof typeof DAC_REPORT_TYPES;
const DAC_REPORT_ENTRIES = Object.entries(DAC_REPORT_TYPES) as [DacReportName, string][];

function addFlows(out: Record<string, unknown>, d: Derived, maxCount: number, maxTotal: number) {
  const countIncomeTransactions = d.int(0, maxCount);
  const countSpendingTransactions = d.int(0, maxCount);
  out.countIncomeTransactions = countIncomeTransactions;
  out.countSpendingTransactions = countSpendingTransactions;
  out.totalIncome = countIncomeTransactions === 0 ? 0 : d.amount(1, maxTotal);
  out.totalSpending = countSpendingTransactions === 0 ? 0 : -d.amount(1, maxTotal);
}

/** Adds the fields of one report's kind to `out`, in this order, drawing from `d` in this order. */
function addReportBody(out: Record<string, unknown>, name: DacReportName, d: Derived): void {
  switch (name) {
    case "chargebacks":
    case "deptCollection":
    case "seizure":
    case "gambling":
      addFlows(out, d, 3, 900);
      return;
    case "income": {
      const count = d.int(3, 12);
      const total = d.amount(4500, 36_000);
      out.countIncomeTransactions = count;
      out.totalIncome = total;
      out.averageMonthlyIncome = Math.round((total / 3) * 100) / 100;
      out.regularIncome = d.int(0, 4) > 0;
      return;
    }
    case "spending": {
      const count = d.int(40, 400);
      const total = -d.amount(2000, 30_000);
      out.countSpendingTransactions = count;
      out.totalSpending = total;
      out.averageMonthlySpending = Math.round((total / 3) * 100) / 100;
      return;
    }
    case "rentAndLiving": {
      const rent = d.amount(350, 1800);
      out.countSpendingTransactions = d.int(2, 6);
      out.totalSpending = -Math.round(rent * 3 * 100) / 100;
      out.averageMonthlyRent = -rent;
      return;
    }
    case "balances": {
      const min = d.amount(-2500, 500);
      const max = min + d.amount(100, 15_000);
      out.currentBalance = Math.round((min + (max - min) / 2) * 100) / 100;
      out.minBalance = min;
      out.maxBalance = Math.round(max * 100) / 100;
      out.averageBalance = Math.round((min + (max - min) / 3) * 100) / 100;
      out.daysWithNegativeBalance = min < 0 ? d.int(1, 30) : 0;
      return;
    }
  }
}

export function dacReportFor(caseId: string): { caseId: string; reports: Record<string, unknown> } {
  const c = new Derived("dac", caseId);
  const endMs = BASE_DATE_MS + c.int(0, 300) * DAY_MS;
  const startMs = endMs - 90 * DAY_MS;
  const creationMs = endMs + c.int(60_000, 36_000_000);
  const startDate = formatFinapiDate(startMs);
  const endDate = formatFinapiDate(endMs);
  const reports: Record<string, unknown> = {};
  for (const [name, type] of DAC_REPORT_ENTRIES) {
    const d = new Derived("report", caseId, name);
    const report: Record<string, unknown> = {
      id: uuidFrom("report", caseId, name),
      creationDate: formatFinapiDate(creationMs + d.int(0, 999)),
      caseId,
      type,
      startDate,
      endDate,
    };
    addReportBody(report, name, d);
    reports[name] = report;
  }
  return { caseId, reports };
}

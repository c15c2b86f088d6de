import { z } from "zod";
import { mulberry32, type Prng } from "./prng.js";

export const SIM_ENDPOINTS = ["token", "kreditcheck", "dac", "account_pdf", "dac_zip"] as const;
export type SimEndpoint = (typeof SIM_ENDPOINTS)[number];

export interface AccountShape {
  connections: number;
  accountsPerConnection: number;
  accountsWithoutCaseId: number;
}

export interface SimulatorFaults {
  latencyMs: number;
  jitterMs: number;
  rate5xx: number;
  rate429: number;
  retryAfterSec: number;
  resetRate: number;
  hangRate: number;
  tokenLifetimeSec: number;
  tokenDownUntil: number;
  forbidden: boolean;
  accounts: AccountShape;
  seed: number;
}

export const DEFAULT_FAULTS: SimulatorFaults = {
  latencyMs: 0,
  jitterMs: 0,
  rate5xx: 0,
  rate429: 0,
  retryAfterSec: 1,
  resetRate: 0,
  hangRate: 0,
  tokenLifetimeSec: 3600,
  tokenDownUntil: 0,
  forbidden: false,
  accounts: { connections: 2, accountsPerConnection: 2, accountsWithoutCaseId: 1 },
  seed: 1,
};

/** Status 0 means "reset the connection", -1 means "never answer". */
export const RESET_STATUS = 0;
export const HANG_STATUS = -1;

const rate = z.number().min(0).max(1);
const nonNegInt = z.int().min(0);
/** A day: longer outages or Retry-After values only make a test wait, never prove more. */
const DAY_SEC = 86_400;
/** The latest time a JavaScript Date can hold. */
const MAX_TIME_MS = 8.64e15;

export const accountShapeSchema = z.strictObject({
  connections: z.int().min(0).max(100),
  accountsPerConnection: z.int().min(0).max(100),
  accountsWithoutCaseId: nonNegInt,
});

export const faultsPatchSchema = z
  .strictObject({
    latencyMs: nonNegInt.max(600_000),
    jitterMs: nonNegInt.max(600_000),
    rate5xx: rate,
    rate429: rate,
    retryAfterSec: nonNegInt.max(DAY_SEC),
    resetRate: rate,
    hangRate: rate,
    tokenLifetimeSec: nonNegInt,
    tokenDownUntil: nonNegInt.max(MAX_TIME_MS),
    /** Relative form of tokenDownUntil: "down for the next N ms", for the CLI and the control endpoint. */
    tokenDownForMs: nonNegInt.max(DAY_SEC * 1000),
    forbidden: z.boolean(),
    accounts: accountShapeSchema.partial(),
    seed: z.int(),
  })
  .partial();

export type SimulatorFaultsPatch = Omit<Partial<SimulatorFaults>, "accounts"> & {
  accounts?: Partial<AccountShape>;
  tokenDownForMs?: number;
};

export const failNextSchema = z
  .strictObject({
    endpoint: z.enum(SIM_ENDPOINTS),
    count: z.int().min(1).max(1_000_000),
    status: z.union([z.literal(RESET_STATUS), z.literal(HANG_STATUS), z.int().min(400).max(599)]),
    /** Only 429 and 503 carry a Retry-After; without this, they carry none. */
    retryAfterSec: nonNegInt.max(DAY_SEC).optional(),
  })
  .refine((f) => f.retryAfterSec === undefined || f.status === 429 || f.status === 503, {
    message: "retryAfterSec goes with status 429 or 503 only: other answers carry no Retry-After",
    path: ["retryAfterSec"],
  });

/**
 * The random faults are disjoint shares of one draw per data call (see `decide`): a sum
 * over 1 would silently cut the later ones short, so it is refused instead.
 */
const faultsSchema = z
  .looseObject({ resetRate: rate, hangRate: rate, rate5xx: rate, rate429: rate })
  .refine((f) => f.resetRate + f.hangRate + f.rate5xx + f.rate429 <= 1 + 1e-9, {
    message:
      "resetRate + hangRate + rate5xx + rate429 must not exceed 1: they are shares of the same data calls",
  });

export type FailNextRequest = z.infer<typeof failNextSchema>;

/** What the fault layer decided for one request; `undefined` means "answer normally". */
export type FaultDecision =
  | { kind: "reset" }
  | { kind: "hang" }
  | { kind: "status"; status: number; retryAfterSec?: number };

interface QueuedFault {
  remaining: number;
  status: number;
  retryAfterSec?: number;
}

export function mergeFaults(base: SimulatorFaults, patch: SimulatorFaultsPatch): SimulatorFaults {
  const parsed = faultsPatchSchema.parse(patch);
  const { accounts, tokenDownForMs, ...flat } = parsed;
  // Resolved once, when the patch is applied: the window is then an ordinary tokenDownUntil.
  if (tokenDownForMs !== undefined) flat.tokenDownUntil = Date.now() + tokenDownForMs;
  const defined = Object.fromEntries(Object.entries(flat).filter(([, v]) => v !== undefined));
  const merged: SimulatorFaults = {
    ...base,
    ...defined,
    accounts: { ...base.accounts, ...stripUndefined(accounts ?? {}) },
  };
  faultsSchema.parse(merged);
  return merged;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Owns the current faults, the deterministic fail-next queues and the PRNG streams.
 * Faults and jitter use separate streams so that turning jitter on does not change
 * which requests fail for a given seed.
 */
export class FaultController {
  private current: SimulatorFaults;
  private readonly queues = new Map<SimEndpoint, QueuedFault[]>();
  private faultRng: Prng;
  private jitterRng: Prng;

  constructor(private readonly initial: SimulatorFaults) {
    this.current = structuredClone(initial);
    this.faultRng = mulberry32(initial.seed);
    this.jitterRng = mulberry32(initial.seed ^ 0x5bd1e995);
  }

  get faults(): SimulatorFaults {
    return structuredClone(this.current);
  }

  get lifetimeSec(): number {
    return this.current.tokenLifetimeSec;
  }

  get tokenDownUntil(): number {
    return this.current.tokenDownUntil;
  }

  get forbidden(): boolean {
    return this.current.forbidden;
  }

  get accounts(): AccountShape {
    return { ...this.current.accounts };
  }

  /** Throws a ZodError on invalid input; nothing is changed then. */
  set(patch: SimulatorFaultsPatch): SimulatorFaults {
    const next = mergeFaults(this.current, patch);
    if (patch.seed !== undefined) this.reseed(next.seed);
    this.current = next;
    return this.faults;
  }

  failNext(request: FailNextRequest): void {
    const { endpoint, count, status, retryAfterSec } = failNextSchema.parse(request);
    const queue = this.queues.get(endpoint) ?? [];
    queue.push(
      retryAfterSec === undefined
        ? { remaining: count, status }
        : { remaining: count, status, retryAfterSec },
    );
    this.queues.set(endpoint, queue);
  }

  pending(endpoint: SimEndpoint): number {
    return (this.queues.get(endpoint) ?? []).reduce((n, q) => n + q.remaining, 0);
  }

  reset(): void {
    this.queues.clear();
    this.current = structuredClone(this.initial);
    this.reseed(this.initial.seed);
  }

  delayMs(): number {
    const { latencyMs, jitterMs } = this.current;
    return latencyMs + (jitterMs > 0 ? Math.floor(this.jitterRng() * (jitterMs + 1)) : 0);
  }

  /**
   * The queue wins over random faults. Random faults hit data endpoints only; one draw per
   * request keeps the sequence for a given seed independent of which rates are set, and the
   * rates are disjoint slices of [0, 1) so that each one is exact while their sum is <= 1.
   */
  decide(endpoint: SimEndpoint): FaultDecision | undefined {
    const queued = this.takeQueued(endpoint);
    if (queued) return queued;
    if (endpoint === "token") return undefined;
    const { resetRate, hangRate, rate5xx, rate429, retryAfterSec } = this.current;
    if (resetRate + hangRate + rate5xx + rate429 === 0) return undefined;
    const u = this.faultRng();
    let edge = resetRate;
    if (u < edge) return { kind: "reset" };
    edge += hangRate;
    if (u < edge) return { kind: "hang" };
    edge += rate5xx;
    if (u < edge) return { kind: "status", status: 503 };
    edge += rate429;
    if (u < edge) return { kind: "status", status: 429, retryAfterSec };
    return undefined;
  }

  private takeQueued(endpoint: SimEndpoint): FaultDecision | undefined {
    const queue = this.queues.get(endpoint);
    const head = queue?.[0];
    if (!queue || !head) return undefined;
    head.remaining -= 1;
    if (head.remaining <= 0) queue.shift();
    if (head.status === RESET_STATUS) return { kind: "reset" };
    if (head.status === HANG_STATUS) return { kind: "hang" };
    // Without retryAfterSec no Retry-After at all: a client's own backoff is tested so.
    return head.retryAfterSec === undefined
      ? { kind: "status", status: head.status }
      : { kind: "status", status: head.status, retryAfterSec: head.retryAfterSec };
  }

  private reseed(seed: number): void {
    this.faultRng = mulberry32(seed);
    this.jitterRng = mulberry32(seed ^ 0x5bd1e995);
  }
}

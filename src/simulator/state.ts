import {
  DEFAULT_FAULTS,
  type FailNextRequest,
  FaultController,
  mergeFaults,
  type SimEndpoint,
  type SimulatorFaults,
  type SimulatorFaultsPatch,
} from "./faults.js";
import { RequestLog } from "./request-log.js";
import { type SimulatorStats, StatsRecorder } from "./stats.js";
import { PendingTimers } from "./timers.js";
import { TokenStore } from "./tokens.js";

export interface SimulatorStateOptions extends SimulatorFaultsPatch {
  clientId?: string;
  clientSecret?: string;
  /** Clock for token expiry; tests of the store may pass a fake one. */
  now?: () => number;
}

/** Everything the HTTP layer reads and the control surface changes, in one place. */
export interface SimulatorState {
  readonly clientId: string;
  readonly clientSecret: string;
  readonly faults: FaultController;
  readonly tokens: TokenStore;
  readonly stats: StatsRecorder;
  readonly requests: RequestLog;
  /** Aborted on close, so pending latency timers do not outlive the server. */
  readonly closing: AbortController;
  /** Latency and delayed resets; cleared when `closing` is aborted. */
  readonly timers: PendingTimers;
  snapshot(): SimulatorStats;
  setFaults(partial: SimulatorFaultsPatch): SimulatorFaults;
  failNext(
    endpoint: SimEndpoint,
    count: number,
    status: number,
    opts?: { retryAfterSec?: number },
  ): void;
  /** False when no token had been issued (or the last one was revoked already). */
  revokeToken(): boolean;
  reset(): void;
}

export function createSimulatorState(options: SimulatorStateOptions = {}): SimulatorState {
  const { clientId = "demo-client", clientSecret = "demo-secret", now, ...faultOptions } = options;
  const initial = mergeFaults(DEFAULT_FAULTS, pickFaults(faultOptions));
  const faults = new FaultController(initial);
  const tokens = new TokenStore(() => faults.lifetimeSec, now);
  const stats = new StatsRecorder();
  const requests = new RequestLog();
  const closing = new AbortController();
  const timers = new PendingTimers(closing.signal);
  return {
    clientId,
    clientSecret,
    faults,
    tokens,
    stats,
    requests,
    closing,
    timers,
    snapshot: () => stats.snapshot(tokens.issuedCount),
    setFaults: (partial) => faults.set(partial),
    failNext: (endpoint, count, status, opts) => {
      const request: FailNextRequest = {
        endpoint,
        count,
        status: status as FailNextRequest["status"],
      };
      if (opts?.retryAfterSec !== undefined) request.retryAfterSec = opts.retryAfterSec;
      faults.failNext(request);
    },
    revokeToken: () => tokens.revoke(),
    reset: () => {
      faults.reset();
      stats.reset();
      requests.reset();
      tokens.resetCount();
    },
  };
}

/**
 * The fault settings among the simulator's options: they may carry host, port and
 * credentials too, and only fault keys go into the strict schema.
 */
export function pickFaults(options: Record<string, unknown>): SimulatorFaultsPatch {
  const keys = [...Object.keys(DEFAULT_FAULTS), "tokenDownForMs"];
  return Object.fromEntries(
    keys.filter((k) => options[k] !== undefined).map((k) => [k, options[k]]),
  ) as SimulatorFaultsPatch;
}

import type { SimEndpoint } from "./faults.js";

/** One request as the simulator saw it: when it came, when and how it was answered. */
export interface LoggedRequest {
  endpoint: SimEndpoint;
  /** Method and path with query: the same resource asked again has the same `target`. */
  target: string;
  /** The client's X-Request-Id, to match this entry with the client's own log line. */
  requestId?: string;
  receivedAt: number;
  /** Undefined while the request is open (a hang) or when the socket closed unanswered. */
  answeredAt?: number;
  status?: number | "reset" | "hang";
  retryAfterSec?: number;
}

const MAX_ENTRIES = 50_000;

/**
 * A bounded, time-stamped log of data and token requests. Counters say how many calls
 * came; this says when, so a test can prove that a retry of the same resource never came
 * sooner than the Retry-After it was given.
 */
export class RequestLog {
  private entries: LoggedRequest[] = [];

  begin(
    endpoint: SimEndpoint,
    target: string,
    requestId: string | undefined,
    now = Date.now(),
  ): LoggedRequest {
    const entry: LoggedRequest = { endpoint, target, receivedAt: now };
    if (requestId !== undefined) entry.requestId = requestId;
    this.entries.push(entry);
    if (this.entries.length > MAX_ENTRIES) this.entries.splice(0, MAX_ENTRIES / 10);
    return entry;
  }

  snapshot(): LoggedRequest[] {
    return this.entries.map((entry) => ({ ...entry }));
  }

  reset(): void {
    this.entries = [];
  }
}

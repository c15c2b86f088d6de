import { SIM_ENDPOINTS, type SimEndpoint } from "./faults.js";

export interface SimulatorStats {
  calls: Record<SimEndpoint, number>;
  statuses: Record<SimEndpoint, Record<string, number>>;
  tokensIssued: number;
  requestIds: string[];
  maxConcurrent: Record<SimEndpoint, number>;
}

const MAX_REQUEST_IDS = 10_000;

function perEndpoint<T>(make: () => T): Record<SimEndpoint, T> {
  return Object.fromEntries(SIM_ENDPOINTS.map((e) => [e, make()])) as Record<SimEndpoint, T>;
}

export class StatsRecorder {
  private calls = perEndpoint(() => 0);
  private statuses = perEndpoint((): Record<string, number> => ({}));
  private maxConcurrent = perEndpoint(() => 0);
  // Live requests survive a reset, so in-flight is never cleared, only the peaks.
  private readonly inFlight = perEndpoint(() => 0);
  private requestIds: string[] = [];

  /** Returns a function to call once when the request is over (answered, reset or abandoned). */
  begin(endpoint: SimEndpoint, requestId: string | undefined): () => void {
    this.calls[endpoint] += 1;
    if (requestId !== undefined) {
      this.requestIds.push(requestId);
      // Trimmed in batches: dropping one id per request moved 10,000 others each time.
      if (this.requestIds.length >= 2 * MAX_REQUEST_IDS) {
        this.requestIds.splice(0, this.requestIds.length - MAX_REQUEST_IDS);
      }
    }
    this.inFlight[endpoint] += 1;
    this.maxConcurrent[endpoint] = Math.max(this.maxConcurrent[endpoint], this.inFlight[endpoint]);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.inFlight[endpoint] -= 1;
    };
  }

  status(endpoint: SimEndpoint, status: number | "reset" | "hang"): void {
    const key = String(status);
    const bucket = this.statuses[endpoint];
    bucket[key] = (bucket[key] ?? 0) + 1;
  }

  snapshot(tokensIssued: number): SimulatorStats {
    return {
      calls: { ...this.calls },
      statuses: Object.fromEntries(
        SIM_ENDPOINTS.map((e) => [e, { ...this.statuses[e] }]),
      ) as SimulatorStats["statuses"],
      tokensIssued,
      requestIds: this.requestIds.slice(-MAX_REQUEST_IDS),
      maxConcurrent: { ...this.maxConcurrent },
    };
  }

  reset(): void {
    this.calls = perEndpoint(() => 0);
    this.statuses = perEndpoint(() => ({}));
    this.maxConcurrent = { ...this.inFlight };
    this.requestIds = [];
  }
}

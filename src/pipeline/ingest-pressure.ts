import { type EventLoopUtilization, performance } from "node:perf_hooks";

/** Tells the worker to step back so that callbacks keep being acknowledged promptly. */
export interface LoadGauge {
  busy(): boolean;
}

export interface IngestPressureOptions {
  /** Length of the window over which the event loop's utilization is judged. */
  windowMs?: number;
  /** Utilization (0..1) above which the loop counts as saturated. */
  threshold?: number;
  /** Injected in tests; Node's own measure otherwise. */
  utilization?: (
    current?: EventLoopUtilization,
    previous?: EventLoopUtilization,
  ) => EventLoopUtilization;
  now?: () => number;
}

/**
 * Ack first, work later: under a flood of callbacks the process's one event loop is
 * shared by the HTTP handling and the worker's checks. When callbacks arrived within the
 * last window and the loop was busy for more than `threshold` of it, the gauge reads busy
 * and the worker fetches one check at a time until the flood eases (the inbox holds the
 * rest durably). Without callbacks the worker always runs at full concurrency.
 */
export class IngestPressure implements LoadGauge {
  private readonly windowMs: number;
  private readonly threshold: number;
  private readonly utilization: NonNullable<IngestPressureOptions["utilization"]>;
  private readonly now: () => number;
  private lastArrival = Number.NEGATIVE_INFINITY;
  private windowStart: EventLoopUtilization;
  private windowStartedAt: number;
  private saturated = false;

  constructor(options: IngestPressureOptions = {}) {
    this.windowMs = options.windowMs ?? 250;
    this.threshold = options.threshold ?? 0.9;
    this.utilization = options.utilization ?? performance.eventLoopUtilization;
    this.now = options.now ?? (() => performance.now());
    this.windowStart = this.utilization();
    this.windowStartedAt = this.now();
  }

  /** A callback was accepted. */
  noteArrival(): void {
    this.lastArrival = this.now();
  }

  busy(): boolean {
    const now = this.now();
    if (now - this.windowStartedAt >= this.windowMs) {
      const current = this.utilization();
      this.saturated = this.utilization(current, this.windowStart).utilization > this.threshold;
      this.windowStart = current;
      this.windowStartedAt = now;
    }
    return this.saturated && now - this.lastArrival < this.windowMs;
  }
}

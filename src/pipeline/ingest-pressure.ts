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
  /**
   * Stored callbacks per second from which they alone count as a flood, whatever the
   * loop's utilization (default FLOOD_PER_SECOND). Counted per process: replicas behind a
   * balancer each see their share of a flood, and one that only works sees none.
   */
  floodPerSecond?: number;
  /** Injected in tests; Node's own measure otherwise. */
  utilization?: (
    current?: EventLoopUtilization,
    previous?: EventLoopUtilization,
  ) => EventLoopUtilization;
  now?: () => number;
}

/**
 * Far above any mandator's steady rate (finAPI sends one callback per finished widget),
 * and reached only by a flood: a replay, a load test, a backlog released at once.
 */
export const FLOOD_PER_SECOND = 1000;

/**
 * Ack first, work later: under a flood of callbacks the process's one event loop is
 * shared by the HTTP handling and the worker's checks. When callbacks arrived within the
 * last window and either the loop was busy for more than `threshold` of it or they went
 * into the inbox at `floodPerSecond` or more, the gauge reads busy and the worker fetches
 * one check at a time until the flood eases (the inbox holds the rest durably). The rate
 * matters where the loop has room because the store is the narrow part: a PostgreSQL
 * server on the same cores spent a quarter of its time on the worker's claims and
 * outcomes during a flood, while the loop waited for it (issue 7, fifteenth session).
 * Without callbacks the worker always runs at full concurrency.
 */
export class IngestPressure implements LoadGauge {
  private readonly windowMs: number;
  private readonly threshold: number;
  private readonly utilization: NonNullable<IngestPressureOptions["utilization"]>;
  private readonly now: () => number;
  private lastArrival = Number.NEGATIVE_INFINITY;
  private windowStart: EventLoopUtilization;
  private windowStartedAt: number;
  /** The last judgement: the loop saturated, or callbacks flooding the inbox. */
  private pressed = false;
  private readonly floodPerSecond: number;
  private storedInWindow = 0;

  constructor(options: IngestPressureOptions = {}) {
    this.windowMs = options.windowMs ?? 250;
    this.threshold = options.threshold ?? 0.9;
    this.floodPerSecond = options.floodPerSecond ?? FLOOD_PER_SECOND;
    this.utilization = options.utilization ?? performance.eventLoopUtilization;
    this.now = options.now ?? (() => performance.now());
    this.windowStart = this.utilization();
    this.windowStartedAt = this.now();
  }

  /** A request came to the callback endpoint, whatever its answer (it cost the loop). */
  noteArrival(): void {
    this.lastArrival = this.now();
  }

  /**
   * A callback went to the inbox (stored, or found there already). Only these count
   * toward the flood rate: they compete with the worker for the store, while refusals
   * (a scanner, a wrong secret, a network that may not call) must not hold checks back.
   */
  noteStored(): void {
    this.noteArrival();
    this.storedInWindow += 1;
  }

  busy(): boolean {
    const now = this.now();
    const elapsedMs = now - this.windowStartedAt;
    if (elapsedMs >= this.windowMs) {
      const current = this.utilization();
      const flooded = (this.storedInWindow * 1000) / elapsedMs >= this.floodPerSecond;
      this.pressed =
        flooded || this.utilization(current, this.windowStart).utilization > this.threshold;
      this.windowStart = current;
      this.windowStartedAt = now;
      this.storedInWindow = 0;
    }
    return this.pressed && now - this.lastArrival < this.windowMs;
  }
}

/**
 * The timers that hold answers back (latency) or delay a reset. Plain timers in one set,
 * cleared together when the simulator closes: an AbortSignal listener per request costs
 * more than the request's own work, and a pending timer must not outlive the server.
 */
export class PendingTimers {
  private readonly pending = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(signal: AbortSignal) {
    if (signal.aborted) this.closed = true;
    else signal.addEventListener("abort", () => this.clear(), { once: true });
  }

  /** Runs `fn` after `ms`, unless the simulator closes first. */
  after(ms: number, fn: () => void): void {
    if (this.closed) return;
    const timer = setTimeout(() => {
      this.pending.delete(timer);
      fn();
    }, ms);
    this.pending.add(timer);
  }

  private clear(): void {
    this.closed = true;
    for (const timer of this.pending) clearTimeout(timer);
    this.pending.clear();
  }
}

import type { Logger } from "../logger.js";

/**
 * At most `perWindow` log lines per `windowMs` for one kind of event that anyone on the
 * internet can cause (a scanner hitting the public port): the first lines of each window
 * are written, the rest only counted, and the next line written says how many were left
 * out. Metrics count every event; the log only has to show that it happens and why.
 */
export class LogBudget {
  private windowStart = Number.NEGATIVE_INFINITY;
  private written = 0;
  private skipped = 0;

  constructor(
    private readonly perWindow: number,
    private readonly windowMs: number,
    private readonly clock: () => number = Date.now,
  ) {}

  /**
   * Whether to write this event's line, and how many events since the last line written
   * were not (to say so in this one).
   */
  take(): { write: boolean; notLogged: number } {
    const now = this.clock();
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.written = 0;
    }
    if (this.written >= this.perWindow) {
      this.skipped += 1;
      return { write: false, notLogged: 0 };
    }
    this.written += 1;
    const notLogged = this.skipped;
    this.skipped = 0;
    return { write: true, notLogged };
  }

  /** Logs `message` at warn if the budget allows, with `notLogged` when lines were left out. */
  warn(logger: Logger, fields: Record<string, unknown>, message: string): void {
    const { write, notLogged } = this.take();
    if (write) logger.warn({ ...fields, ...(notLogged > 0 ? { notLogged } : {}) }, message);
  }
}

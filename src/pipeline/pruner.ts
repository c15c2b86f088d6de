import { setImmediate as nextTurn } from "node:timers/promises";
import { FINISHED_STATES, type FinishedState, type Inbox } from "../inbox/inbox.js";
import type { Logger } from "../logger.js";

export interface PrunerOptions {
  inbox: Inbox;
  /** How long a job in each finished state is kept after it finished; null keeps it forever. */
  retentionMs: Record<FinishedState, number | null>;
  intervalMs: number;
  logger: Logger;
  /** Jobs deleted per statement (default: DEFAULT_BATCH_SIZE for each state). */
  batchSize?: number;
  clock?: () => number;
  onPruned?: (state: FinishedState, count: number) => void;
  /** After each run: whether it got through (a failure is logged, and counted here). */
  onRun?: (result: "success" | "failure") => void;
}

/** The first run comes this soon after start (or after one interval, if that is shorter). */
export const FIRST_PRUNE_DELAY_MS = 5000;
/**
 * Dead jobs keep their whole bundle (bank data, up to MBs with documents): 500 of them of
 * 200 KB each took 100-130 ms in one SQLite statement, on the event loop that answers
 * callbacks. A done job keeps only its callback and a little progress.
 */
export const DEFAULT_BATCH_SIZE: Record<FinishedState, number> = { done: 500, dead: 50 };

/**
 * Retention: every interval, deletes the finished jobs past their state's retention, one
 * bounded batch at a time until a batch comes back short, yielding to the event loop
 * between batches. A failed run is logged and the next one comes at the next interval.
 * Runs never overlap; the timer does not keep the process alive.
 */
export class Pruner {
  private readonly clock: () => number;
  private readonly batchSize: Record<FinishedState, number>;
  private timer: NodeJS.Timeout | undefined;
  private current: Promise<unknown> | undefined;
  private started = false;
  private stopping = false;

  constructor(private readonly options: PrunerOptions) {
    this.clock = options.clock ?? Date.now;
    const { batchSize } = options;
    this.batchSize =
      batchSize === undefined ? DEFAULT_BATCH_SIZE : { done: batchSize, dead: batchSize };
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    const { retentionMs, intervalMs } = this.options;
    if (FINISHED_STATES.every((state) => retentionMs[state] === null)) return;
    this.schedule(Math.min(FIRST_PRUNE_DELAY_MS, intervalMs));
  }

  /** No new run starts; a run in progress stops after its current batch. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    await this.current;
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => {
      // Assigned before the run begins, so a stop() from anywhere inside it waits for it.
      this.current = Promise.resolve()
        .then(() => this.run())
        .finally(() => {
          this.current = undefined;
          if (!this.stopping) this.schedule(this.options.intervalMs);
        });
    }, delayMs);
    this.timer.unref();
  }

  /** One pass over every finished state with a retention; never throws. */
  async run(): Promise<Record<FinishedState, number>> {
    const { inbox, retentionMs, logger, onPruned, onRun } = this.options;
    const now = this.clock();
    const pruned: Record<FinishedState, number> = { done: 0, dead: 0 };
    const cutOffs: Partial<Record<`${FinishedState}Before`, string>> = {};
    try {
      for (const state of FINISHED_STATES) {
        const retention = retentionMs[state];
        if (retention === null || this.stopping) continue;
        const finishedBefore = new Date(now - retention);
        cutOffs[`${state}Before`] = finishedBefore.toISOString();
        const batchSize = this.batchSize[state];
        for (;;) {
          const count = await inbox.prune(state, finishedBefore, batchSize);
          pruned[state] += count;
          if (count > 0) onPruned?.(state, count);
          if (count < batchSize || this.stopping) break;
          // A backlog goes batch by batch; callbacks and the worker get their turn between.
          await nextTurn();
        }
      }
    } catch (error) {
      logger.warn(
        { err: error, ...pruned, ...cutOffs },
        "pruning finished jobs failed; trying again after PRUNE_INTERVAL_MS",
      );
      onRun?.("failure");
      return pruned;
    }
    onRun?.("success");
    if (pruned.dead > 0) {
      // Dead jobs are checks that were never delivered: their deletion is worth a warning.
      logger.warn(
        { ...pruned, ...cutOffs },
        "pruned finished jobs past their retention, dead ones (never delivered) among them",
      );
    } else if (pruned.done > 0) {
      logger.info({ ...pruned, ...cutOffs }, "pruned finished jobs past their retention");
    }
    return pruned;
  }
}

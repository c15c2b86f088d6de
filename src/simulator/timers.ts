/** A timer `after` started, for `cancel`. */
export interface HeldTimer {
  readonly fn: () => void;
}

interface Pending extends HeldTimer {
  timer: NodeJS.Timeout | undefined;
  prev: Pending | undefined;
  next: Pending | undefined;
}

/**
 * The timers that hold answers back (latency) or delay a reset: plain timers, cleared
 * together when the simulator closes, so that none outlives the server. An AbortSignal
 * listener per request cost more than the request's own work. The pending ones are kept
 * in a linked list of small entries: a Set of the Timeout objects (which then need an
 * identity hash) tripled the young-generation GC work under load.
 */
export class PendingTimers {
  private head: Pending | undefined;
  private closed = false;

  constructor(signal: AbortSignal) {
    if (signal.aborted) this.closed = true;
    else signal.addEventListener("abort", () => this.clear(), { once: true });
  }

  /** Runs `fn` after `ms`, unless the simulator closes first (or it is cancelled). */
  after(ms: number, fn: () => void): HeldTimer {
    const entry: Pending = { fn, timer: undefined, prev: undefined, next: undefined };
    if (this.closed) return entry;
    entry.next = this.head;
    if (this.head) this.head.prev = entry;
    this.head = entry;
    entry.timer = setTimeout(() => {
      this.unlink(entry);
      entry.fn();
    }, ms);
    return entry;
  }

  /** Drops a timer that has not fired yet; does nothing for one that has. */
  cancel(held: HeldTimer): void {
    const entry = held as Pending;
    if (this.closed || entry.timer === undefined) return;
    clearTimeout(entry.timer);
    this.unlink(entry);
  }

  private unlink(entry: Pending): void {
    entry.timer = undefined;
    if (entry.prev) entry.prev.next = entry.next;
    else this.head = entry.next;
    if (entry.next) entry.next.prev = entry.prev;
    entry.prev = undefined;
    entry.next = undefined;
  }

  private clear(): void {
    this.closed = true;
    for (let entry = this.head; entry; entry = entry.next) clearTimeout(entry.timer);
    this.head = undefined;
  }
}

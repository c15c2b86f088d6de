import { describe, expect, it, vi } from "vitest";
import { PendingTimers } from "../../src/simulator/timers.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("PendingTimers", () => {
  it("runs each callback after its delay, in time order, whatever the order of scheduling", async () => {
    const timers = new PendingTimers(new AbortController().signal);
    const ran: string[] = [];
    timers.after(40, () => ran.push("c"));
    timers.after(10, () => ran.push("a"));
    timers.after(25, () => ran.push("b"));
    await sleep(80);
    expect(ran).toEqual(["a", "b", "c"]);
    // The list is empty again: a later one still runs.
    timers.after(0, () => ran.push("d"));
    await sleep(20);
    expect(ran).toEqual(["a", "b", "c", "d"]);
  });

  it("cancels one timer, wherever it is in the list; a fired or cancelled one is left alone", () => {
    // Fake time: the order below must not depend on how late a loaded machine wakes up.
    vi.useFakeTimers();
    try {
      const timers = new PendingTimers(new AbortController().signal);
      const ran: string[] = [];
      const first = timers.after(0, () => ran.push("first"));
      const a = timers.after(10, () => ran.push("a"));
      const b = timers.after(20, () => ran.push("b"));
      timers.after(30, () => ran.push("c"));
      vi.advanceTimersByTime(5);
      timers.cancel(first); // already fired
      timers.cancel(b); // in the middle of the list
      timers.cancel(b);
      timers.cancel(a); // then what is now the tail
      timers.after(15, () => ran.push("d")); // at 20: before c at 30
      vi.advanceTimersByTime(60);
      expect(ran).toEqual(["first", "d", "c"]);
    } finally {
      vi.useRealTimers();
    }
  });

  it("drops everything pending when the signal aborts, and schedules nothing after", async () => {
    const closing = new AbortController();
    const timers = new PendingTimers(closing.signal);
    const ran: number[] = [];
    timers.after(5, () => ran.push(1));
    timers.after(30, () => ran.push(2));
    timers.after(60, () => ran.push(3));
    await sleep(15);
    closing.abort();
    timers.after(0, () => ran.push(4));
    await sleep(80);
    expect(ran).toEqual([1]);
  });

  it("does nothing for a signal that is already aborted", async () => {
    const closing = new AbortController();
    closing.abort();
    const timers = new PendingTimers(closing.signal);
    let ran = false;
    timers.after(0, () => {
      ran = true;
    });
    await sleep(20);
    expect(ran).toBe(false);
  });
});

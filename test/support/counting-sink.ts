import type { Bundle, Sink } from "../../src/sinks/sink.js";

/** A sink that only counts: how many times each check was delivered. */
export class CountingSink implements Sink {
  readonly name = "counting";
  readonly deliveries = new Map<string, number>();

  async deliver(bundle: Bundle): Promise<void> {
    const id = bundle.callback.kreditCheckId;
    this.deliveries.set(id, (this.deliveries.get(id) ?? 0) + 1);
  }

  /** Checks delivered more than once, with their counts. */
  duplicates(): [string, number][] {
    return [...this.deliveries].filter(([, count]) => count > 1);
  }
}

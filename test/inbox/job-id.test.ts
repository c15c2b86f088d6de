import { describe, expect, it } from "vitest";
import { newJobId } from "../../src/inbox/job-id.js";

describe("job ids", () => {
  it("are UUIDs version 7 that carry the time and sort by it", () => {
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
    const at = Date.parse("2026-11-26T10:00:00.000Z");
    const id = newJobId(at);
    expect(id).toMatch(uuid);
    expect(Number.parseInt(id.replace(/-/g, "").slice(0, 12), 16)).toBe(at);
    expect(newJobId(at + 1) > newJobId(at)).toBe(true);
    expect(newJobId()).toMatch(uuid);
  });

  it("are unique, also within one millisecond and across refills of the random pool", () => {
    const ids = new Set<string>();
    for (let i = 0; i < 10_000; i++) ids.add(newJobId(1_800_000_000_000));
    expect(ids.size).toBe(10_000);
  });
});

import { describe, expect, it } from "vitest";
import { unstorablePath } from "../src/callback.js";

describe("unstorablePath: what PostgreSQL could not store", () => {
  it("finds U+0000 and half of a surrogate pair, naming where", () => {
    expect(unstorablePath({ a: ["ok", "x\u0000"] })).toEqual({ path: ["a", 1], text: "x\u0000" });
    expect(unstorablePath({ a: "\ud83d" })).toEqual({ path: ["a"], text: "\ud83d" });
    expect(unstorablePath({ a: "x\ude00" })).toEqual({ path: ["a"], text: "x\ude00" });
    expect(unstorablePath({ "k\udbff": 1 })).toEqual({ path: ["k\udbff"], text: "k\udbff" });
  });

  it("lets whole characters through, those outside the BMP too", () => {
    expect(unstorablePath({ a: "😀 ä ß €", b: ["\ud83d\ude00"], c: 1 })).toBeUndefined();
  });
});

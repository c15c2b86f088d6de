import { describe, expect, it } from "vitest";
import { storableJson } from "../../src/sinks/postgres-text.js";

describe("the postgres sink's text as jsonb takes it", () => {
  it("keeps both values when two keys become one after their replacement", () => {
    const { json, replaced } = storableJson({
      names: { "a\u0000": "first", "a\ud800": "second", "a\ufffd": "third" },
    });
    expect(JSON.parse(json)).toEqual({
      names: { "a\ufffd": "third", "a\ufffd (2)": "first", "a\ufffd (3)": "second" },
    });
    expect(replaced).toBe(2);
  });

  it("leaves text without such characters as it is, at the cost of one scan", () => {
    const value = { a: "b\\u0000 is text, not a NUL", list: [1, "\ud83d\ude00"] };
    expect(storableJson(value)).toEqual({ json: JSON.stringify(value), replaced: 0 });
  });
});

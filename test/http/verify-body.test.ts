import { describe, expect, it } from "vitest";
import { findDuplicateKey } from "../../src/http/verify-body.js";

describe("findDuplicateKey", () => {
  it("names a key that appears twice in one object, by its path", () => {
    expect(findDuplicateKey('{"a":1,"a":2}')).toBe("a");
    expect(findDuplicateKey('{"a":{"b":1},"a":2}')).toBe("a");
    expect(findDuplicateKey('{"x":{"y":1,"y":2}}')).toBe("x.y");
    expect(findDuplicateKey('{"list":[{"k":1},{"k":1,"k":2}]}')).toBe("list[1].k");
    expect(findDuplicateKey('{"a":[1,{"b":1}],"c":1,"c":2}')).toBe("c");
    expect(findDuplicateKey('[[1],[2,{"q":1,"q":1}]]')).toBe("[1][1].q");
  });

  it("compares keys by value, not by how they are escaped", () => {
    expect(findDuplicateKey('{"processToken":"x","\\u0070rocessToken":"y"}')).toBe("processToken");
    // An escaped quote belongs to the key: 'a"' twice is a duplicate, not two keys 'a'.
    expect(findDuplicateKey('{"a\\"":1,"a\\"":2}')).toBe('a"');
    expect(findDuplicateKey('{"a\\"":1,"a":2}')).toBeUndefined();
  });

  it("finds nothing where keys repeat only across objects, or only inside strings", () => {
    expect(findDuplicateKey('{"a":1,"b":{"a":2}}')).toBeUndefined();
    expect(findDuplicateKey('[{"a":1},{"a":1}]')).toBeUndefined();
    expect(findDuplicateKey('{"a":"}{\\"a\\":1,","b":"\\\\","c":["a","a"]}')).toBeUndefined();
    expect(findDuplicateKey('{"processToken":"pt","kreditCheckId":"kc"}')).toBeUndefined();
  });

  it("walks 30,000 levels of nesting without recursion", () => {
    const deep = `${"[".repeat(30_000)}${"]".repeat(30_000)}`;
    expect(findDuplicateKey(deep)).toBeUndefined();
    const deepObjects = `${'{"a":'.repeat(30_000)}{"z":1,"z":2}${"}".repeat(30_000)}`;
    expect(findDuplicateKey(deepObjects)?.split(".")).toHaveLength(30_001);
  });
});

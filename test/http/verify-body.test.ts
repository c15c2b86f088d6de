import { describe, expect, it } from "vitest";
import { findTextProblem } from "../../src/http/verify-body.js";

/** The repeated key findTextProblem names, if that is what it finds. */
const findDuplicateKey = (text: string) => {
  const problem = findTextProblem(text);
  return problem?.kind === "duplicate_key" ? problem.field : undefined;
};

/** The field of the number findTextProblem refuses, if that is what it finds. */
const unheldNumber = (text: string) => {
  const problem = findTextProblem(text);
  return problem?.kind === "number" ? problem.field : undefined;
};

describe("findTextProblem: repeated keys", () => {
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

describe("findTextProblem: numbers a JavaScript number cannot hold as sent", () => {
  it("names an integer beyond ±(2^53 - 1), one too large for a double, a non-zero one too small", () => {
    expect(unheldNumber('{"reportId":12345678901234567891}')).toBe("reportId");
    expect(unheldNumber('{"a":9007199254740992}')).toBe("a");
    expect(unheldNumber('{"a":-9007199254740993}')).toBe("a");
    expect(unheldNumber('{"score":1e400}')).toBe("score");
    expect(unheldNumber('{"score":-1.5E+309}')).toBe("score");
    expect(unheldNumber('{"tiny":-1e-400}')).toBe("tiny");
    expect(unheldNumber('{"tiny":0.000001e-330}')).toBe("tiny");
    expect(unheldNumber(`{"tiny":0.${"0".repeat(400)}1}`)).toBe("tiny");
    expect(unheldNumber(`{"huge":${"9".repeat(400)}.5}`)).toBe("huge");
  });

  it("names it by its path, as zod names a field", () => {
    expect(unheldNumber('{"x":{"list":[1,2,1e999]}}')).toBe("x.list.2");
    expect(unheldNumber('{"a":[{"b":1},{"c":[0,12345678901234567891]}]}')).toBe("a.1.c.1");
    expect(unheldNumber('{"a":{"b":1},"c":1e400}')).toBe("c");
    expect(unheldNumber("1e400")).toBe("(body)");
  });

  it("passes what a double holds as sent, and digits inside strings", () => {
    for (const number of [
      "0",
      "-0",
      "9007199254740991",
      "-9007199254740991",
      "123456789012345",
      "1e308",
      "-1.7976931348623157e308",
      "5e-324",
      "0e-400",
      "0.0e999",
      "1.5",
      "-0.000000000001",
      // A fraction or an exponent is kept as the nearest double, as JSON.parse reads it.
      "1e20",
      "3.14159265358979323846",
    ]) {
      expect(findTextProblem(`{"a":${number},"b":[${number}]}`), number).toBeUndefined();
    }
    expect(findTextProblem('{"a":"12345678901234567891","b":"1e400"}')).toBeUndefined();
  });
});

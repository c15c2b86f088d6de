import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ERROR_CODES } from "../src/errors.js";

/** The README's table of codes ("When a job fails"): its first column, code by code. */
function documentedCodes(): Set<string> {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const start = readme.indexOf("**When a job fails**");
  const table = readme.slice(start, readme.indexOf("\n\n", readme.indexOf("\n|", start)));
  const codes = new Set<string>();
  for (const row of table.split("\n").filter((line) => line.startsWith("| `"))) {
    const firstCell = row.split("|")[1] ?? "";
    for (const [, code] of firstCell.matchAll(/`([a-z_]+)`/g)) codes.add(code as string);
  }
  return codes;
}

describe("README's table of error codes", () => {
  it("explains every code a job's last error or a bundle's problems can carry", () => {
    const documented = documentedCodes();
    // The pipeline's problems, and the one the postgres sink adds to the row it stores.
    const problemCodes = ["../src/pipeline/process-check.ts", "../src/sinks/postgres-text.ts"]
      .map((file) => readFileSync(new URL(file, import.meta.url), "utf8"))
      .flatMap((source) => [...source.matchAll(/code: "([a-z_]+)"/g)]);
    const given = new Set([...ERROR_CODES, ...problemCodes.map((match) => match[1] as string)]);
    expect([...given].filter((code) => !documented.has(code))).toEqual([]);
    // The table is found at all: it names the codes users meet first.
    expect(documented).toContain("finapi_forbidden");
  });
});

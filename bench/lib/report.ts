import { mkdir, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const RESULTS = fileURLToPath(new URL("../results/", import.meta.url));

export type Row = Record<string, string | number>;

/** A plain text table, columns as wide as their widest cell. */
export function table(rows: Row[]): string {
  const first = rows[0];
  if (!first) return "";
  const columns = Object.keys(first);
  const cell = (value: string | number | undefined) =>
    typeof value === "number" ? String(Math.round(value * 100) / 100) : (value ?? "");
  const widths = columns.map((column) =>
    Math.max(column.length, ...rows.map((row) => cell(row[column]).length)),
  );
  const line = (cells: string[]) =>
    `| ${cells.map((text, index) => text.padEnd(widths[index] ?? 0)).join(" | ")} |`;
  return [
    line(columns),
    line(widths.map((width) => "-".repeat(width))),
    ...rows.map((row) => line(columns.map((column) => cell(row[column])))),
  ].join("\n");
}

/** Writes bench/results/<name>.json (git-ignored) and says where. */
export async function saveResults(name: string, figures: unknown): Promise<string> {
  await mkdir(RESULTS, { recursive: true });
  const path = `${RESULTS}${name}.json`;
  await writeFile(
    path,
    `${JSON.stringify({ bench: name, at: new Date().toISOString(), node: process.version, figures }, null, 2)}\n`,
  );
  return path;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] ?? 0)
    : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

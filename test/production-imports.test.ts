import { readdir, readFile } from "node:fs/promises";
import { builtinModules } from "node:module";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Every .ts file under `dir`. */
async function sources(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((entry) => entry.isFile() && entry.name.endsWith(".ts"))
    .map((entry) => join(entry.parentPath, entry.name));
}

/**
 * The packages a file loads when it runs: static imports and re-exports (not `import type`
 * or `export type`, which the build erases) and dynamic `import()`.
 */
function runtimePackages(text: string): string[] {
  const specifiers: string[] = [];
  const statement = /\b(?:import|export)\s+(type\s+)?(?:[^;'"]*?\sfrom\s+)?["']([^"']+)["']/g;
  for (const match of text.matchAll(statement)) {
    if (!match[1]) specifiers.push(match[2] as string);
  }
  for (const match of text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)) {
    specifiers.push(match[1] as string);
  }
  return specifiers
    .filter((specifier) => !specifier.startsWith(".") && !specifier.startsWith("node:"))
    .filter((specifier) => !builtinModules.includes(specifier))
    .map((specifier) =>
      specifier.startsWith("@")
        ? specifier.split("/").slice(0, 2).join("/")
        : (specifier.split("/")[0] as string),
    );
}

describe("the Docker image's node_modules (npm prune --omit=dev)", () => {
  it("reads runtime imports, not type-only ones", () => {
    const text = [
      'import type { Logger } from "pino";',
      'import { type Axios, isAxiosError } from "axios";',
      'import {\n  Agent,\n  type Dispatcher,\n} from "undici";',
      'export { proxyOf } from "./undici-adapter.js";',
      'export type { Row } from "autocannon";',
      'import "dotenv/config";',
      'const pg = await import("pg");',
      'import { readFile } from "node:fs/promises";',
      'import { z } from "zod/v4";',
      'import { x } from "@scope/pkg/sub";',
    ].join("\n");
    expect(runtimePackages(text)).toEqual(["axios", "undici", "dotenv", "zod", "@scope/pkg", "pg"]);
  });

  it("holds every package src/ loads at run time: none is a devDependency only", async () => {
    const manifest = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
    };
    const missing: string[] = [];
    for (const file of await sources(join(ROOT, "src"))) {
      for (const name of runtimePackages(await readFile(file, "utf8"))) {
        if (!(name in manifest.dependencies)) missing.push(`${relative(ROOT, file)}: ${name}`);
      }
    }
    // Such a file runs under npm test (devDependencies installed) and fails in the image.
    expect(missing).toEqual([]);
  });
});

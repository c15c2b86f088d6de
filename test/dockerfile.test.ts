import { readdir, readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";

/** No Docker engine here: the Dockerfile and .dockerignore are read as text. */
const ROOT = new URL("../", import.meta.url);
const read = (name: string) => readFile(new URL(name, ROOT), "utf8");

/** The lines of the final (runtime) stage, continuation lines joined. */
async function runtimeStage(): Promise<string[]> {
  const lines = (await read("Dockerfile")).replace(/\\\n/g, " ").split("\n");
  const from = lines.findLastIndex((line) => /^FROM\s/.test(line));
  return lines.slice(from).filter((line) => line.trim() !== "" && !line.startsWith("#"));
}

/**
 * Whether the build context leaves `path` out, by .dockerignore's rules as Docker applies
 * them: patterns are matched from the context's root, `*` within one name, `**` across
 * folders; a pattern that matches a folder leaves out all in it; the last matching line
 * decides, and `!` takes a path back in.
 */
function leftOut(rules: string[], path: string): boolean {
  const prefixes = path.split("/").map((_, index, names) => names.slice(0, index + 1).join("/"));
  let excluded = false;
  for (const rule of rules) {
    const negated = rule.startsWith("!");
    const pattern = globToRegExp(negated ? rule.slice(1) : rule);
    if (prefixes.some((prefix) => pattern.test(prefix))) excluded = !negated;
  }
  return excluded;
}

function globToRegExp(glob: string): RegExp {
  const source = glob
    .replace(/^\/+|\/+$/g, "")
    .split(/(\*\*\/|\*\*|\*|\?)/)
    .map((part) => {
      if (part === "**/") return "(?:.*/)?";
      if (part === "**") return ".*";
      if (part === "*") return "[^/]*";
      if (part === "?") return "[^/]";
      return part.replace(/[.+^${}()|[\]\\]/g, "\\$&");
    })
    .join("");
  return new RegExp(`^${source}$`);
}

async function dockerignore(): Promise<string[]> {
  return (await read(".dockerignore"))
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
}

describe("the Docker image", () => {
  it("leaves the code root's: only /data is the service user's", async () => {
    const stage = await runtimeStage();
    const copies = stage.filter((line) => /^COPY\s/.test(line));
    expect(copies.length).toBeGreaterThan(0);
    for (const copy of copies) expect(copy).not.toMatch(/--chown/);
    expect(stage).toContain("RUN mkdir -p /data && chown node:node /data");
  });

  it("runs as a numeric non-root user, which Kubernetes' runAsNonRoot can verify", async () => {
    const users = (await runtimeStage()).filter((line) => /^USER\s/.test(line));
    expect(users).toHaveLength(1);
    const [uid] = (users[0] ?? "").replace(/^USER\s+/, "").split(":");
    expect(uid).toMatch(/^[1-9][0-9]*$/);
  });

  it("builds from a context with what the Dockerfile copies from it", async () => {
    const rules = await dockerignore();
    const sources = (await read("Dockerfile"))
      .split("\n")
      .filter((line) => /^COPY\s/.test(line) && !line.includes("--from="))
      .flatMap((line) => line.split(/\s+/).slice(1, -1))
      .filter((word) => !word.startsWith("--"));
    expect(sources).toEqual(expect.arrayContaining(["package-lock.json", "src", "examples"]));
    for (const source of sources) {
      expect(leftOut(rules, source), source).toBe(false);
      const inside = await readdir(new URL(source, ROOT), { recursive: true }).catch(() => []);
      for (const file of inside) expect(leftOut(rules, `${source}/${file}`), file).toBe(false);
    }
  });

  it("keeps secrets, local state and what the image does not run out of the context", async () => {
    const rules = await dockerignore();
    for (const path of [
      ".env",
      ".env.local",
      ".env.production",
      "src/.env",
      ".npmrc",
      "key.pem",
      "src/tls/cert.pem",
      "npm-debug.log",
      ".git/config",
      "node_modules/pg/package.json",
      "dist/main.js",
      "data/receiver.db",
      "reports/vitest.json",
      "test/config.test.ts",
      "bench/ingest.ts",
      ".ci/run",
    ]) {
      expect(leftOut(rules, path), path).toBe(true);
    }
    expect(leftOut(rules, ".env.example")).toBe(false);
  });
});

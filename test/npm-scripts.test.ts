import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { freePort } from "./support/child-service.js";
import { waitFor } from "./support/wait-for.js";

const scripts = (
  JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
    scripts: Record<string, string>;
  }
).scripts;

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/**
 * `npm start &` then `kill %1` (or a process manager stopping npm) signals npm, which
 * passes the signal to the shell running the script. Debian's sh (dash) does not pass it
 * on to node: without `exec` the server went on running, orphaned, holding its port.
 */
describe("npm scripts that run a server", () => {
  it("start, dev and simulator replace the script's shell with the server (exec)", () => {
    for (const name of ["start", "dev", "simulator"]) {
      expect(scripts[name], name).toMatch(/^exec /);
    }
  });

  it("stop the server when npm is stopped with SIGTERM", async () => {
    const port = await freePort();
    const npm = spawn("npm", ["run", "--silent", "simulator", "--", "--port", String(port)], {
      cwd: new URL("..", import.meta.url),
      stdio: ["ignore", "pipe", "pipe"],
      // A process group of its own: the clean-up below reaches an orphan too.
      detached: true,
    });
    let output = "";
    npm.stdout?.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    try {
      await waitFor(() => output.includes("listening on"), "the simulator to listen", 20_000);
      expect(await accepts(port)).toBe(true);
      npm.kill("SIGTERM");
      await waitFor(async () => !(await accepts(port)), "the port to close", 10_000);
    } finally {
      try {
        process.kill(-(npm.pid as number), "SIGKILL");
      } catch {
        // Already gone.
      }
    }
  });
});

describe("npm run cli", () => {
  it("runs the built CLI where tsx is not installed (the image's pruned install), arguments and exit code passed on", async () => {
    // The service's hints say `npm run cli -- …`; in the image (no dev dependencies) that
    // ran tsx, which is not there: "sh: 1: tsx: not found".
    const dir = await mkdtemp(join(tmpdir(), "kcr-cli-pruned-"));
    try {
      await copyFile(new URL("../package.json", import.meta.url), join(dir, "package.json"));
      await mkdir(join(dir, "dist"));
      await writeFile(
        join(dir, "dist", "cli.js"),
        "console.log('built cli:', process.argv.slice(2).join(' ')); process.exitCode = 3;\n",
      );
      const npm = spawn("npm", ["run", "--silent", "cli", "--", "jobs", "--limit", "1"], {
        cwd: dir,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let output = "";
      npm.stdout?.on("data", (chunk: Buffer) => {
        output += chunk.toString();
      });
      const [code] = await once(npm, "exit");
      expect(output).toBe("built cli: jobs --limit 1\n");
      expect(code).toBe(3);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FileSink } from "../../src/sinks/file.js";
import type { Bundle } from "../../src/sinks/sink.js";

/**
 * What reaches the disk, and in which order: a power loss cannot be staged in a test, so
 * the system calls that make a bundle survive one are recorded instead (the real ones run).
 */
const recorded = vi.hoisted(() => ({ events: [] as string[] }));

vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs")>();
  return {
    ...fs,
    writeFile: (
      path: string,
      data: string | Buffer,
      options: Record<string, unknown>,
      callback: (error: Error | null) => void,
    ) => {
      const { flush, flag } = options;
      recorded.events.push(
        `write ${temporaryOf(basename(path))} ${JSON.stringify({ flush, flag })}`,
      );
      fs.writeFile(path, data, options, callback);
    },
  };
});

vi.mock("node:fs/promises", async (importOriginal) => {
  const fsp = await importOriginal<typeof import("node:fs/promises")>();
  return {
    ...fsp,
    rename: async (from: string, to: string) => {
      await fsp.rename(from, to);
      recorded.events.push(`rename ${basename(to)}`);
    },
    open: async (path: string, flags?: string) => {
      const handle = await fsp.open(path, flags);
      const sync = handle.sync.bind(handle);
      handle.sync = async () => {
        await sync();
        recorded.events.push(`synced ${basename(path)}/`);
      };
      return handle;
    },
  };
});

/** `.kc-1.json.0123456789ab.tmp` → `.kc-1.json.*.tmp`: the random part varies. */
function temporaryOf(name: string): string {
  return name.replace(/\.[0-9a-f]{12}\.tmp$/, ".*.tmp");
}

const bundle = {
  callback: { processToken: "pt-1", kreditCheckId: "kc-1", status: "SUCCESSFUL" },
  kreditCheck: { status: "SUCCESSFUL" },
  dacReports: {},
  problems: [],
  receivedAt: "2026-01-01T00:00:00.000Z",
  completedAt: "2026-01-01T00:00:01.000Z",
  documents: [{ name: "account_pdf", contentType: "application/pdf", data: Buffer.from("%PDF-1") }],
} as Bundle;

describe("FileSink, on the way to the disk", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kcr-file-sink-durable-"));
    recorded.events.length = 0;
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it("flushes each file before its rename, and the folder after the renames, before it reports the bundle delivered", async () => {
    const folder = `${basename(dir)}/`;
    await new FileSink(dir).deliver(bundle);
    recorded.events.push("delivered");
    const flushedNew = JSON.stringify({ flush: true, flag: "wx" });
    // The document's rename is flushed before the JSON appears: a JSON found after a power
    // loss always has its documents. The JSON's rename is flushed before the job is done.
    expect(recorded.events).toEqual([
      `write .kc-1.account.pdf.*.tmp ${flushedNew}`,
      "rename kc-1.account.pdf",
      `synced ${folder}`,
      `write .kc-1.json.*.tmp ${flushedNew}`,
      "rename kc-1.json",
      `synced ${folder}`,
      "delivered",
    ]);
  });
});

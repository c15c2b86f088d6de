import { lstat, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FileSink } from "../../src/sinks/file.js";
import type { Bundle } from "../../src/sinks/sink.js";

// The temporary file's name ends in the last 12 hex digits of a random UUID: fixed here,
// so that a test can put something at that name before the sink writes.
vi.mock("node:crypto", async (importOriginal) => ({
  ...(await importOriginal<typeof import("node:crypto")>()),
  randomUUID: () => "00000000-0000-4000-8000-0000000000aa",
}));

const TEMPORARY = ".kc-planted.json.0000000000aa.tmp";

const bundle: Bundle = {
  callback: { processToken: "pt-1", kreditCheckId: "kc-planted", status: "SUCCESSFUL" },
  kreditCheck: { status: "SUCCESSFUL", overallVerdict: "GREEN" },
  dacReports: {},
  problems: [],
  receivedAt: "2026-01-01T00:00:00.000Z",
  completedAt: "2026-01-01T00:00:01.000Z",
};

describe("FileSink's temporary files", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kcr-file-sink-tmp-"));
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it("never follows a symbolic link planted at a temporary file's name, and the next attempt writes the bundle", async () => {
    const results = join(dir, "results");
    const outside = join(dir, "outside.txt");
    await writeFile(outside, "not the sink's to write\n");
    const sink = await FileSink.open(results);
    await symlink(outside, join(results, TEMPORARY));

    await expect(sink.deliver(bundle)).rejects.toMatchObject({
      code: "file_sink_write_failed",
      retryable: true,
      message: expect.stringContaining(`${TEMPORARY} existed before the file sink wrote it`),
      fix: expect.stringContaining("only the service should write in FILE_SINK_DIR"),
    });
    // The file the link pointed at is untouched, and no result became a link to it.
    expect(await readFile(outside, "utf8")).toBe("not the sink's to write\n");
    await expect(lstat(join(results, "kc-planted.json"))).rejects.toMatchObject({
      code: "ENOENT",
    });
    // The failed attempt removed the link: a retry (the same name, here) writes the bundle.
    await sink.deliver(bundle);
    const written = await lstat(join(results, "kc-planted.json"));
    expect(written.isFile()).toBe(true);
    expect(JSON.parse(await readFile(join(results, "kc-planted.json"), "utf8"))).toEqual(bundle);
  });
});

import { execFile } from "node:child_process";
import {
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FileSink, STALE_TEMPORARY_MS } from "../../src/sinks/file.js";
import type { Bundle } from "../../src/sinks/sink.js";

const run = promisify(execFile);

function bundleFor(kreditCheckId: string, verdict = "GREEN"): Bundle {
  return {
    callback: { processToken: "pt-1", kreditCheckId, status: "SUCCESSFUL" },
    kreditCheck: { status: "SUCCESSFUL", overallVerdict: verdict },
    dacReports: {},
    problems: [],
    receivedAt: "2026-01-01T00:00:00.000Z",
    completedAt: "2026-01-01T00:00:01.000Z",
  };
}

function bundleWithDocument(kreditCheckId: string): Bundle {
  return {
    callback: { processToken: "pt-1", kreditCheckId, status: "SUCCESSFUL" },
    kreditCheck: { status: "SUCCESSFUL" },
    dacReports: {},
    problems: [],
    receivedAt: "2026-01-01T00:00:00.000Z",
    completedAt: "2026-01-01T00:00:01.000Z",
    documents: [
      { name: "account_pdf", contentType: "application/pdf", data: Buffer.from("%PDF-1") },
    ],
  } as Bundle;
}

describe("FileSink", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kcr-file-sink-"));
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it("writes <kreditCheckId>.json, creating the folder", async () => {
    const target = join(dir, "nested", "results");
    await new FileSink(target).deliver(bundleFor("kc-1"));
    expect(JSON.parse(await readFile(join(target, "kc-1.json"), "utf8"))).toEqual(
      bundleFor("kc-1"),
    );
  });

  it("makes its folders 0750 and its files 0640: the names are check ids, the contents bank data", async () => {
    const target = join(dir, "data", "results");
    await (await FileSink.open(target)).deliver(bundleFor("kc-mode"));
    const mode = async (path: string) => (await stat(path)).mode & 0o777;
    expect(await mode(join(dir, "data"))).toBe(0o750 & ~process.umask());
    expect(await mode(target)).toBe(0o750 & ~process.umask());
    expect(await mode(join(target, "kc-mode.json"))).toBe(0o640 & ~process.umask());
  });

  it("makes the folder again when it was removed after the first bundle", async () => {
    const target = join(dir, "results");
    const sink = new FileSink(target);
    await sink.deliver(bundleFor("kc-5"));
    await rm(target, { recursive: true });
    await sink.deliver(bundleFor("kc-6"));
    expect(await readdir(target)).toEqual(["kc-6.json"]);
  });

  it("writes every bundle of a burst of concurrent deliveries (they share folder fsyncs)", async () => {
    const sink = new FileSink(dir);
    const ids = Array.from({ length: 40 }, (_, index) => `kc-burst-${index}`);
    await Promise.all(ids.map((id) => sink.deliver(bundleFor(id))));
    expect((await readdir(dir)).sort()).toEqual(ids.map((id) => `${id}.json`).sort());
  });

  it("leaves one correct file and no temporary files when the same check is written twice, even at once", async () => {
    const sink = new FileSink(dir);
    await Promise.all([
      sink.deliver(bundleFor("kc-2", "RED")),
      sink.deliver(bundleFor("kc-2", "RED")),
    ]);
    await sink.deliver(bundleFor("kc-2", "YELLOW"));
    expect(await readdir(dir)).toEqual(["kc-2.json"]);
    expect(
      JSON.parse(await readFile(join(dir, "kc-2.json"), "utf8")).kreditCheck.overallVerdict,
    ).toBe("YELLOW");
  });

  it("removes temporary files a killed process left behind, but not one still being written", async () => {
    const stale = join(dir, ".kc-old.json.0123456789ab.tmp");
    const fresh = join(dir, ".kc-new.json.ba9876543210.tmp");
    const foreign = join(dir, "notes.tmp");
    for (const path of [stale, fresh, foreign]) await writeFile(path, "partial");
    const longAgo = new Date(Date.now() - STALE_TEMPORARY_MS - 60_000);
    await utimes(stale, longAgo, longAgo);
    await utimes(foreign, longAgo, longAgo);
    await new FileSink(dir).deliver(bundleFor("kc-4"));
    expect((await readdir(dir)).sort()).toEqual([
      ".kc-new.json.ba9876543210.tmp",
      "kc-4.json",
      "notes.tmp",
    ]);
  });

  it("sweeps again while it runs: a temporary a crash left just before a quick restart goes once it is stale", async () => {
    const left = ".kc-crashed.json.0123456789ab.tmp";
    await writeFile(join(dir, left), "partial bank data");
    const sink = new FileSink(dir);
    await sink.deliver(bundleFor("kc-a"));
    // Seconds old at the first delivery after the restart: maybe another replica's write.
    expect(await readdir(dir)).toContain(left);
    vi.useFakeTimers({ toFake: ["Date"], now: Date.now() + STALE_TEMPORARY_MS + 60_000 });
    try {
      await sink.deliver(bundleFor("kc-b"));
    } finally {
      vi.useRealTimers();
    }
    expect((await readdir(dir)).sort()).toEqual(["kc-a.json", "kc-b.json"]);
  });

  it("says to remove a folder that sits where a result file goes", async () => {
    await mkdir(join(dir, "kc-d.json"));
    await expect(new FileSink(dir).deliver(bundleFor("kc-d"))).rejects.toMatchObject({
      code: "file_sink_write_failed",
      retryable: true,
      fix: expect.stringContaining("a folder sits where a result file goes: remove it"),
    });
  });

  it("refuses a kreditCheckId that would leave the folder", async () => {
    await expect(
      new FileSink(join(dir, "inner")).deliver(bundleFor("../escape")),
    ).rejects.toMatchObject({
      code: "unsafe_file_name",
      retryable: false,
    });
    expect(await readdir(dir)).toEqual([]);
  });

  it("reports an unwritable folder as a retryable failure that says what to check", async () => {
    const blocker = join(dir, "a-file");
    await writeFile(blocker, "not a folder");
    // FILE_SINK_DIR points below a regular file: it can never be created.
    const error = await new FileSink(join(blocker, "x"))
      .deliver(bundleFor("kc-3"))
      .catch((thrown: unknown) => thrown);
    expect(error).toMatchObject({ code: "file_sink_write_failed", retryable: true });
    expect(String((error as Error & { fix: string }).fix)).toContain("FILE_SINK_DIR");
  });
  it("fails the delivery, never reports success, when the folder goes between documents and JSON", async () => {
    const target = join(dir, "results");
    const sink = new FileSink(target);
    // biome-ignore lint/suspicious/noExplicitAny: reaching a private method on purpose
    const internals = sink as any;
    const original = internals.syncFolder.bind(sink);
    let calls = 0;
    internals.syncFolder = async () => {
      await original();
      calls += 1;
      // A clean-up job removes the folder right after the documents were made durable.
      if (calls === 1) await rm(target, { recursive: true });
    };
    const outcome = await sink.deliver(bundleWithDocument("kc-1")).then(
      () => "resolved",
      () => "rejected",
    );
    expect(outcome).toBe("rejected");
    // The retry writes every file again.
    await sink.deliver(bundleWithDocument("kc-1"));
    expect((await readdir(target)).sort()).toEqual(["kc-1.account.pdf", "kc-1.json"]);
  });

  it("removes a document an earlier delivery of the check wrote that the new bundle no longer has", async () => {
    const sink = new FileSink(dir);
    await sink.deliver(bundleWithDocument("kc-1"));
    await sink.deliver(bundleWithDocument("kc-2"));
    // Delivered again (a replay) while finAPI has no PDF for it now: a 404 in problems.
    await sink.deliver({ ...bundleWithDocument("kc-1"), documents: [] });
    expect((await readdir(dir)).sort()).toEqual(["kc-1.json", "kc-2.account.pdf", "kc-2.json"]);
    expect(JSON.parse(await readFile(join(dir, "kc-1.json"), "utf8")).documents).toEqual([]);
  });

  it("answers each caller of a shared folder fsync only after one that started after its call, and passes failures on", async () => {
    for (let round = 0; round < 30; round += 1) {
      const sink = new FileSink(dir);
      // biome-ignore lint/suspicious/noExplicitAny: reaching a private method on purpose
      const internals = sink as any;
      let clock = 0;
      /** A logical clock: each event gets the next number. */
      const tick = () => {
        clock += 1;
        return clock;
      };
      const syncs: { start: number; end?: number; failed: boolean }[] = [];
      internals.syncFolderNow = async () => {
        const record = {
          start: tick(),
          end: undefined as number | undefined,
          failed: Math.random() < 0.3,
        };
        syncs.push(record);
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 3));
        record.end = tick();
        if (record.failed) throw new Error(`fsync ${record.start} failed`);
      };
      const callers = Array.from({ length: 40 }, async () => {
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 20));
        const calledAt = tick();
        const result = await internals.syncFolder().then(
          () => ({ ok: true as const }),
          (error: Error) => ({ ok: false as const, error }),
        );
        const doneAt = clock;
        // A success needs an fsync that started after the call; a failure, one that failed
        // while the caller waited (an fsync that began before its rename counts).
        const ended = syncs.filter((s) => s.end !== undefined && s.end <= doneAt);
        if (result.ok) expect(ended.some((s) => s.start > calledAt && !s.failed)).toBe(true);
        else expect(ended.some((s) => s.failed && (s.end ?? 0) > calledAt)).toBe(true);
      });
      await Promise.all(callers);
    }
  });
});

/**
 * A real full disk and a real read-only mount: a small tmpfs, which needs root (mount).
 * Elsewhere these skip, saying so; CI runs as root.
 */
async function mountTmpfs(dir: string, options: string): Promise<boolean> {
  try {
    await run("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir]);
    return true;
  } catch {
    return false;
  }
}

/**
 * A sink on `results` delivers; once the last of `mounts` (the results volume) is
 * unmounted, a delivery fails, retryably, and `left` (where the path leads now) holds
 * nothing of it.
 */
async function expectRefusedOnceUnmounted(results: string, mounts: string[], left: string) {
  const sink = await FileSink.open(results);
  await sink.deliver(bundleFor("kc-mounted"));
  await run("umount", [String(mounts.at(-1))]);
  mounts.pop();
  const error = await sink.deliver(bundleFor("kc-gone")).catch((e: unknown) => e);
  expect(error).toMatchObject({ code: "file_sink_write_failed", retryable: true });
  expect(await readdir(left)).toEqual([]);
}

describe("FileSink on a small tmpfs", () => {
  let dir: string;
  let mounted = false;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "kcr-file-mount-"));
  });
  afterEach(async () => {
    if (mounted) await run("umount", [dir]);
    mounted = false;
    await rm(dir, { recursive: true, force: true });
  });

  describe("at start-up, on a folder that cannot take a file", () => {
    it("stops start-up on a full disk, saying it is full (a permission check passed it)", async (ctx) => {
      mounted = await mountTmpfs(dir, "size=64k");
      if (!mounted) return ctx.skip("mounting a tmpfs needs root");
      // Fill it to the last block.
      await writeFile(join(dir, "filler"), Buffer.alloc(64 * 1024)).catch(() => undefined);
      await expect(FileSink.open(dir)).rejects.toThrow(
        /FILE_SINK_DIR=.*cannot write .*ENOSPC.*the disk \(or the user's quota\) is full/,
      );
      expect((await readdir(dir)).filter((name) => name.endsWith(".tmp"))).toEqual([]);
    });

    it("stops start-up on a read-only mount, saying so instead of asking for write access", async (ctx) => {
      mounted = await mountTmpfs(dir, "size=64k,ro");
      if (!mounted) return ctx.skip("mounting a tmpfs needs root");
      await expect(FileSink.open(dir)).rejects.toThrow(/EROFS.*mounted read-only/);
    });
  });

  describe("on a folder that fails while the service runs", () => {
    it("says the disk is full when it fills up after start-up, and leaves no half-written file", async (ctx) => {
      mounted = await mountTmpfs(dir, "size=64k");
      if (!mounted) return ctx.skip("mounting a tmpfs needs root");
      const sink = await FileSink.open(dir);
      await writeFile(join(dir, "filler"), Buffer.alloc(64 * 1024)).catch(() => undefined);
      const error = await sink.deliver(bundleFor("kc-full")).catch((thrown: unknown) => thrown);
      expect(error).toMatchObject({ code: "file_sink_write_failed", retryable: true });
      expect((error as Error).message).toMatch(/ENOSPC/);
      expect((error as Error & { fix: string }).fix).toMatch(
        /disk \(or the user's quota\) is full/,
      );
      expect((await readdir(dir)).sort()).toEqual(["filler"]);
    });

    it("refuses to write to the disk under the results volume once it is unmounted, and leaves no bundle there", async (ctx) => {
      mounted = await mountTmpfs(dir, "size=1m");
      if (!mounted) return ctx.skip("mounting a tmpfs needs root");
      const results = join(dir, "results");
      const sink = await FileSink.open(results);
      await sink.deliver(bundleFor("kc-mounted"));
      await run("umount", [dir]);
      mounted = false;
      // The path now leads to the disk the mount point is on, where the folder is gone.
      const error = await sink.deliver(bundleWithDocument("kc-gone")).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: "file_sink_write_failed", retryable: true });
      expect((error as Error).message).toMatch(
        /results now leads to the file system under the mount point of its volume .*the volume is gone \(unmounted\?\)/,
      );
      expect((error as Error & { fix: string }).fix).toMatch(/^mount the results volume again/);
      expect(await readdir(results)).toEqual([]);
    });

    it("sees the volume gone also when FILE_SINK_DIR is a symbolic link to it", async (ctx) => {
      // The volume is mounted on a folder of another disk (a tmpfs here), the link to it
      // lies on this one: once unmounted, the path leads to that other disk.
      const outer = join(dir, "outer");
      await mkdir(outer);
      if (!(await mountTmpfs(outer, "size=64k"))) return ctx.skip("mounting a tmpfs needs root");
      const mounts = [outer];
      try {
        const volume = join(outer, "volume");
        await mkdir(volume);
        await mountTmpfs(volume, "size=1m");
        mounts.push(volume);
        const results = join(dir, "results");
        await symlink(volume, results);
        await expectRefusedOnceUnmounted(results, mounts, volume);
      } finally {
        for (const mount of mounts.reverse()) await run("umount", [mount]);
      }
    });

    it("sees the volume gone when it was mounted over another mount, which is left", async (ctx) => {
      const data = join(dir, "data");
      await mkdir(data);
      if (!(await mountTmpfs(data, "size=64k"))) return ctx.skip("mounting a tmpfs needs root");
      const mounts = [data];
      try {
        // The results volume over it: the lower mount cannot be seen from the path now.
        await mountTmpfs(data, "size=1m");
        mounts.push(data);
        const results = join(data, "results");
        await expectRefusedOnceUnmounted(results, mounts, results);
      } finally {
        for (const mount of mounts.reverse()) await run("umount", [mount]);
      }
    });

    it("goes on writing to a volume mounted again under a new device number (an automount, an NFS submount)", async (ctx) => {
      mounted = await mountTmpfs(dir, "size=1m");
      if (!mounted) return ctx.skip("mounting a tmpfs needs root");
      const results = join(dir, "results");
      const sink = await FileSink.open(results);
      await sink.deliver(bundleFor("kc-before"));
      const before = (await stat(results)).dev;
      await run("umount", [dir]);
      // Another mount takes the freed device number first, so the volume gets a new one.
      const occupier = await mkdtemp(join(tmpdir(), "kcr-file-occupier-"));
      await mountTmpfs(occupier, "size=64k");
      try {
        mounted = await mountTmpfs(dir, "size=1m");
        expect((await stat(dir)).dev).not.toBe(before);
        await sink.deliver(bundleFor("kc-after"));
        expect(await readdir(results)).toEqual(["kc-after.json"]);
      } finally {
        await run("umount", [occupier]);
        await rm(occupier, { recursive: true, force: true });
      }
    });

    it("says the mount turned read-only when it is remounted so after start-up", async (ctx) => {
      mounted = await mountTmpfs(dir, "size=64k");
      if (!mounted) return ctx.skip("mounting a tmpfs needs root");
      const sink = await FileSink.open(dir);
      await run("mount", ["-o", "remount,ro", dir]);
      const error = await sink.deliver(bundleFor("kc-ro")).catch((thrown: unknown) => thrown);
      expect(error).toMatchObject({ code: "file_sink_write_failed", retryable: true });
      expect((error as Error & { fix: string }).fix).toMatch(/mounted read-only/);
      expect(await readdir(dir)).toEqual([]);
    });
  });
});

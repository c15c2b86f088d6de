import { randomUUID } from "node:crypto";
import { writeFile } from "node:fs";
import { open, readdir, readFile, realpath, rename, rm, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { SAFE_ID_PATTERN } from "../callback.js";
import { ReceiverError } from "../errors.js";
import { makeFolders } from "../make-folders.js";
import type { Bundle, BundleDocument, Sink } from "./sink.js";

/** File names of documents beside `<kreditCheckId>.json`. */
const DOCUMENT_SUFFIXES: Record<string, string> = {
  account_pdf: "account.pdf",
  dac_zip: "dac.zip",
};

/** Our temporary files: `.<file>.<12 hex>.tmp`. */
const TEMPORARY_FILE = /^\..+\.[0-9a-f]{12}\.tmp$/;

/**
 * A temporary file this old was left by a process killed mid-write. Younger ones may be
 * another process's write in progress (several replicas can share the folder).
 */
export const STALE_TEMPORARY_MS = 10 * 60 * 1000;

/**
 * Writes `<dir>/<kreditCheckId>.json`, and each document beside it
 * (`<kreditCheckId>.account.pdf`, `<kreditCheckId>.dac.zip`). Atomic: every file goes to a
 * temporary file that is flushed to disk and then renamed over the target, so a reader
 * sees the old file or the new one, never half of one, and writing the same check twice
 * leaves one set of files. The JSON comes last: once it is there, its documents are too.
 */
export class FileSink implements Sink {
  readonly name = "file";
  private readonly dir: string;
  /** Date.now() from which the next delivery sweeps stale temporaries (see sweepStaleTemporaries). */
  private nextSweepAt = 0;
  /** The folder exists (made once, made again if it disappears). */
  private folderReady: Promise<void> | undefined;
  /** The folder fsync in progress, and the one queued behind it (see syncFolder). */
  private folderSync: Promise<void> | undefined;
  private nextFolderSync: Promise<void> | undefined;
  /**
   * The folder's file system (st_dev) at start-up, and those of the folders above it
   * (other than its own): what the path leads to once its volume is gone; see
   * syncFolderNow.
   */
  private volume: { device: number; above: ReadonlySet<number> } | undefined;

  constructor(dir: string) {
    this.dir = resolve(dir);
  }

  /**
   * The sink for FILE_SINK_DIR, once its folder exists (made if needed) and a file can be
   * written there: a folder that can never work stops start-up with its name, instead of
   * every job failing later while readiness says ready. A probe file is written, synced
   * and removed: a permission check alone passed a full disk and a read-only mount.
   */
  static async open(dir: string): Promise<FileSink> {
    const sink = new FileSink(dir);
    // Named like the sink's own temporaries: one a crash left here is swept with them.
    const probe = join(sink.dir, `.startup-probe.${randomUUID().slice(-12)}.tmp`);
    try {
      await sink.ensureFolder();
      await writeFlushed(probe, "probe\n", { mode: 0o600, flush: true, flag: "wx" });
      await rm(probe, { force: true });
      await sink.rememberVolume((await stat(sink.dir)).dev);
    } catch (error) {
      // A full disk may take the file but not its bytes.
      await rm(probe, { force: true }).catch(() => undefined);
      const cause = (error as { cause?: NodeJS.ErrnoException }).cause ?? error;
      const { code, message } = cause as NodeJS.ErrnoException;
      throw new Error(
        `FILE_SINK_DIR=${dir}: the file sink cannot write to ${sink.dir} (${message}); ${writeFix(code)}`,
        { cause: error },
      );
    }
    return sink;
  }

  /**
   * Removes temporary files that a killed process left behind: at the first delivery, and
   * again every STALE_TEMPORARY_MS. Once per process was not enough: a crash and a quick
   * restart leave a file younger than the cutoff at the first delivery, and it stayed,
   * bank data and all, until the next restart.
   */
  private async sweepStaleTemporaries(): Promise<void> {
    this.nextSweepAt = Date.now() + STALE_TEMPORARY_MS;
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const cutoff = Date.now() - STALE_TEMPORARY_MS;
    for (const name of names.filter((candidate) => TEMPORARY_FILE.test(candidate))) {
      const path = join(this.dir, name);
      const info = await stat(path).catch(() => undefined);
      if (info && info.mtimeMs < cutoff) await rm(path, { force: true }).catch(() => undefined);
    }
  }

  async deliver(bundle: Bundle): Promise<void> {
    const kreditCheckId = bundle.callback.kreditCheckId;
    // Checked at the door already; checked again because this one becomes a file name.
    if (!SAFE_ID_PATTERN.test(kreditCheckId)) {
      throw new ReceiverError(
        `kreditCheckId ${JSON.stringify(kreditCheckId)} is not a safe file name`,
        {
          code: "unsafe_file_name",
          retryable: false,
        },
      );
    }
    await this.ensureFolder();
    if (Date.now() >= this.nextSweepAt) await this.sweepStaleTemporaries();
    const { documents, ...json } = bundle;
    const files = (documents ?? []).map((document) => ({
      document,
      file: `${kreditCheckId}.${DOCUMENT_SUFFIXES[document.name] ?? document.name}`,
    }));
    try {
      await this.writeAll(kreditCheckId, json, documents, files);
    } catch (error) {
      if (error instanceof FolderMovedError) {
        // They went to a file system that is not the results' own (the folder made again
        // on the disk under an unmounted volume): not left there, bank data and all.
        await Promise.all(
          [...files.map(({ file }) => file), `${kreditCheckId}.json`].map((file) =>
            rm(join(this.dir, file), { force: true }).catch(() => undefined),
          ),
        );
      }
      throw error;
    }
    // After the JSON, which no longer lists them: a document an earlier delivery of this
    // check wrote (finAPI has none now, FETCH_DOCUMENTS changed) would sit beside the new
    // JSON as if it were its own. Only with documents on: without, no such file is written.
    if (documents) {
      const current = new Set(files.map(({ file }) => file));
      const stale = Object.values(DOCUMENT_SUFFIXES)
        .map((suffix) => `${kreditCheckId}.${suffix}`)
        .filter((file) => !current.has(file));
      // Best effort: the JSON, written and flushed, is what says which documents belong.
      await Promise.all(
        stale.map((file) => rm(join(this.dir, file), { force: true }).catch(() => undefined)),
      );
    }
  }

  /** The documents, a folder fsync, the JSON, another folder fsync. */
  private async writeAll(
    kreditCheckId: string,
    json: Omit<Bundle, "documents">,
    documents: Bundle["documents"],
    files: { document: BundleDocument; file: string }[],
  ): Promise<void> {
    // Only the first file may find the folder gone and make it again: a later one would
    // leave a JSON whose documents went with the old folder.
    for (const [index, { document, file }] of files.entries()) {
      await this.writeAtomically(file, document.data, index === 0);
    }
    if (files.length > 0) await this.syncFolder();
    const listed = documents
      ? {
          ...json,
          documents: files.map(({ document, file }) => ({
            name: document.name,
            contentType: document.contentType,
            file,
            bytes: document.data.length,
          })),
        }
      : json;
    await this.writeAtomically(
      `${kreditCheckId}.json`,
      `${JSON.stringify(listed, null, 2)}\n`,
      files.length === 0,
    );
    await this.syncFolder();
  }

  private ensureFolder(): Promise<void> {
    this.folderReady ??= this.makeFolder().catch((error: unknown) => {
      this.folderReady = undefined;
      throw this.writeFailed(this.dir, error);
    });
    return this.folderReady;
  }

  /** mkdir -p, then an fsync of each new folder's parent, so power loss cannot undo it. */
  private async makeFolder(): Promise<void> {
    // 0750 like the inbox's folder: its file names are the checks' ids (the files are 0640).
    const firstCreated = makeFolders(this.dir, 0o750);
    if (firstCreated === undefined) return;
    for (let folder = this.dir; ; folder = dirname(folder)) {
      await syncDirectory(dirname(folder));
      if (folder === firstCreated || dirname(folder) === folder) return;
    }
  }

  /**
   * Renames live in the folder: flush it too, or a power loss can undo them after the job
   * was marked done. Once after the documents and once after the JSON, so the JSON never
   * survives without its documents.
   *
   * Concurrent deliveries share folder fsyncs: a caller that finds one in progress (which
   * may have started before its rename) waits for the next one, which every caller
   * arriving meanwhile joins. Under load that is one fsync for many bundles.
   */
  private syncFolder(): Promise<void> {
    if (!this.folderSync) {
      this.folderSync = this.syncFolderNow().finally(() => {
        this.folderSync = undefined;
      });
      return this.folderSync;
    }
    // If the running fsync fails, its joiners fail too: their renames may be in what it
    // could not write, and a later fsync on a new descriptor would not report that.
    this.nextFolderSync ??= this.folderSync.then(
      () => {
        this.nextFolderSync = undefined;
        return this.syncFolder();
      },
      (error: unknown) => {
        this.nextFolderSync = undefined;
        throw error;
      },
    );
    return this.nextFolderSync;
  }

  /**
   * Also checks that the folder is still on the volume it was on at start-up. When a
   * volume mounted there (or above it) goes away, the path leads to the disk underneath,
   * where the folder is made again or was the bare mount point: bundles would land there,
   * reported delivered. This fstat costs one system call per folder fsync, which
   * concurrent deliveries share.
   */
  private async syncFolderNow(): Promise<void> {
    let device: number;
    try {
      device = await syncDirectory(this.dir);
      if (!this.volume) return await this.rememberVolume(device);
    } catch (error) {
      throw this.writeFailed(this.dir, error);
    }
    if (device === this.volume.device) return;
    if (!this.volume.above.has(device)) {
      // Some volumes get a new device number when they are mounted again while the service
      // runs (an NFS submount, an automount that expired when idle): still none of the
      // disks above it, so still the results' volume.
      this.volume = { ...this.volume, device };
      return;
    }
    throw new FolderMovedError(this.dir, device, this.volume.device);
  }

  /**
   * The folder's device, and the devices of the folders above it, other than its own:
   * once its volume is gone, the path leads to one of those (the disk under the mount
   * point, or under an outer mount gone too). Walked from the real path: a FILE_SINK_DIR
   * that is a symbolic link leads to a volume elsewhere.
   */
  private async rememberVolume(device: number): Promise<void> {
    const real = await realpath(this.dir);
    const above = new Set<number>(await devicesMountedAlong(real));
    for (let child = real; dirname(child) !== child; child = dirname(child)) {
      above.add((await stat(dirname(child))).dev);
    }
    above.delete(device);
    this.volume = { device, above };
  }

  /**
   * Something was at a random temporary name: not the sink's own doing (its names are new
   * each time). Removed by now; the next attempt draws another name.
   */
  private nameTaken(temporary: string, error: unknown): ReceiverError {
    return new ReceiverError(
      `${temporary} existed before the file sink wrote it (removed now; the next attempt uses another name)`,
      {
        code: "file_sink_write_failed",
        retryable: true,
        fix: "only the service should write in FILE_SINK_DIR: find what put a file or link there.",
        cause: error,
      },
    );
  }

  private writeFailed(target: string, error: unknown): ReceiverError {
    return new ReceiverError(`could not write ${target}: ${(error as Error).message}`, {
      code: "file_sink_write_failed",
      retryable: true,
      fix: `${writeFix((error as NodeJS.ErrnoException).code)}.`,
      cause: error,
    });
  }

  /**
   * Writes, fsyncs and closes a new file. fs.writeFile with `flush` (callbacks inside, one
   * promise outside) rather than a FileHandle: the same four system calls for about a third
   * less of the event loop's time per file (0.10-0.13 against 0.16-0.19 ms, measured at 64
   * concurrent writes of 14 KB), and every bundle writes at least one.
   */
  private async writeTemporary(
    path: string,
    content: string | Buffer,
    mayMakeFolder: boolean,
  ): Promise<void> {
    try {
      await writeFlushed(path, content, NEW_FILE);
    } catch (error) {
      // Only opening the file can say ENOENT.
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      // The folder was removed after it was made (by hand, by a clean-up job).
      this.folderReady = undefined;
      if (!mayMakeFolder) {
        throw new ReceiverError(
          `${this.dir} disappeared while this bundle was written; the next attempt writes all its files again`,
          { code: "file_sink_write_failed", retryable: true, cause: error },
        );
      }
      await this.ensureFolder();
      await writeFlushed(path, content, NEW_FILE);
    }
  }

  private async writeAtomically(
    file: string,
    content: string | Buffer,
    mayMakeFolder: boolean,
  ): Promise<void> {
    const target = join(this.dir, file);
    // The last 12 hex digits of a v4 UUID are random; randomUUID draws from a cache (cheaper
    // than randomBytes per file). Random, not a counter: replicas may share the folder.
    const temporary = join(this.dir, `.${file}.${randomUUID().slice(-12)}.tmp`);
    try {
      await this.writeTemporary(temporary, content, mayMakeFolder);
      await rename(temporary, target);
    } catch (error) {
      await rm(temporary, { force: true }).catch(() => undefined);
      if ((error as NodeJS.ErrnoException).code === "EEXIST")
        throw this.nameTaken(temporary, error);
      throw error instanceof ReceiverError ? error : this.writeFailed(target, error);
    }
  }
}

const writeFlushed = promisify(writeFile);

/**
 * A temporary file is always a new file (`wx`: O_CREAT | O_EXCL): a name that exists,
 * even as a symbolic link someone with access to the folder planted there, fails the
 * write instead of being followed and overwritten (the link would then be renamed over
 * the result). The catch removes it; the job's next attempt draws another name.
 */
const NEW_FILE = { mode: 0o640, flush: true, flag: "wx" } as const;

/**
 * What to do about a write the folder refused, by the error's code: one text whether start-up's
 * probe or a delivery met it (a disk fills up, or is remounted read-only, while running).
 */
function writeFix(code: string | undefined): string {
  switch (code) {
    case "ENOSPC":
    case "EDQUOT":
      return "the disk (or the user's quota) is full: free space there or point FILE_SINK_DIR elsewhere";
    case "EROFS":
      return "the file system is mounted read-only: mount a writable volume there or point FILE_SINK_DIR elsewhere";
    case "EMFILE":
      return "the process has no file descriptor left (its open-file limit): raise the limit (ulimit -n, docker run --ulimit nofile=…, systemd LimitNOFILE=) or lower MAX_CONNECTIONS or WORKER_CONCURRENCY";
    case "EISDIR":
    case "ENOTEMPTY":
      return "a folder sits where a result file goes: remove it (the job is retried) or point FILE_SINK_DIR elsewhere";
    case "ENOTDIR":
      return "a part of the path is a file, not a folder: move that file away or point FILE_SINK_DIR elsewhere";
    case "ENFILE":
      return "the whole system's table of open files is full (ENFILE): find the process that holds so many, or raise fs.file-max (sysctl)";
    default:
      return "create the folder or point FILE_SINK_DIR elsewhere, and give the service's user write access";
  }
}

/**
 * The devices of every mount on `path` or a folder above it, those hidden under a later
 * mount too (Linux, /proc/self/mountinfo; none elsewhere): a volume mounted over another
 * leaves the lower one there when it goes, and no stat shows it before.
 */
async function devicesMountedAlong(path: string): Promise<number[]> {
  const table = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  const devices: number[] = [];
  for (const line of table.split("\n")) {
    // "<id> <parent> <major>:<minor> <root> <mount point> …", octal escapes in the point.
    const [, , majorMinor, , escaped] = line.split(" ");
    if (!majorMinor || !escaped) continue;
    const point = escaped.replace(/\\([0-7]{3})/g, (_, octal: string) =>
      String.fromCharCode(Number.parseInt(octal, 8)),
    );
    const along = point === "/" || path === point || path.startsWith(`${point}/`);
    const [major, minor] = majorMinor.split(":").map(Number);
    if (along && major !== undefined && minor !== undefined)
      devices.push(deviceNumber(major, minor));
  }
  return devices;
}

/** st_dev of a device as Node reports it (glibc's makedev). */
function deviceNumber(major: number, minor: number): number {
  const [high, low] = [BigInt(major), BigInt(minor)];
  return Number(
    ((high & 0xfffff000n) << 32n) |
      ((high & 0xfffn) << 8n) |
      ((low & 0xffffff00n) << 12n) |
      (low & 0xffn),
  );
}

/** fsyncs a folder; its file system's device number (st_dev). */
async function syncDirectory(path: string): Promise<number> {
  const folder = await open(path, "r");
  try {
    const { dev } = await folder.stat();
    await folder.sync();
    return dev;
  } finally {
    await folder.close();
  }
}

/** FILE_SINK_DIR leads to the disk under its volume's mount point (see syncFolderNow). */
class FolderMovedError extends ReceiverError {
  constructor(dir: string, device: number, startDevice: number) {
    super(
      `${dir} now leads to the file system under the mount point of its volume (device ${device}; the volume's was ${startDevice}): the volume is gone (unmounted?). This delivery's files were removed from there`,
      {
        code: "file_sink_write_failed",
        retryable: true,
        fix: "mount the results volume again (the job is retried), or point FILE_SINK_DIR elsewhere and restart the service.",
      },
    );
  }
}

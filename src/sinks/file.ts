import { randomBytes } from "node:crypto";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { SAFE_ID_PATTERN } from "../callback.js";
import { ReceiverError } from "../errors.js";
import type { Bundle, Sink } from "./sink.js";

/**
 * Writes `<dir>/<kreditCheckId>.json`. Atomic: the bundle goes to a temporary file that
 * is flushed to disk and then renamed over the target, so a reader sees the old file or
 * the new one, never half of one, and writing the same check twice leaves one file.
 */
export class FileSink implements Sink {
  readonly name = "file";
  private readonly dir: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
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
    const target = join(this.dir, `${kreditCheckId}.json`);
    const temporary = join(this.dir, `.${kreditCheckId}.${randomBytes(6).toString("hex")}.tmp`);
    try {
      await mkdir(this.dir, { recursive: true });
      const handle = await open(temporary, "w", 0o640);
      try {
        await handle.writeFile(`${JSON.stringify(bundle, null, 2)}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temporary, target);
      // The rename lives in the folder: flush it too, or a power loss can undo it after the
      // job was marked done.
      const folder = await open(this.dir, "r");
      try {
        await folder.sync();
      } finally {
        await folder.close();
      }
    } catch (error) {
      await rm(temporary, { force: true }).catch(() => undefined);
      throw new ReceiverError(`could not write ${target}: ${(error as Error).message}`, {
        code: "file_sink_write_failed",
        retryable: true,
        fix: "check that FILE_SINK_DIR exists, is writable by the service and has free space.",
        cause: error,
      });
    }
  }
}

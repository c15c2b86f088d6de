import { existsSync, mkdirSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";

/**
 * `mkdir -p` that fails where a folder cannot be made instead of spinning: Node's
 * recursive mkdir loops forever where mkdir answers ENOENT below a folder that exists
 * (/proc, /sys), so `FILE_SINK_DIR=/proc/x` hung start-up without a word. Makes each
 * missing folder with `mode`, top down, and returns the first one it made (undefined when
 * `dir` existed), as the recursive form does. Synchronous: a few system calls, at start-up
 * or when a folder has disappeared.
 */
export function makeFolders(dir: string, mode: number): string | undefined {
  const missing: string[] = [];
  for (let folder = resolve(dir); !existsSync(folder); folder = dirname(folder)) {
    missing.push(folder);
    if (dirname(folder) === folder) break;
  }
  if (missing.length === 0 && !statSync(dir).isDirectory()) {
    // access() would only say EACCES about a file where a folder should be.
    throw Object.assign(new Error(`${resolve(dir)} is a file, not a folder`), { code: "ENOTDIR" });
  }
  missing.reverse();
  for (const folder of missing) {
    try {
      mkdirSync(folder, { mode });
    } catch (error) {
      // Made meanwhile by another process (replicas share folders): fine.
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
  }
  return missing[0];
}

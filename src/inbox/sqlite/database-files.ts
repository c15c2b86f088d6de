import { statSync } from "node:fs";

interface Identity {
  path: string;
  dev: bigint;
  ino: bigint;
}

/**
 * The files of an open SQLite database in WAL mode, as the connection opened them. SQLite
 * does not notice when they are deleted or replaced under it (someone clears the data
 * folder, a restore copies a file over it): it goes on writing to the open, deleted file,
 * and every callback acknowledged meanwhile is gone at the next start.
 */
export class DatabaseFiles {
  private readonly opened: Identity[];

  constructor(path: string) {
    // The WAL exists once the connection has written (the migration does); SQLite removes
    // it only when the last connection closes, so while this one is open it stays the same.
    this.opened = [path, `${path}-wal`].flatMap((file) => {
      const stats = statSync(file, { bigint: true, throwIfNoEntry: false });
      return stats ? [{ path: file, dev: stats.dev, ino: stats.ino }] : [];
    });
  }

  /** What became of the files since they were opened; undefined while they are the same. */
  changed(): string | undefined {
    for (const file of this.opened) {
      const stats = statSync(file.path, { bigint: true, throwIfNoEntry: false });
      if (!stats) return `${file.path} was deleted`;
      if (stats.dev !== file.dev || stats.ino !== file.ino) return `${file.path} was replaced`;
    }
    return undefined;
  }
}

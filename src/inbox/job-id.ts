import { randomFillSync } from "node:crypto";

/** What every job id looks like (a UUID, any version, any case): anything else is no job. */
export const JOB_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Random bytes drawn 4 KiB at a time, as `randomUUID` does, 16 bytes per id. */
const pool = Buffer.alloc(16 * 256);
let offset = pool.length;

/**
 * A new job id: a UUID version 7 (RFC 9562), the millisecond time followed by 74 random
 * bits. Unique like a version 4, but ids created one after another sort together, so
 * inserting a job appends to the primary-key index instead of touching a random page.
 */
export function newJobId(now: number = Date.now()): string {
  if (offset >= pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const bytes = pool.subarray(offset, offset + 16);
  offset += 16;
  bytes.writeUIntBE(now, 0, 6);
  bytes[6] = ((bytes[6] as number) & 0x0f) | 0x70;
  bytes[8] = ((bytes[8] as number) & 0x3f) | 0x80;
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

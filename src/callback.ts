import { z } from "zod";

/**
 * Identifiers that finAPI sends and we put into URL paths and file names.
 * `[A-Za-z0-9._-]` keeps them safe for both; values made only of dots ("." and "..")
 * are refused because they would climb a path.
 */
export const SAFE_ID_PATTERN = /^(?!\.+$)[A-Za-z0-9._-]{1,128}$/;

/** "is required" when missing, "must be a string" when of another type. */
const requiredString = () =>
  z.string({ error: (issue) => (issue.input === undefined ? "is required" : "must be a string") });

const optionalString = () => z.string({ error: "must be a string or null" }).nullish();

export const safeId = requiredString().regex(
  SAFE_ID_PATTERN,
  "must be 1-128 characters of A-Z a-z 0-9 . _ - (and not only dots)",
);

/** The only status finAPI documents; anything else is kept and handled as not successful. */
export const SUCCESSFUL_STATUS = "SUCCESSFUL";

/**
 * Deepest nesting of arrays and objects a callback may have. finAPI's is flat; unknown
 * fields may add a little. Without a bound, 40 KB of `[[[…]]]` (20,000 levels) parses but
 * overflows the stack when it is serialised for the inbox.
 */
export const MAX_CALLBACK_DEPTH = 32;

/**
 * Whether `value` nests containers (arrays, objects) more than `max` deep, the outermost
 * counting as level 0. Iterative, so it cannot overflow itself; only containers are
 * queued, so a 64 KiB body of scalars costs a walk, not an allocation per value.
 */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  if (typeof value !== "object" || value === null) return false;
  const containers: object[] = [value];
  const depths: number[] = [0];
  for (let item = containers.pop(); item !== undefined; item = containers.pop()) {
    const depth = depths.pop() ?? 0;
    if (depth >= max) return true;
    const children = Array.isArray(item) ? item : Object.values(item);
    for (const child of children) {
      if (typeof child === "object" && child !== null) {
        containers.push(child);
        depths.push(depth + 1);
      }
    }
  }
  return false;
}

/**
 * A character PostgreSQL's jsonb and text cannot store: U+0000, or half of a UTF-16
 * surrogate pair without its other half (JSON can escape one, "\ud800"; it is no Unicode
 * character). A callback with one would be acknowledged and then never reach a postgres
 * sink, so it is refused at the door.
 */
export const UNSTORABLE =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is what it looks for
  /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Where a string in `value` (a key too) holds a character PostgreSQL cannot store, as a
 * path with that string; undefined if none does. Iterative, like nestsDeeperThan, and as
 * cheap on the way: paths are built only once one was found (a second walk), not for each
 * of a large body's values.
 */
export function unstorablePath(
  value: unknown,
): { path: (string | number)[]; text: string } | undefined {
  return holdsUnstorable(value) ? pathToUnstorable(value) : undefined;
}

function holdsUnstorable(value: unknown): boolean {
  const pending: unknown[] = [value];
  for (let item = pending.pop(); ; item = pending.pop()) {
    if (typeof item === "string") {
      if (UNSTORABLE.test(item)) return true;
    } else if (typeof item === "object" && item !== null) {
      if (Array.isArray(item)) {
        for (const child of item) if (typeof child !== "number") pending.push(child);
      } else {
        for (const key in item) {
          if (UNSTORABLE.test(key)) return true;
          pending.push((item as Record<string, unknown>)[key]);
        }
      }
    }
    if (pending.length === 0) return false;
  }
}

function pathToUnstorable(value: unknown): { path: (string | number)[]; text: string } | undefined {
  const pending: [unknown, (string | number)[]][] = [[value, []]];
  for (let entry = pending.pop(); entry !== undefined; entry = pending.pop()) {
    const [item, path] = entry;
    if (typeof item === "string") {
      if (UNSTORABLE.test(item)) return { path, text: item };
    } else if (Array.isArray(item)) {
      item.forEach((child, index) => {
        pending.push([child, [...path, index]]);
      });
    } else if (typeof item === "object" && item !== null) {
      for (const [key, child] of Object.entries(item)) {
        if (UNSTORABLE.test(key)) return { path: [...path, key], text: key };
        pending.push([child, [...path, key]]);
      }
    }
  }
  return undefined;
}

/**
 * finAPI's callback body. Unknown fields are kept (finAPI may add some);
 * `status` is any non-empty string because finAPI may add values.
 */
export const callbackSchema = z
  .looseObject({
    processToken: safeId,
    kreditCheckId: safeId,
    status: requiredString().min(1, "must be a non-empty string"),
    clientReference: optionalString(),
    errorMessage: optionalString(),
  })
  .superRefine((callback, ctx) => {
    if (nestsDeeperThan(callback, MAX_CALLBACK_DEPTH)) {
      ctx.addIssue({
        code: "custom",
        message: `nests arrays or objects deeper than ${MAX_CALLBACK_DEPTH} levels`,
      });
      return;
    }
    const found = unstorablePath(callback);
    // The ids' own pattern already refuses these, naming them.
    if (found && found.path[0] !== "processToken" && found.path[0] !== "kreditCheckId") {
      ctx.addIssue({
        code: "custom",
        path: found.path,
        message: found.text.includes("\u0000")
          ? "must not contain a NUL character (U+0000)"
          : "must not contain half of a UTF-16 surrogate pair (\\ud800-\\udfff) without its other half: it is no Unicode character",
      });
    }
  });

export type Callback = z.infer<typeof callbackSchema>;

export function isSuccessful(callback: Callback): boolean {
  return callback.status === SUCCESSFUL_STATUS;
}

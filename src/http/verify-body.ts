/**
 * What a callback body must be before it is parsed: UTF-8, and JSON that names each key
 * once per object. JSON.parse keeps the last of two equal keys, so `{"processToken":"a",
 * "processToken":"b"}` would be stored as "b" without a word. A sender that repeats a key
 * has a bug; we refuse the body instead of guessing which value it meant.
 */

/** An open object (its keys so far, the last one) or array (keys null; its element index). */
interface Container {
  keys: Set<string> | null;
  lastKey: string;
  index: number;
}

/**
 * Where a key first appears twice: `a.b` for a key in a nested object, `list[2].x` in an
 * array. One pass over the text, no recursion and no per-level strings (a 64 KiB body can
 * nest 30,000 levels); the path is built only for a duplicate.
 */
export function findDuplicateKey(text: string): string | undefined {
  const stack: Container[] = [];
  let expectKey = false;
  for (let at = 0; at < text.length; at++) {
    const char = text.charCodeAt(at);
    if (char === QUOTE) {
      const end = endOfString(text, at);
      if (end < 0) return undefined;
      const top = stack.at(-1);
      if (expectKey && top?.keys) {
        const key = decodeString(text.slice(at, end));
        if (key === undefined) return undefined;
        if (top.keys.has(key)) return pathOf(stack, key);
        top.keys.add(key);
        top.lastKey = key;
        expectKey = false;
      }
      at = end - 1;
    } else if (char === OPEN_BRACE || char === OPEN_BRACKET) {
      stack.push({ keys: char === OPEN_BRACE ? new Set() : null, lastKey: "", index: 0 });
      expectKey = char === OPEN_BRACE;
    } else if (char === CLOSE_BRACE || char === CLOSE_BRACKET) {
      stack.pop();
    } else if (char === COMMA) {
      const top = stack.at(-1);
      if (top) top.index += 1;
      expectKey = top?.keys != null;
    }
  }
  return undefined;
}

/** `key`'s path: each enclosing object's current key, each enclosing array's index. */
function pathOf(stack: readonly Container[], key: string): string {
  let path = "";
  for (const container of stack.slice(0, -1)) {
    path = container.keys ? join(path, container.lastKey) : `${path}[${container.index}]`;
  }
  return join(path, key);
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/** The index just past the string that opens at `start`, or -1 if it never closes. */
function endOfString(text: string, start: number): number {
  for (let at = start + 1; at < text.length; at++) {
    const char = text.charCodeAt(at);
    if (char === BACKSLASH) at++;
    else if (char === QUOTE) return at + 1;
  }
  return -1;
}

/** A JSON string literal's value; undefined for a broken one (the JSON parser reports it). */
function decodeString(literal: string): string | undefined {
  // Almost every key has no escape: its value is the text between the quotes. (A raw
  // control character would make that text invalid JSON; the parser refuses it next.)
  if (!literal.includes("\\")) return literal.slice(1, -1);
  try {
    return JSON.parse(literal) as string;
  } catch {
    return undefined;
  }
}

function join(path: string, key: string): string {
  return path === "" ? key : `${path}.${key}`;
}

/** Tells the error handler to answer 400 duplicate_key naming `field`. */
class DuplicateKeyError extends Error {
  readonly status = 400;
  readonly type = "entity.duplicate.key";
  constructor(readonly field: string) {
    super(`"${field}" appears more than once in one object`);
  }
}

/** Tells the error handler to answer 415 unsupported_charset naming `charset`. */
class UnsupportedCharsetError extends Error {
  readonly status = 415;
  readonly type = "charset.unsupported";
  constructor(readonly charset: string) {
    super(`unsupported charset "${charset}"`);
  }
}

/**
 * Tells the error handler to answer 400 invalid_utf8: bytes that are no UTF-8 were stored
 * as U+FFFD before, so a callback was acknowledged with text other than what was sent.
 */
class InvalidUtf8Error extends Error {
  readonly status = 400;
  readonly type = "entity.invalid.utf8";
  constructor() {
    super("the body is not valid UTF-8");
  }
}

/** Drops a BOM, as body-parser's decoder does; refuses bytes that are not UTF-8. */
const UTF8 = new TextDecoder("utf-8", { fatal: true });

/**
 * body-parser's `verify` hook, called with the raw body before it is parsed. A charset
 * other than UTF-8 is refused (RFC 8259 §8.1: JSON between systems is UTF-8; finAPI sends
 * it), so the text checked here is the text body-parser parses next: UTF-16 or UTF-32
 * decoded another way could hide a repeated key.
 */
export function verifyCallbackBody(
  _req: unknown,
  _res: unknown,
  body: Buffer,
  encoding: string | null,
): void {
  if (encoding !== null && encoding !== "utf-8") throw new UnsupportedCharsetError(encoding);
  checkedCallbackText(body);
}

/**
 * A UTF-8 body as text (BOM dropped), once it is known not to repeat a key: valid JSON
 * that repeats one throws DuplicateKeyError; broken JSON is left to the parser, which
 * reports it as such.
 */
export function checkedCallbackText(body: Buffer): string {
  let text: string;
  try {
    text = UTF8.decode(body);
  } catch {
    throw new InvalidUtf8Error();
  }
  const field = findDuplicateKey(text);
  if (field === undefined) return text;
  try {
    JSON.parse(text);
  } catch {
    return text;
  }
  throw new DuplicateKeyError(field);
}

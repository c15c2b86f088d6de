/**
 * What a callback body must be before it is parsed: UTF-8, JSON that names each key once
 * per object, and numbers a JavaScript number holds as sent. JSON.parse keeps the last of
 * two equal keys, so `{"processToken":"a","processToken":"b"}` would be stored as "b"
 * without a word. A sender that repeats a key has a bug; we refuse the body instead of
 * guessing which value it meant. Likewise it rounds 12345678901234567891 to
 * 12345678901234567000, reads 1e400 as Infinity (stored as null) and 1e-400 as 0: unknown
 * fields are kept, so such a number would be acknowledged and stored changed.
 */

/** An open object (its keys so far, the last one) or array (keys null; its element index). */
interface Container {
  keys: Set<string> | null;
  lastKey: string;
  index: number;
}

/** What the text scan finds first: a repeated key, or a number JavaScript cannot hold. */
export type TextProblem =
  | { kind: "duplicate_key"; field: string }
  | { kind: "number"; field: string; message: string };

/**
 * Where a key first appears twice (`a.b` for a key in a nested object, `list[2].x` in an
 * array), or a number first cannot be held as sent (named as zod names fields: `a.list.2`).
 * One pass over the text, no recursion and no per-level strings (a 64 KiB body can nest
 * 30,000 levels); a path is built only for a problem, a number looked at only when it is
 * long or has an exponent (see numberProblem). Broken JSON may give anything: the caller
 * believes a problem only of text that parses.
 */
export function findTextProblem(text: string): TextProblem | undefined {
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
        if (top.keys.has(key)) return { kind: "duplicate_key", field: pathOf(stack, key) };
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
    } else if (char === MINUS || (char >= DIGIT_0 && char <= DIGIT_9)) {
      // A number (outside a string, every digit or minus sign belongs to one): its end,
      // whether it is an integer as written (digits only), whether it has an exponent.
      let end = at + 1;
      let integer = true;
      let exponent = false;
      for (; end < text.length; end++) {
        const next = text.charCodeAt(end);
        if (next >= DIGIT_0 && next <= DIGIT_9) continue;
        if (next === LOWER_E || next === UPPER_E) exponent = true;
        else if (next !== DOT && next !== PLUS && next !== MINUS) break;
        integer = false;
      }
      const message =
        end - at <= SHORT_NUMBER && !exponent
          ? undefined
          : numberProblem(text.slice(at, end), integer);
      if (message !== undefined) return { kind: "number", field: fieldOf(stack), message };
      at = end - 1;
    }
  }
  return undefined;
}

/**
 * Numbers this short without an exponent are held as sent: an integer of at most 15 digits
 * is within ±(2^53 - 1), and a fraction cannot reach a double's range either way.
 */
const SHORT_NUMBER = 15;

/**
 * Why the number `token` would be stored other than sent, or undefined: too large for a
 * double (JSON.parse reads Infinity, stored as null), a non-zero one too small for it (read
 * as 0), an integer (as written: digits only) beyond ±(2^53 - 1), which is rounded; RFC
 * 8259 §6 names that range as the one JSON's integers keep between systems. A fraction or
 * an exponent is otherwise the nearest double, as JSON.parse reads any number.
 */
function numberProblem(token: string, integer: boolean): string | undefined {
  const value = Number(token);
  // Not a JSON number at all ("-", "1e"): the parser says so.
  if (Number.isNaN(value)) return undefined;
  if (!Number.isFinite(value)) {
    return "is a number too large for a JavaScript number (beyond ±1.8e308): it would be stored as null; send it as a string";
  }
  if (integer) {
    return Number.isSafeInteger(value)
      ? undefined
      : "is an integer beyond ±9007199254740991 (2^53 - 1), which a JavaScript number holds only rounded; send it as a string";
  }
  if (value === 0 && NON_ZERO_DIGIT.test(token.split(/[eE]/)[0] ?? "")) {
    return "is a non-zero number too small for a JavaScript number (nearer 0 than 5e-324): it would be stored as 0; send it as a string";
  }
  return undefined;
}

const NON_ZERO_DIGIT = /[1-9]/;

/** A value's path as zod names a field: each enclosing key or index, joined by dots. */
function fieldOf(stack: readonly Container[]): string {
  if (stack.length === 0) return "(body)";
  let path = "";
  for (const container of stack) {
    path = join(path, container.keys ? container.lastKey : String(container.index));
  }
  return path;
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
const MINUS = 0x2d;
const PLUS = 0x2b;
const DOT = 0x2e;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;
const LOWER_E = 0x65;
const UPPER_E = 0x45;

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

/**
 * Tells the error handler to answer 400 invalid_callback naming `field`: a number a
 * JavaScript number cannot hold as sent (see numberProblem).
 */
class UnrepresentableNumberError extends Error {
  readonly status = 400;
  readonly type = "entity.invalid.number";
  constructor(
    readonly field: string,
    readonly detail: string,
  ) {
    super(`"${field}" ${detail}`);
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
 * A UTF-8 body as text (BOM dropped), once it is known not to repeat a key nor to hold a
 * number JavaScript cannot hold: valid JSON that does throws DuplicateKeyError or
 * UnrepresentableNumberError (the first in the text); broken JSON is left to the parser,
 * which reports it as such.
 */
export function checkedCallbackText(body: Buffer): string {
  let text: string;
  try {
    text = UTF8.decode(body);
  } catch {
    throw new InvalidUtf8Error();
  }
  const problem = findTextProblem(text);
  if (problem === undefined) return text;
  try {
    JSON.parse(text);
  } catch {
    return text;
  }
  throw problem.kind === "duplicate_key"
    ? new DuplicateKeyError(problem.field)
    : new UnrepresentableNumberError(problem.field, problem.message);
}

import { UNSTORABLE, unstorablePath } from "../callback.js";
import type { Problem } from "./sink.js";

/**
 * What PostgreSQL's jsonb and text cannot hold (U+0000, half of a UTF-16 surrogate pair
 * without its other half), everywhere in a string. Callbacks holding one are refused at the
 * door, but finAPI's KreditCheck and DAC reports are not ours to refuse: a customer's bank
 * may serve an account holder's name with a NUL in it, and the file, http and stdout sinks
 * deliver it as it is.
 */
const UNSTORABLE_ALL = new RegExp(UNSTORABLE.source, "g");

/**
 * The same as JSON.stringify writes it: `\u0000`, and a lone surrogate as `\udxxx` (a
 * paired one is written as it is). A `\\u0000` (a backslash in the text) matches too; that
 * only costs the slow path, which then replaces nothing.
 */
const UNSTORABLE_ESCAPE = /\\u0000|\\ud[89a-f]/i;

export const REPLACEMENT_CHARACTER = "\ufffd";

/** `text` with each character PostgreSQL cannot store replaced by U+FFFD. */
export function storableText(text: string): string {
  return text.replace(UNSTORABLE_ALL, REPLACEMENT_CHARACTER);
}

/** `value` as JSON that jsonb accepts, and how many strings (keys too) had to change. */
export function storableJson(value: unknown): { json: string; replaced: number } {
  const json = JSON.stringify(value);
  // The usual case, a bundle without such characters, costs one scan of its JSON.
  if (!UNSTORABLE_ESCAPE.test(json)) return { json, replaced: 0 };
  let replaced = 0;
  const fix = (text: string): string => {
    const fixed = storableText(text);
    if (fixed !== text) replaced += 1;
    return fixed;
  };
  const fixed = JSON.stringify(value, (_key, item: unknown) => {
    if (typeof item === "string") return fix(item);
    // A replacer cannot rename keys: an object with such a key is copied with fixed keys
    // (its values then pass through here too).
    if (typeof item === "object" && item !== null && !Array.isArray(item)) {
      const keys = Object.keys(item);
      if (keys.some((key) => UNSTORABLE.test(key))) {
        // Two keys may become one ("a\u0000" and "a\ud800", or one beside "a\ufffd"): a
        // replaced one that meets another gets a number, so that no value is lost; keys that
        // needed nothing keep their names (jsonb keeps no key order anyway).
        const entries = Object.entries(item);
        const copy: Record<string, unknown> = Object.fromEntries(
          entries.filter(([key]) => !UNSTORABLE.test(key)),
        );
        for (const [key, child] of entries.filter(([key]) => UNSTORABLE.test(key))) {
          const fixedKey = fix(key);
          let name = fixedKey;
          for (let n = 2; Object.hasOwn(copy, name); n++) name = `${fixedKey} (${n})`;
          copy[name] = child;
        }
        return copy;
      }
    }
    return item;
  });
  return { json: fixed, replaced };
}

/**
 * The `problems` entry saying that the postgres sink stored the part `at` of the bundle
 * (`["kreditCheck"]`, `["dacReports", caseId]`, …), which is `value`, with `replaced`
 * strings changed: whoever reads the row then knows the text is not finAPI's, and where to
 * look in another sink's copy for the original.
 */
export function textReplacedProblem(
  at: (string | number)[],
  value: unknown,
  replaced: number,
  caseId?: string,
): Problem {
  const part = formatPath(at).replace(/^\./, "");
  const first = unstorablePath(value);
  const where = first ? `, one at ${part}${formatPath(first.path)}` : "";
  return {
    code: "text_replaced",
    ...(caseId === undefined ? {} : { caseId }),
    message: `the postgres sink stored ${replaced} ${replaced === 1 ? "string" : "strings"} of ${part} with U+FFFD in place of characters PostgreSQL cannot store (U+0000, or half of a UTF-16 surrogate pair without its other half)${where}; the other sinks deliver the text as finAPI served it.`,
    fix: "nothing, unless the exact text matters: then read it from another sink (file, http, stdout), and report the characters to finAPI with the check's ids if they should not be there.",
  };
}

/** `.accounts[0].name`, or `["a b"]` for a key that is no identifier (quoted as JSON). */
function formatPath(path: (string | number)[]): string {
  return path
    .map((step) =>
      typeof step === "number"
        ? `[${step}]`
        : /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(step)
          ? `.${step}`
          : `[${JSON.stringify(step)}]`,
    )
    .join("");
}

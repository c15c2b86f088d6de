import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import dotenv from "dotenv";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/**
 * The variables of a `.env` a user made in the repository (as the README suggests), each
 * set to "". A child process started in the repository loads that file, and the service
 * reads every variable the test did not set from it: a CALLBACK_SECRET there turned the
 * callbacks of four tests into 401s. dotenv never overrides a variable that is set, even
 * to "", and the service reads "" as unset.
 */
function dotenvBlanks(): Record<string, string> {
  let text: string;
  try {
    text = readFileSync(`${ROOT}.env`, "utf8");
  } catch {
    return {};
  }
  return Object.fromEntries(Object.keys(dotenv.parse(text)).map((name) => [name, ""]));
}

const BLANKS = dotenvBlanks();

/**
 * The environment of a child process the test starts in `cwd` (the repository unless
 * given): PATH, then `env`, and nothing from a user's `.env` there.
 */
export function childEnv(env: Record<string, string>, cwd = ROOT): Record<string, string> {
  const inRepository = cwd.replace(/\/?$/, "/") === ROOT;
  return { ...(inRepository ? BLANKS : {}), PATH: process.env.PATH ?? "", ...env };
}

/** For the vitest process itself (setup file): children that inherit process.env get the blanks too. */
export function blankDotenvInProcess(): void {
  for (const [name, value] of Object.entries(BLANKS)) {
    if (process.env[name] === undefined) process.env[name] = value;
  }
}

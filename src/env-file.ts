import { readFileSync } from "node:fs";
import dotenv from "dotenv";

/**
 * Reads `.env` from the working folder into `env`, as the service, its CLI and the image's
 * health check all do. A variable the environment sets keeps its value; one it leaves unset
 * or blank is taken from the file, as README says an empty value counts as unset (dotenv
 * itself kept an empty one: compose's `FINAPI_CLIENT_ID=${FINAPI_CLIENT_ID}` hid the
 * file's). Returns why the file could not be read, or undefined: a missing file is fine,
 * one that is there but unreadable (a root-owned 0600 file mounted for another user) is
 * not, since the service would otherwise start on every default without a word.
 */
export function loadEnvFile(
  env: Record<string, string | undefined> = process.env,
  path = ".env",
): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    return `cannot read ${path}: ${(error as Error).message}`;
  }
  for (const [name, value] of Object.entries(dotenv.parse(text))) {
    if (!env[name]?.trim()) env[name] = value;
  }
  return undefined;
}

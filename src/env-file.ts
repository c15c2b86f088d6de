import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import dotenv from "dotenv";

/**
 * Reads `.env` from the working folder into `env`, as the service, its CLI and the image's
 * health check all do. A variable the environment sets keeps its value; one it leaves unset
 * or blank is taken from the file, as README says an empty value counts as unset (dotenv
 * itself kept an empty one: compose's `FINAPI_CLIENT_ID=${FINAPI_CLIENT_ID}` hid the
 * file's). Returns why the file could not be read, or undefined: a missing `.env` is fine
 * (one DOTENV_CONFIG_PATH names is not), one that is there but unreadable (a root-owned 0600 file mounted for another user) is
 * not, since the service would otherwise start on every default without a word.
 */
export function loadEnvFile(
  env: Record<string, string | undefined> = process.env,
  // dotenv's own variable for another file, which dotenv.config() read before this did.
  named = env.DOTENV_CONFIG_PATH?.trim() || undefined,
  fallback = ".env",
): string | undefined {
  const path = named ?? fallback;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const { code } = error as NodeJS.ErrnoException;
    // A file asked for by name that is not there (a typo, a volume not mounted) is not
    // "no settings file": the service would start on defaults without a word.
    if (code === "ENOENT" && named !== undefined) {
      return `DOTENV_CONFIG_PATH=${named}: there is no such file (${resolve(named)}): fix the path, or unset DOTENV_CONFIG_PATH to read ./.env`;
    }
    if (code === "ENOENT") return undefined;
    // What to do depends on why: a folder in its place (a volume mounted at the file's
    // path) is not mended by its permissions.
    const fix =
      code === "EISDIR"
        ? "it is a folder: put a file there, or remove it"
        : `${(error as Error).message}: make it readable by the user the service runs as, or remove it`;
    return `cannot read ${path} (${resolve(path)}): ${fix}`;
  }
  for (const [name, value] of Object.entries(dotenv.parse(text))) {
    if (!env[name]?.trim()) env[name] = value;
  }
  return undefined;
}

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
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
  // dotenv's own variable for another file, which dotenv.config() read before this did.
  path = env.DOTENV_CONFIG_PATH?.trim() || ".env",
): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const { code } = error as NodeJS.ErrnoException;
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

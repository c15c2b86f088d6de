import { bareHost, cleanEnv } from "../env-values.js";

/** The setting that chose the admin API's address: named when it cannot be reached. */
export type AdminTargetSource = "--admin-url" | "ADMIN_URL" | "ADMIN_HOST/ADMIN_PORT";

/** An --admin-url or ADMIN_URL the CLI cannot use; the message never repeats the value. */
export class AdminTargetError extends Error {
  override name = "AdminTargetError";
}

/**
 * Where `npm run cli` finds the admin API and with which token, read from the environment
 * as the service reads its own settings (cleanEnv: trimmed, an empty value is unset).
 */
export function cliTarget(
  env: NodeJS.ProcessEnv,
  flags: { adminUrl?: string; token?: string } = {},
): { adminUrl: string; token: string | undefined; source: AdminTargetSource } {
  const settings = cleanEnv(env);
  const token = flags.token ?? settings.ADMIN_TOKEN;
  const given =
    flags.adminUrl !== undefined
      ? { url: flags.adminUrl, source: "--admin-url" as const }
      : settings.ADMIN_URL !== undefined
        ? { url: settings.ADMIN_URL, source: "ADMIN_URL" as const }
        : undefined;
  if (!given) {
    return { adminUrl: localAdminUrl(settings), token, source: "ADMIN_HOST/ADMIN_PORT" };
  }
  checkAdminUrl(given.url, given.source);
  return { adminUrl: given.url.replace(/\/+$/, ""), token, source: given.source };
}

/**
 * The CLI appends /admin/… to the URL and prints it when the API cannot be reached, so it
 * must be a plain base URL. A password in it would be printed, and fetch refuses it anyway.
 */
function checkAdminUrl(value: string, source: AdminTargetSource): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new AdminTargetError(`${source} is not a URL (like http://127.0.0.1:9090)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new AdminTargetError(`${source} must be an http(s) URL (like http://127.0.0.1:9090)`);
  }
  if (url.username !== "" || url.password !== "") {
    throw new AdminTargetError(
      `${source} must not contain a user name or password: give the admin token as ADMIN_TOKEN (or --token)`,
    );
  }
  if (/[?#]/.test(value)) {
    throw new AdminTargetError(
      `${source} must be the admin API's base URL, without ?query or #fragment (the CLI appends /admin/… to it)`,
    );
  }
}

/**
 * The admin API of a service on this machine, from its own ADMIN_HOST and ADMIN_PORT
 * (`settings` read by cleanEnv). The image's HEALTHCHECK (src/healthcheck.ts) finds it so too.
 */
export function localAdminUrl(settings: Record<string, string>): string {
  const host = settings.ADMIN_HOST === undefined ? undefined : bareHost(settings.ADMIN_HOST);
  // A wildcard listen address answers on loopback too; an IPv6 literal needs brackets.
  const reachable =
    !host || host === "0.0.0.0" || host === "::"
      ? "127.0.0.1"
      : host.includes(":")
        ? `[${host}]`
        : host;
  const port = settings.ADMIN_PORT ?? "9090";
  // Checked here, not left to the URL: "abc" or 70000 read as "is the service running?".
  if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    throw new AdminTargetError(
      `ADMIN_PORT=${port} is not a port the admin API can be reached on (1-65535); or give ADMIN_URL`,
    );
  }
  return `http://${reachable}:${port}`;
}

import { bareHost, cleanEnv } from "../env-values.js";

/**
 * Where `npm run cli` finds the admin API and with which token, read from the environment
 * as the service reads its own settings (cleanEnv: trimmed, an empty value is unset).
 */
export function cliTarget(
  env: NodeJS.ProcessEnv,
  flags: { adminUrl?: string; token?: string } = {},
): { adminUrl: string; token: string | undefined } {
  const settings = cleanEnv(env);
  const adminUrl = flags.adminUrl ?? settings.ADMIN_URL ?? localAdminUrl(settings);
  return { adminUrl: adminUrl.replace(/\/+$/, ""), token: flags.token ?? settings.ADMIN_TOKEN };
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
  return `http://${reachable}:${settings.ADMIN_PORT ?? "9090"}`;
}

/**
 * Where `npm run cli` finds the admin API and with which token, read from the environment
 * as the service reads its own settings: trimmed, an empty value counting as unset.
 */
export function cliTarget(
  env: NodeJS.ProcessEnv,
  flags: { adminUrl?: string; token?: string } = {},
): { adminUrl: string; token: string | undefined } {
  const setting = (name: string) => {
    const value = env[name]?.trim();
    return value ? value : undefined;
  };
  const adminUrl = flags.adminUrl ?? setting("ADMIN_URL") ?? localAdminUrl(setting);
  return { adminUrl: adminUrl.replace(/\/+$/, ""), token: flags.token ?? setting("ADMIN_TOKEN") };
}

/** The admin API of a service on this machine, from its own ADMIN_HOST and ADMIN_PORT. */
function localAdminUrl(setting: (name: string) => string | undefined): string {
  const host = setting("ADMIN_HOST")?.replace(/^\[(.*)\]$/, "$1");
  // A wildcard listen address answers on loopback too; an IPv6 literal needs brackets.
  const reachable =
    !host || host === "0.0.0.0" || host === "::"
      ? "127.0.0.1"
      : host.includes(":")
        ? `[${host}]`
        : host;
  return `http://${reachable}:${setting("ADMIN_PORT") ?? "9090"}`;
}

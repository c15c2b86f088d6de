/**
 * How the service and its CLI read environment values, so both read them alike.
 *
 * Values are trimmed, as dotenv trims a .env file: `docker run -e FILE_SINK_DIR=" "`, a
 * pasted secret's trailing space or a YAML block's last newline is not taken literally.
 * Empty (KEY= in a .env file) means "not set", as operators expect.
 */
export function cleanEnv(env: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).flatMap(([name, value]) => {
      const trimmed = value?.trim();
      return trimmed ? [[name, trimmed]] : [];
    }),
  );
}

/**
 * A listen address as Node's listen() wants it: an IPv6 literal may come bracketed as in
 * a URL (`[::1]`, with a zone as in `[fe80::1%eth0]`) and is unbracketed.
 */
export function bareHost(host: string): string {
  return host.replace(/^\[([0-9A-Fa-f:.]+(?:%[\w.-]+)?)\]$/, "$1");
}

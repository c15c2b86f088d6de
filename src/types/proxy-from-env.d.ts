/** proxy-from-env ships no types; this is the one function we use (axios' own proxy rules). */
declare module "proxy-from-env" {
  /** The proxy URL for `url` from HTTP(S)_PROXY, ALL_PROXY and NO_PROXY, or "" for none. */
  export function getProxyForUrl(url: string | URL): string;
}

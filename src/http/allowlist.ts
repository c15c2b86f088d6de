import type { Request, RequestHandler } from "express";
import ipaddr from "ipaddr.js";
import type { Logger } from "../logger.js";
import { LogBudget } from "./log-budget.js";
import { sendError } from "./send-error.js";

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number];

export const LOOPBACK_CIDRS = "127.0.0.0/8,::1/128";

/**
 * Parses a comma list of IPv4/IPv6 CIDRs or single addresses. IPv4-mapped IPv6
 * (`::ffff:10.0.0.1`) is folded to its IPv4 form on both sides, so either spelling matches.
 * Throws with every offending entry named, not only the first.
 */
export function parseCidrList(list: string): Range[] {
  const ranges: Range[] = [];
  const problems: string[] = [];
  for (const entry of list
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean)) {
    try {
      ranges.push(parseCidr(entry));
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  if (problems.length > 0) throw new Error(problems.join("; "));
  return ranges;
}

function parseCidr(entry: string): Range {
  const address = entry.split("/")[0] ?? "";
  // ipaddr.js reads "010" as octal and "10.1" as 10.0.0.1: neither is what an operator means.
  if (!address.includes(":") && !ipaddr.IPv4.isValidFourPartDecimal(address)) {
    throw new Error(
      `"${entry}" is not an IPv4/IPv6 address or CIDR (IPv4 needs four decimal parts)`,
    );
  }
  if (!entry.includes("/")) {
    try {
      const single = ipaddr.process(entry);
      return [single, single.kind() === "ipv4" ? 32 : 128];
    } catch {
      throw new Error(`"${entry}" is not an IPv4/IPv6 address or CIDR`);
    }
  }
  let network: ipaddr.IPv4 | ipaddr.IPv6;
  let bits: number;
  let first: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    [network, bits] = ipaddr.parseCIDR(entry);
    first = (network.kind() === "ipv4" ? ipaddr.IPv4 : ipaddr.IPv6).networkAddressFromCIDR(entry);
  } catch {
    throw new Error(`"${entry}" is not an IPv4/IPv6 address or CIDR`);
  }
  // An IPv4-mapped network is matched (and named back) in its IPv4 form.
  const mapped =
    network.kind() === "ipv6" && (network as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96;
  const range: Range = mapped
    ? [(network as ipaddr.IPv6).toIPv4Address(), bits - 96]
    : [network, bits];
  const start = mapped ? (first as ipaddr.IPv6).toIPv4Address() : first;
  // 10.0.0.1/8 is read as 10.0.0.0/8 by every CIDR library: an interface's address as
  // `ip addr` prints it (192.168.1.10/24) would let the whole network in, where one host
  // (a proxy) was meant. Compared without a zone (fe80::1%eth0): the network has none.
  const [written, prefix] = range;
  if (start.toNormalizedString() !== withoutZone(written).toNormalizedString()) {
    throw new Error(
      `"${entry}" has address bits set after its /${bits} prefix: write ${start.toString()}/${prefix} for the whole network, or ${written.toString()} for the one address`,
    );
  }
  return range;
}

function withoutZone(address: ipaddr.IPv4 | ipaddr.IPv6): ipaddr.IPv4 | ipaddr.IPv6 {
  return address.kind() === "ipv6" && (address as ipaddr.IPv6).zoneId
    ? ipaddr.IPv6.parse(address.toString().replace(/%.*$/, ""))
    : address;
}

export function isAllowed(ranges: readonly Range[], remoteAddress: string | undefined): boolean {
  const address = remoteAddress === undefined ? undefined : strictAddress(remoteAddress);
  if (!address) return false;
  return ranges.some(
    ([network, bits]) => address.kind() === network.kind() && address.match(network, bits),
  );
}

/**
 * `::ffff:a.b.c.d` (or with its five zero groups written out): the one IPv6 spelling with
 * an IPv4 address in it that we take; `2001:db8::ffff:a.b.c.d` is another address.
 */
const MAPPED_DOTTED = /^(?:::|(?:0{1,4}:){5})ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/**
 * An address as sockets and proxies write it: IPv4 in four decimal parts, or IPv6 (an
 * IPv4-mapped one as its IPv4 address). ipaddr.js also takes `3325256711`,
 * `0xc6.0x33.0x64.7` or `::198.51.100.7` for 198.51.100.7; from X-Forwarded-For such a
 * spelling is refused, not read as an allowed address.
 */
function strictAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return ipaddr.IPv4.parse(text);
  if (!ipaddr.IPv6.isValid(text)) return undefined;
  if (text.includes(".")) {
    const dotted = MAPPED_DOTTED.exec(text)?.[1];
    return dotted && ipaddr.IPv4.isValidFourPartDecimal(dotted)
      ? ipaddr.IPv4.parse(dotted)
      : undefined;
  }
  const v6 = ipaddr.IPv6.parse(text);
  return v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6;
}

/** Addresses remembered by allowedAddresses; past this, it starts afresh. */
const REMEMBERED_ADDRESSES = 1024;
/** The longest address remembered: an IPv6 one with a zone; anything longer is no address. */
const LONGEST_ADDRESS = 64;

/**
 * isAllowed for `ranges`, remembering its answers: a sender calls back from a handful of
 * addresses, and parsing one on every callback costs as much as the rest of the check.
 * Bounded, so a flood from many addresses cannot grow it.
 */
export function allowedAddresses(
  ranges: readonly Range[],
): (address: string | undefined) => boolean {
  const answers = new Map<string, boolean>();
  return (address) => {
    if (address === undefined) return false;
    let allowed = answers.get(address);
    if (allowed === undefined) {
      allowed = isAllowed(ranges, address);
      // Under a hop-count TRUST_PROXY, req.ip is whatever X-Forwarded-For says: not kept.
      if (address.length > LONGEST_ADDRESS) return allowed;
      if (answers.size >= REMEMBERED_ADDRESSES) answers.clear();
      answers.set(address, allowed);
    }
    return allowed;
  };
}

/**
 * Refused callbacks logged per minute; a scanner on the public port would otherwise write a
 * warning per request. The first ones show a misconfiguration (finAPI's addresses missing
 * from ALLOWED_CIDRS, a proxy without TRUST_PROXY) as clearly as all of them would.
 */
const REFUSALS_LOGGED_PER_MINUTE = 20;

/**
 * Lets only allowed networks reach the callback route. `req.ip` is the socket's address
 * unless TRUST_PROXY says which proxies may speak for the client, so X-Forwarded-For from
 * anyone else cannot spoof an allowed address.
 */
export function allowlist(
  allowed: (address: string | undefined) => boolean,
  logger: Logger,
  onReject?: (req: Request) => void,
): RequestHandler {
  const budget = new LogBudget(REFUSALS_LOGGED_PER_MINUTE, 60_000);
  return (req, res, next) => {
    if (allowed(req.ip)) return next();
    onReject?.(req);
    const forwardedFor = req.headers["x-forwarded-for"];
    // The header came, but its sender is no trusted proxy, so the socket's address was
    // checked: the usual cause is a proxy in front and TRUST_PROXY not set for it.
    const ignored = forwardedFor !== undefined && req.ip === req.socket.remoteAddress;
    // Refusals past the budget are only counted (kreditcheck_callbacks_received_total
    // {outcome="forbidden"}); the next line written says how many.
    budget.warn(
      logger,
      {
        remoteAddress: req.ip,
        socketAddress: req.socket.remoteAddress,
        ...(ignored
          ? {
              // The sender's own text: bounded, as a log line from anyone should be.
              forwardedFor: String(forwardedFor).slice(0, 256),
              hint: "X-Forwarded-For was ignored: its sender is not in TRUST_PROXY. Behind a proxy, set TRUST_PROXY to the proxy's address",
            }
          : {}),
      },
      "callback refused: address not in ALLOWED_CIDRS",
    );
    sendError(res, 403, "forbidden", [{ message: "this address may not send callbacks" }]);
  };
}

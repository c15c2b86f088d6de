import { describe, expect, it } from "vitest";
import { allowedAddresses, isAllowed, parseCidrList } from "../../src/http/allowlist.js";

describe("parseCidrList / isAllowed", () => {
  it("matches IPv4 and IPv6 networks and single addresses", () => {
    const ranges = parseCidrList("10.0.0.0/8, 192.168.1.7, 2001:db8::/32");
    expect(isAllowed(ranges, "10.20.30.40")).toBe(true);
    expect(isAllowed(ranges, "192.168.1.7")).toBe(true);
    // A single address is a /32 (a /128): neither neighbour gets in, below or above.
    expect(isAllowed(ranges, "192.168.1.6")).toBe(false);
    expect(isAllowed(ranges, "192.168.1.8")).toBe(false);
    expect(isAllowed(parseCidrList("10.0.0.1"), "10.0.0.0")).toBe(false);
    expect(isAllowed(parseCidrList("2001:db8::7"), "2001:db8::6")).toBe(false);
    expect(isAllowed(ranges, "2001:db8::1")).toBe(true);
    expect(isAllowed(ranges, "2001:db9::1")).toBe(false);
  });

  it("matches an IPv4-mapped IPv6 address against its IPv4 form, and the other way round", () => {
    expect(isAllowed(parseCidrList("10.0.0.1"), "::ffff:10.0.0.1")).toBe(true);
    expect(isAllowed(parseCidrList("::ffff:10.0.0.0/104"), "10.0.0.9")).toBe(true);
    expect(isAllowed(parseCidrList("10.0.0.1"), "::ffff:10.0.0.2")).toBe(false);
  });

  it("refuses a network written with an address inside it (as `ip addr` prints one), naming both readings", () => {
    // 192.168.1.10/24 would let the whole /24 in, where one host (a proxy) was meant.
    expect(() => parseCidrList("10.0.0.0/8, 192.168.1.10/24")).toThrow(
      '"192.168.1.10/24" has address bits set after its /24 prefix: write 192.168.1.0/24 for the whole network, or 192.168.1.10 for the one address',
    );
    expect(() => parseCidrList("2001:db8::1/32")).toThrow(
      /write 2001:db8::\/32 .* or 2001:db8::1 /,
    );
    // An IPv4-mapped entry is named back in the IPv4 form it is matched in.
    expect(() => parseCidrList("::ffff:10.0.0.1/104")).toThrow(
      /write 10\.0\.0\.0\/8 for the whole network, or 10\.0\.0\.1 for/,
    );
    // A zone is no address bit: link-local networks with their interface still read.
    expect(parseCidrList("fe80::%eth0/64, fe80::1%eth0/128")).toHaveLength(2);
    // Every list the service ships or documents still reads.
    expect(parseCidrList("127.0.0.0/8,::1/128,0.0.0.0/0,::/0,::ffff:10.0.0.0/104")).toHaveLength(5);
  });

  it("lets everyone in only when told so explicitly", () => {
    const everyone = parseCidrList("0.0.0.0/0,::/0");
    expect(isAllowed(everyone, "203.0.113.9")).toBe(true);
    expect(isAllowed(everyone, "2a00:1450::1")).toBe(true);
  });

  it("refuses what is not an address", () => {
    expect(isAllowed(parseCidrList("0.0.0.0/0"), undefined)).toBe(false);
    expect(isAllowed(parseCidrList("0.0.0.0/0"), "not-an-ip")).toBe(false);
    // Spellings of 198.51.100.7 that no socket or proxy writes, e.g. in X-Forwarded-For.
    const one = parseCidrList("198.51.100.7");
    for (const odd of [
      "3325256711",
      "0xc6.0x33.0x64.7",
      "198.51.25607",
      "::198.51.100.7",
      "2001:db8::ffff:198.51.100.7",
      "64:ff9b::ffff:198.51.100.7",
    ]) {
      expect(isAllowed(one, odd), odd).toBe(false);
    }
    expect(isAllowed(one, "0:0:0:0:0:ffff:198.51.100.7")).toBe(true);
    expect(isAllowed(one, "::FFFF:c633:6407")).toBe(true);
    expect(isAllowed(parseCidrList("fe80::/10"), "fe80::1%eth0")).toBe(true);
    expect(() => parseCidrList("10.0.0.0/8,nonsense")).toThrow(/nonsense/);
  });
});

describe("allowedAddresses", () => {
  it("gives isAllowed's answer every time it is asked, remembered or not", () => {
    const allowed = allowedAddresses(parseCidrList("10.0.0.0/8, ::ffff:192.168.1.7"));
    // Twice each: the second answer comes from memory and must be the same.
    for (let round = 0; round < 2; round++) {
      expect(allowed("10.1.2.3")).toBe(true);
      expect(allowed("::ffff:10.1.2.3")).toBe(true);
      expect(allowed("192.168.1.7")).toBe(true);
      expect(allowed("11.1.2.3")).toBe(false);
      expect(allowed(undefined)).toBe(false);
      expect(allowed(`10.1.2.3${" ".repeat(100)}`)).toBe(false);
    }
    // More addresses than it remembers: it starts afresh, and still answers right.
    for (let host = 0; host < 3000; host++) {
      expect(allowed(`10.0.${host >> 8}.${host & 255}`)).toBe(true);
      expect(allowed(`11.0.${host >> 8}.${host & 255}`)).toBe(false);
    }
  });
});

import { randomBytes } from "node:crypto";

export type TokenCheck = { ok: true } | { ok: false; reason: string };

interface IssuedToken {
  value: string;
  issuedAt: number;
}

/**
 * One mandator, one current token, like finAPI: asking again returns the same token until it
 * expires. The lifetime is read at check time, so changing `tokenLifetimeSec` at run time also
 * shortens (or lengthens) the token already handed out; tests rely on that to force expiry.
 */
export class TokenStore {
  private current: IssuedToken | undefined;
  private readonly retired = new Set<string>();
  private minted = 0;

  constructor(
    private readonly lifetimeSec: () => number,
    private readonly now: () => number = Date.now,
  ) {}

  get issuedCount(): number {
    return this.minted;
  }

  resetCount(): void {
    this.minted = 0;
  }

  /** Returns the current token, minting a new one if there is none or it has expired. */
  obtain(): { accessToken: string; expiresIn: number } {
    const now = this.now();
    if (!this.current || this.remainingMs(this.current, now) <= 0) {
      if (this.current) this.retire(this.current.value);
      this.current = { value: randomBytes(72).toString("base64url"), issuedAt: now };
      this.minted += 1;
    }
    const remaining = this.remainingMs(this.current, now);
    // Rounded up: rounding a short remainder down to 0 would read as "never expires".
    return {
      accessToken: this.current.value,
      expiresIn: Number.isFinite(remaining) ? Math.ceil(remaining / 1000) : 0,
    };
  }

  /** False when there was no token to revoke. */
  revoke(): boolean {
    if (!this.current) return false;
    this.retire(this.current.value);
    this.current = undefined;
    return true;
  }

  check(token: string | undefined): TokenCheck {
    if (!token) return { ok: false, reason: "Missing access token" };
    if (this.current && token === this.current.value) {
      return this.remainingMs(this.current, this.now()) > 0
        ? { ok: true }
        : { ok: false, reason: "Access token expired" };
    }
    if (this.retired.has(token)) return { ok: false, reason: "Access token expired or revoked" };
    return { ok: false, reason: "Invalid access token" };
  }

  /** Only for a better 401 message; bounded so long benchmarks with short lifetimes stay small. */
  private retire(value: string): void {
    this.retired.add(value);
    if (this.retired.size > 10_000) {
      const oldest = this.retired.values().next().value;
      if (oldest !== undefined) this.retired.delete(oldest);
    }
  }

  private remainingMs(token: IssuedToken, now: number): number {
    const lifetime = this.lifetimeSec();
    if (lifetime === 0) return Number.POSITIVE_INFINITY;
    return token.issuedAt + lifetime * 1000 - now;
  }
}

/** Why the SDK asks for a token. */
export type TokenReason =
  /** The first connection. */
  | "initial"
  /** The current token expires soon. */
  | "expiring"
  /** A connection is being opened again after it was lost. */
  | "reconnect"
  /** The gateway refused the current token. */
  | "rejected";

export type GetToken = (context: { reason: TokenReason; current: string | undefined }) => string | Promise<string>;

/** The claims of a JWT payload that the SDK reads. */
export interface TokenClaims {
  sub?: string;
  exp?: number;
  iat?: number;
  nbf?: number;
}

function base64UrlDecode(part: string): string {
  const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
  const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/** Reads a JWT's payload without verifying it (the gateway does that); `undefined` if it is not a JWT. */
export function decodeToken(token: string): TokenClaims | undefined {
  const parts = token.split(".");
  if (parts.length !== 3 || parts[1] === undefined) return undefined;
  try {
    const claims: unknown = JSON.parse(base64UrlDecode(parts[1]));
    return typeof claims === "object" && claims !== null ? (claims as TokenClaims) : undefined;
  } catch {
    return undefined;
  }
}

export interface TokenManagerOptions {
  token: string | undefined;
  getToken: GetToken | undefined;
  /** Refresh this long before `exp` (at most a quarter of the token's lifetime). */
  refreshMarginMs: number;
  now: () => number;
  onRefreshed: (token: string) => void;
  onError: (error: unknown) => void;
}

/**
 * Holds the current token, asks `getToken` for a new one when asked to or
 * shortly before the current one expires, and shares one pending call
 * between callers.
 */
export class TokenManager {
  private current: string | undefined;
  private obtainedAt = 0;
  private pending: Promise<string> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private failures = 0;

  constructor(private readonly options: TokenManagerOptions) {
    this.current = options.token;
    this.obtainedAt = options.now();
  }

  /** The token in use, if any. */
  get token(): string | undefined {
    return this.current;
  }

  /** The user ID (`sub`) of the current token. */
  get subject(): string | undefined {
    return this.current === undefined ? undefined : decodeToken(this.current)?.sub;
  }

  /** Milliseconds since the Unix epoch when the current token expires, if known. */
  get expiresAt(): number | undefined {
    const exp = this.current === undefined ? undefined : decodeToken(this.current)?.exp;
    return typeof exp === "number" ? exp * 1000 : undefined;
  }

  get canRefresh(): boolean {
    return this.options.getToken !== undefined;
  }

  /** True when the token is known to be expired by the local clock. */
  isExpired(): boolean {
    const exp = this.expiresAt;
    return exp !== undefined && exp <= this.options.now();
  }

  /**
   * A token to use now. With `reason`, `getToken` is called (unless a call
   * is already under way); without, the current token is returned, or a new
   * one if there is none or it has expired.
   */
  async get(reason?: TokenReason): Promise<string> {
    if (reason === undefined) {
      if (this.current !== undefined && (!this.isExpired() || !this.canRefresh)) return this.current;
      reason = this.current === undefined ? "initial" : "expiring";
    }
    if (!this.options.getToken) {
      if (this.current === undefined) throw new Error("no token: pass `token` or `getToken`");
      return this.current;
    }
    return this.refresh(reason);
  }

  /** Calls `getToken`, sharing a call already under way. */
  refresh(reason: TokenReason): Promise<string> {
    const getToken = this.options.getToken;
    if (!getToken) return Promise.resolve(this.current ?? "");
    if (this.pending) return this.pending;
    const call = (async () => {
      try {
        const token = await getToken({ reason, current: this.current });
        if (typeof token !== "string" || token === "") throw new Error("getToken returned no token");
        this.set(token);
        this.failures = 0;
        return token;
      } finally {
        this.pending = undefined;
      }
    })();
    this.pending = call;
    return call;
  }

  /** Takes `token` as the current one and schedules its refresh. */
  set(token: string): void {
    const changed = token !== this.current;
    this.current = token;
    this.obtainedAt = this.options.now();
    // At least a second between refreshes, even for a token that is
    // already due (a clock ahead of ours, or getToken handing out the same one).
    this.schedule(1000);
    if (changed) this.options.onRefreshed(token);
  }

  /** Starts refreshing before expiry. */
  start(): void {
    this.stopped = false;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(minDelayMs = 0): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.stopped || !this.options.getToken || this.current === undefined) return;
    const exp = this.expiresAt;
    if (exp === undefined) return;
    const claims = decodeToken(this.current);
    const issued = typeof claims?.iat === "number" ? claims.iat * 1000 : this.obtainedAt;
    const lifetime = Math.max(0, exp - issued);
    const margin = Math.min(this.options.refreshMarginMs, lifetime / 4);
    const delay = Math.max(minDelayMs, exp - margin - this.options.now());
    this.timer = setTimeout(() => this.onTimer(), Math.min(delay, 2 ** 31 - 1));
  }

  private onTimer(): void {
    this.timer = undefined;
    if (this.stopped) return;
    this.refresh("expiring").catch((err: unknown) => {
      this.failures++;
      this.options.onError(err);
      // Try again soon, with a growing pause, while the client runs.
      const delay = Math.min(30_000, 500 * 2 ** Math.min(this.failures, 6));
      if (!this.stopped) this.timer = setTimeout(() => this.onTimer(), delay);
    });
  }
}

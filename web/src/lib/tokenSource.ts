// Where the connection and the REST calls get their token. A token from the
// development sign-in can be renewed (the source mints another one through
// `POST /api/dev/token` for the same user); a token handed over by a host
// application, or pasted, cannot, unless the host gives a `mint` function.
// `getFreshToken()` is what every (re)connect and every REST call uses.

/** Renew when less than this is left (capped at half the token's own lifetime, see `renewMarginMs`). */
export const RENEW_MARGIN_MS = 2 * 60 * 1000;

export interface TokenClaims {
  /** Expiry, seconds since epoch. */
  exp: number | null;
  /** Issued at, seconds since epoch. */
  iat: number | null;
}

/** The `exp` and `iat` claims of a JWT, read without verification (the server verifies). */
export function decodeClaims(token: string): TokenClaims {
  const none = { exp: null, iat: null };
  const part = token.split('.')[1];
  if (!part) return none;
  try {
    const base64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
    const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
    return { exp: num(claims.exp), iat: num(claims.iat) };
  } catch {
    return none;
  }
}

/**
 * How long before expiry a token is renewed: about two minutes, but never
 * more than half of the token's lifetime (`exp - iat`), so that a token that
 * lives only a minute or two is still used as issued for a while.
 */
export function renewMarginMs(claims: TokenClaims): number {
  if (claims.exp !== null && claims.iat !== null && claims.exp > claims.iat) {
    return Math.min(RENEW_MARGIN_MS, ((claims.exp - claims.iat) * 1000) / 2);
  }
  return RENEW_MARGIN_MS;
}

export interface TokenSourceOptions {
  token: string;
  /** Gets a new token for the same user; absent when the token cannot be renewed. */
  mint?: (() => Promise<string>) | null;
  /** Called with each renewed token (to keep it for a reload, say). */
  onRenewed?: (token: string) => void;
  now?: () => number;
}

export class TokenSource {
  private current: string;
  private claims: TokenClaims;
  private readonly mintFn: (() => Promise<string>) | null;
  private readonly onRenewed: ((token: string) => void) | undefined;
  private readonly now: () => number;
  private inFlight: Promise<string> | null = null;

  constructor(options: TokenSourceOptions) {
    this.current = options.token;
    this.claims = decodeClaims(options.token);
    this.mintFn = options.mint ?? null;
    this.onRenewed = options.onRenewed;
    this.now = options.now ?? Date.now;
  }

  /** The token as it is now (possibly expired). */
  get token(): string {
    return this.current;
  }

  get renewable(): boolean {
    return this.mintFn !== null;
  }

  /** When the current token expires (ms since epoch), if it says. */
  get expiresAt(): number | null {
    return this.claims.exp === null ? null : this.claims.exp * 1000;
  }

  /** Milliseconds left on the current token (Infinity when it has no `exp`). */
  remainingMs(): number {
    const at = this.expiresAt;
    return at === null ? Infinity : at - this.now();
  }

  isExpired(): boolean {
    return this.remainingMs() <= 0;
  }

  /** The current token has little time left (see `renewMarginMs`). */
  needsRenewal(): boolean {
    return this.remainingMs() <= renewMarginMs(this.claims);
  }

  /**
   * A token good for a while: the current one if it has enough time left,
   * else a newly minted one. A token that cannot be renewed, or whose
   * renewal failed, is returned as it is (the server then says whether it
   * still accepts it).
   */
  async getFreshToken(): Promise<string> {
    if (!this.needsRenewal() || !this.renewable) return this.current;
    try {
      return await this.renew();
    } catch {
      return this.current;
    }
  }

  /**
   * Mints a new token now, whatever the current one has left (one mint at a
   * time: concurrent callers share it). Rejects when the token cannot be
   * renewed or the mint fails.
   */
  renew(): Promise<string> {
    const mint = this.mintFn;
    if (!mint) return Promise.reject(new Error('This sign-in cannot be renewed.'));
    if (!this.inFlight) {
      this.inFlight = mint()
        .then((token) => {
          this.current = token;
          this.claims = decodeClaims(token);
          this.onRenewed?.(token);
          return token;
        })
        .finally(() => {
          this.inFlight = null;
        });
    }
    return this.inFlight;
  }
}

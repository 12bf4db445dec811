// The token source: exp read from the JWT payload (base64url, unverified),
// renewal about two minutes ahead (at most half a short token's lifetime),
// one mint at a time, and tokens that cannot be renewed kept as they are.
// Also ChatApi's single renewal and retry after a 401 with an expired token.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError, ChatApi } from '../src/lib/api';
import { decodeClaims, RENEW_MARGIN_MS, renewMarginMs, TokenSource } from '../src/lib/tokenSource';
import { jwt } from './fixtures';

const NOW = 1_800_000_000_000;
const at = (secondsFromNow: number) => Math.floor(NOW / 1000) + secondsFromNow;

describe('decodeClaims', () => {
  it('reads exp and iat from a base64url payload without padding', () => {
    // "é" and "?>" make payloads whose base64 needs '-', '_' and no padding.
    const token = jwt({ sub: 'ä?>?>', name: 'Zoé', exp: 1_900_000_000, iat: 1_899_999_000 });
    expect(token.split('.')[1]).not.toContain('=');
    expect(decodeClaims(token)).toEqual({ exp: 1_900_000_000, iat: 1_899_999_000 });
  });

  it('gives nulls for a token without exp, or that is not a JWT', () => {
    expect(decodeClaims(jwt({ sub: 'x' }))).toEqual({ exp: null, iat: null });
    expect(decodeClaims('not-a-jwt')).toEqual({ exp: null, iat: null });
    expect(decodeClaims('a.%%%.b')).toEqual({ exp: null, iat: null });
    expect(decodeClaims(jwt({ exp: 'tomorrow' }))).toEqual({ exp: null, iat: null });
  });

  it('renews two minutes ahead, or at half the lifetime of a short token', () => {
    expect(renewMarginMs({ exp: at(3600), iat: at(0) })).toBe(RENEW_MARGIN_MS);
    expect(renewMarginMs({ exp: at(3600), iat: null })).toBe(RENEW_MARGIN_MS);
    expect(renewMarginMs({ exp: at(70), iat: at(0) })).toBe(35_000);
  });
});

describe('TokenSource', () => {
  it('keeps a token with more than two minutes left', async () => {
    const mint = vi.fn(async () => jwt({ exp: at(7200) }));
    const token = jwt({ exp: at(121), iat: at(-3600) });
    const source = new TokenSource({ token, mint, now: () => NOW });
    expect(source.needsRenewal()).toBe(false);
    expect(await source.getFreshToken()).toBe(token);
    expect(mint).not.toHaveBeenCalled();
  });

  it('mints a new token when less is left, once for concurrent callers, and reports it', async () => {
    const fresh = jwt({ exp: at(7200), iat: at(0) });
    let resolve!: (t: string) => void;
    const mint = vi.fn(() => new Promise<string>((r) => (resolve = r)));
    const onRenewed = vi.fn();
    const source = new TokenSource({ token: jwt({ exp: at(119), iat: at(-3600) }), mint, onRenewed, now: () => NOW });
    expect(source.needsRenewal()).toBe(true);
    const both = Promise.all([source.getFreshToken(), source.getFreshToken()]);
    resolve(fresh);
    expect(await both).toEqual([fresh, fresh]);
    expect(mint).toHaveBeenCalledTimes(1);
    expect(onRenewed).toHaveBeenCalledWith(fresh);
    expect(source.token).toBe(fresh);
    expect(source.expiresAt).toBe(at(7200) * 1000);
    expect(source.needsRenewal()).toBe(false);
  });

  it('mints for an expired token and falls back to the current one when the mint fails', async () => {
    const expired = jwt({ exp: at(-5) });
    const source = new TokenSource({ token: expired, mint: () => Promise.reject(new Error('down')), now: () => NOW });
    expect(source.isExpired()).toBe(true);
    expect(await source.getFreshToken()).toBe(expired);
    await expect(source.renew()).rejects.toThrow('down');
  });

  it('never tries to renew a token that cannot be renewed', async () => {
    const expired = jwt({ exp: at(-5) });
    const source = new TokenSource({ token: expired, now: () => NOW });
    expect(source.renewable).toBe(false);
    expect(await source.getFreshToken()).toBe(expired);
    await expect(source.renew()).rejects.toThrow(/cannot be renewed/);
  });

  it('treats a token without exp as lasting', async () => {
    const source = new TokenSource({ token: 'opaque', mint: vi.fn(), now: () => NOW });
    expect(source.remainingMs()).toBe(Infinity);
    expect(source.needsRenewal()).toBe(false);
    expect(await source.getFreshToken()).toBe('opaque');
  });
});

describe('ChatApi with a token source', () => {
  afterEach(() => vi.unstubAllGlobals());

  const unauthorized = () => new Response(JSON.stringify({ error: { code: 'unauthorized', message: 'expired' } }), { status: 401 });
  const ok = () => new Response(JSON.stringify({ items: [], nextCursor: null }), { status: 200 });
  const bearer = (call: unknown[]) => ((call[1] as RequestInit).headers as Record<string, string>).Authorization;

  it('renews once and retries after a 401 with an expired token', async () => {
    // Expired by the time the server sees it (a clock ahead of ours, say).
    const old = jwt({ exp: Math.floor(Date.now() / 1000) + 2 });
    const fresh = jwt({ exp: Math.floor(Date.now() / 1000) + 7200 });
    const fetchMock = vi.fn().mockResolvedValueOnce(unauthorized()).mockResolvedValueOnce(ok());
    vi.stubGlobal('fetch', fetchMock);
    const mint = vi.fn(async () => fresh);
    const source = new TokenSource({ token: old, mint });
    // More than half its lifetime left and no iat: the margin is two minutes, so pretend it is long.
    vi.spyOn(source, 'needsRenewal').mockReturnValue(false);
    const api = new ChatApi('http://chat.test', source);
    await expect(api.listSessions()).resolves.toEqual({ items: [], nextCursor: null });
    expect(mint).toHaveBeenCalledTimes(1);
    expect(fetchMock.mock.calls.map(bearer)).toEqual([`Bearer ${old}`, `Bearer ${fresh}`]);
  });

  it('does not retry a 401 for a token that has not expired, nor one that cannot be renewed', async () => {
    const fetchMock = vi.fn(async () => unauthorized());
    vi.stubGlobal('fetch', fetchMock);
    const mint = vi.fn(async () => jwt({ exp: Math.floor(Date.now() / 1000) + 7200 }));
    const valid = new ChatApi('http://chat.test', new TokenSource({ token: jwt({ exp: Math.floor(Date.now() / 1000) + 3600 }), mint }));
    await expect(valid.listSessions()).rejects.toBeInstanceOf(ApiError);
    expect(mint).not.toHaveBeenCalled();
    const pasted = new ChatApi('http://chat.test', new TokenSource({ token: jwt({ exp: Math.floor(Date.now() / 1000) - 10 }) }));
    await expect(pasted.listSessions()).rejects.toMatchObject({ status: 401 });
    expect(fetchMock).toHaveBeenCalledTimes(2);
  });
});

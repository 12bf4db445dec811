// End to end: token lifetime (docs/protocol.md §1). A customer signs in
// through the development sign-in, but the first token the page receives
// lives only ~70 s (the test swaps the server's answer for one it signs
// itself with the standalone development secret). The page must answer
// `token-expiring` with `refresh-token` and a newly minted token, stay
// connected past the original `exp`, and still send messages. Meanwhile a
// second page, opened with a short-lived token handed over in the address
// (which the UI cannot renew), must end in a clear "session expired" state
// without reconnecting in a loop.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import {
  api,
  eventually,
  openPage,
  screenshot,
  serverAndBrowser,
  shownMessages,
  signIn,
  startChat,
} from './harness.mjs';

/** The standalone server's built-in secret (no JWT_SECRET): the one the development endpoint signs with. */
const DEV_SECRET = 'development-secret-do-not-use-in-production';

const b64url = (value) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

function signHs256(claims) {
  const head = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims)}`;
  return `${head}.${createHmac('sha256', DEV_SECRET).update(head).digest('base64url')}`;
}

function claimsOf(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

/** Socket.IO event frames ("42/chat,[name, payload]" or acks "43/chat,<id>[payload]") seen on a page. */
function recordFrames(page) {
  const frames = [];
  page.on('websocket', (ws) => {
    ws.on('framesent', ({ payload }) => frames.push({ dir: 'out', text: String(payload), at: Date.now() }));
    ws.on('framereceived', ({ payload }) => frames.push({ dir: 'in', text: String(payload), at: Date.now() }));
  });
  return frames;
}

function eventFrames(frames, dir, name) {
  return frames.filter((f) => f.dir === dir && f.text.startsWith('42/chat,') && f.text.includes(`["${name}"`));
}

const stack = serverAndBrowser();

test('a short-lived sign-in is refreshed in place; a token that cannot be renewed ends in "session expired"', { timeout: 120_000 }, async () => {
  const started = Date.now();
  const customer = await openPage(stack.browser, { name: 'customer', viewport: { width: 400, height: 780 } });
  const pasted = await openPage(stack.browser, { name: 'pasted', viewport: { width: 400, height: 780 } });
  const c = customer.page;
  const p = pasted.page;
  const framesC = recordFrames(c);
  const framesP = recordFrames(p);

  // The first development token the page gets lives 70 s; later mints are the server's own (12 h).
  let shortExp = 0;
  let mints = 0;
  await c.route('**/api/dev/token', async (route) => {
    mints++;
    const response = await route.fetch();
    if (mints > 1) return route.fulfill({ response });
    const body = await response.json();
    const now = Math.floor(Date.now() / 1000);
    shortExp = now + 70;
    body.token = signHs256({ ...claimsOf(body.token), iat: now, exp: shortExp });
    return route.fulfill({ response, json: body });
  });

  // The other page: a host-provided token (address fragment) with 8 s to live, which nothing can renew.
  const now = Math.floor(Date.now() / 1000);
  const hostToken = signHs256({ sub: 'pat-pasted', name: 'Pat Pasted', role: 'customer', iat: now, exp: now + 8 });
  await p.goto(`${stack.url}/support#token=${hostToken}`);

  await signIn(c, stack.url, { role: 'customer', name: 'Robin Refresh' });
  assert.ok(shortExp > 0, 'the sign-in used the short-lived token');
  await startChat(c, { subject: 'Token lifetime', message: 'before the refresh' });
  await eventually(async () => (await shownMessages(c)).some((m) => m.content === 'before the refresh' && m.state !== 'queued' && m.state !== 'sending'), {
    message: 'first message stored',
  });

  // --- The host-token page: warned at once, expired at exp, then it says so and stops. ---
  const expiredBanner = p.getByTestId('connection-banner');
  await expiredBanner.getByText('Your session has expired. Sign in again to continue.').waitFor({ timeout: 20_000 });
  assert.equal(await p.getByTestId('connection-status').getAttribute('data-status'), 'unauthorized');
  assert.equal((await p.getByTestId('connection-status').textContent())?.trim(), 'Session expired');
  assert.ok(eventFrames(framesP, 'in', 'token-expiring').length >= 1, 'host-token page was warned');
  assert.equal(eventFrames(framesP, 'out', 'refresh-token').length, 0, 'nothing to refresh with');
  assert.equal(await expiredBanner.getByRole('button', { name: 'Sign in again' }).count(), 1);
  await screenshot(p, 'customer-session-expired');
  const wsCountAtExpiry = framesP.filter((f) => f.dir === 'out' && f.text.startsWith('40/chat')).length;
  await p.waitForTimeout(3000);
  assert.equal(framesP.filter((f) => f.dir === 'out' && f.text.startsWith('40/chat')).length, wsCountAtExpiry, 'no reconnect loop after expiry');

  // --- The dev sign-in page: token-expiring (a minute before exp), refresh-token with a new token, ack ok. ---
  await eventually(() => eventFrames(framesC, 'in', 'token-expiring').length >= 1, { timeout: 30_000, message: 'token-expiring received' });
  const refresh = await eventually(() => eventFrames(framesC, 'out', 'refresh-token')[0], { timeout: 10_000, message: 'refresh-token sent' });
  const sentToken = JSON.parse(refresh.text.slice(refresh.text.indexOf('['))).at(-1).token;
  assert.ok(claimsOf(sentToken).exp > shortExp + 3600, 'refreshed with a long-lived token');
  const ackId = refresh.text.match(/^42\/chat,(\d+)\[/)?.[1];
  assert.ok(ackId, 'refresh-token asks for an ack');
  const ack = await eventually(() => framesC.find((f) => f.dir === 'in' && f.text.startsWith(`43/chat,${ackId}[`)), { message: 'refresh-token ack' });
  assert.equal(JSON.parse(ack.text.slice(ack.text.indexOf('[')))[0].ok, true, `refresh-token acked ok: ${ack.text}`);
  // The renewed token is kept for a reload.
  const stored = await c.evaluate(() => JSON.parse(sessionStorage.getItem('supportChat.auth')).token);
  assert.equal(stored, sentToken);

  // --- Past the original exp: still the same connection, and messages still go through. ---
  const statuses = new Set();
  while (Date.now() / 1000 < shortExp + 3) {
    statuses.add(await c.getByTestId('connection-status').getAttribute('data-status'));
    await c.waitForTimeout(500);
  }
  assert.deepEqual([...statuses], ['connected'], 'stayed connected past the original exp');
  assert.equal(eventFrames(framesC, 'in', 'error').filter((f) => f.text.includes('token_expired')).length, 0, 'no token_expired');
  assert.equal(framesC.filter((f) => f.dir === 'out' && f.text.startsWith('40/chat')).length, 1, 'one CONNECT: no reconnect needed');

  const box = c.getByRole('textbox', { name: 'Message' });
  await box.fill('after the original exp');
  await box.press('Enter');
  await eventually(async () => (await shownMessages(c)).find((m) => m.content === 'after the original exp')?.seq === 2, { message: 'message after exp stored' });
  const sessions = await api(stack.url, sentToken, 'GET', '/sessions');
  assert.equal(sessions.status, 200);
  const messages = await api(stack.url, sentToken, 'GET', `/sessions/${sessions.body.items[0].id}/messages`);
  assert.deepEqual(messages.body.items.map((m) => m.content), ['before the refresh', 'after the original exp']);

  assert.deepEqual([...customer.errors, ...pasted.errors], [], 'no console errors or page errors');
  assert.ok(Date.now() - started < 90_000, `ran in ${Math.round((Date.now() - started) / 1000)} s`);
});

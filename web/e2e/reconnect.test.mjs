// End to end: nothing typed or sent is lost or doubled across a server
// restart (same port, same data) nor across the browser going offline and
// back. The UI reconnects by itself, rejoins with lastSeq and flushes its
// outbox with the original clientMsgIds.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  api,
  devToken,
  eventually,
  isBrowserNetworkError,
  openPage,
  screenshot,
  serverAndBrowser,
  shownMessages,
  signIn,
  startChat,
  waitConnected,
} from './harness.mjs';

const stack = serverAndBrowser();

async function send(page, text) {
  const box = page.getByRole('textbox', { name: 'Message' });
  await box.fill(text);
  await box.press('Enter');
}

/** Each text appears exactly once, and the seqs shown are 1..n in order. */
async function assertConversation(page, expected, who) {
  const shown = await shownMessages(page);
  const contents = shown.map((m) => m.content);
  for (const text of expected) {
    assert.equal(contents.filter((c) => c === text).length, 1, `${who} shows "${text}" exactly once (has: ${JSON.stringify(contents)})`);
  }
  assert.deepEqual(
    shown.map((m) => m.seq),
    shown.map((_, i) => i + 1),
    `${who} shows seqs 1..n in order`,
  );
  assert.equal(shown.length, expected.length, `${who} shows no extra message`);
}

test('server restart and offline browser: nothing lost, nothing doubled', { timeout: 180_000 }, async () => {
  const agent = await openPage(stack.browser, { name: 'agent', viewport: { width: 1280, height: 800 } });
  const customer = await openPage(stack.browser, { name: 'customer', viewport: { width: 400, height: 780 } });
  const a = agent.page;
  const c = customer.page;

  await signIn(a, stack.url, { role: 'agent', name: 'Riley Agent' });
  await signIn(c, stack.url, { role: 'customer', name: 'Casey Customer' });
  await startChat(c, { subject: 'Reconnect', message: 'first' });
  await a.getByRole('button', { name: 'Take chat with Casey Customer' }).click();
  await c.getByText('You are chatting with Riley Agent').waitFor();
  await send(a, 'hello from the agent');
  await eventually(async () => (await shownMessages(c)).length === 2, { message: 'agent hello reaches the customer' });

  // --- The server goes away. ---
  for (const p of [agent, customer]) p.tolerate(isBrowserNetworkError);
  await stack.server.stop();
  for (const page of [a, c]) {
    await page.locator('[data-testid="connection-status"]:not([data-status="connected"])').first().waitFor({ timeout: 30000 });
  }
  await c.getByTestId('connection-banner').waitFor();

  // Written while it is down: kept in the outbox, shown as waiting.
  await send(c, 'typed while down 1');
  await send(c, 'typed while down 2');
  await send(a, 'agent typed while down');
  await eventually(
    async () => (await shownMessages(c)).filter((m) => m.state === 'queued').length === 2,
    { message: 'customer messages wait in the outbox' },
  );
  assert.equal((await shownMessages(a)).filter((m) => m.state === 'queued').length, 1);
  await screenshot(c, 'customer-widget-reconnecting');

  // --- It comes back on the same port with the same data. ---
  await stack.startServerAgain();
  await waitConnected(a, 30000);
  await waitConnected(c, 30000);
  for (const p of [agent, customer]) p.tolerate(null);

  const expected = ['first', 'hello from the agent', 'typed while down 1', 'typed while down 2', 'agent typed while down'];
  await eventually(
    async () => {
      const shownC = (await shownMessages(c)).map((m) => m.content);
      const shownA = (await shownMessages(a)).map((m) => m.content);
      return expected.every((t) => shownC.includes(t) && shownA.includes(t)) && shownC.length === expected.length && shownA.length === expected.length;
    },
    { timeout: 20000, message: 'outboxes flushed to both sides' },
  );
  // Everything of mine is stored (no "waiting" left) on both sides.
  await eventually(async () => (await shownMessages(c)).every((m) => m.state !== 'queued' && m.state !== 'sending'), { message: 'customer outbox empty' });
  await eventually(async () => (await shownMessages(a)).every((m) => m.state !== 'queued' && m.state !== 'sending'), { message: 'agent outbox empty' });
  // The customer's two messages kept their order.
  const order = (await shownMessages(a)).map((m) => m.content);
  assert.ok(order.indexOf('typed while down 1') < order.indexOf('typed while down 2'));

  // --- The customer's browser goes offline and comes back. ---
  customer.tolerate(isBrowserNetworkError);
  await customer.context.setOffline(true);
  await c.locator('[data-testid="connection-status"][data-status="offline"]').waitFor({ timeout: 15000 });
  await send(c, 'typed while offline');
  await eventually(async () => (await shownMessages(c)).find((m) => m.content === 'typed while offline')?.state === 'queued', {
    message: 'offline message waits',
  });
  // The agent keeps talking meanwhile; the customer catches up on return.
  await send(a, 'agent while customer offline');
  await customer.context.setOffline(false);
  await waitConnected(c, 30000);
  customer.tolerate(null);
  expected.push('agent while customer offline', 'typed while offline');
  await eventually(
    async () => {
      const shownC = (await shownMessages(c)).map((m) => m.content);
      const shownA = (await shownMessages(a)).map((m) => m.content);
      return shownC.length === expected.length && shownA.length === expected.length && expected.every((t) => shownC.includes(t) && shownA.includes(t));
    },
    { timeout: 20000, message: 'offline message delivered and catch-up received' },
  );

  await assertConversation(c, expected, 'customer');
  await assertConversation(a, expected, 'agent');

  // The server holds each message exactly once.
  const token = await devToken(stack.url, { userId: 'riley-agent', name: 'Riley Agent', role: 'agent' });
  const sessions = await api(stack.url, token, 'GET', '/sessions?status=active');
  const sessionId = sessions.body.items.find((s) => s.customerName === 'Casey Customer').id;
  const stored = await api(stack.url, token, 'GET', `/sessions/${sessionId}/messages?afterSeq=0&limit=200`);
  assert.deepEqual(stored.body.items.map((m) => m.content).sort(), [...expected].sort());
  assert.deepEqual(
    stored.body.items.map((m) => m.seq),
    expected.map((_, i) => i + 1),
  );

  await eventually(async () => (await shownMessages(c)).filter((m) => m.mine).every((m) => m.state === 'read'), { message: 'customer messages read after reconnect' });
  assert.deepEqual([...agent.errors, ...customer.errors], [], 'no console errors or page errors');
});

test('after the last attempt the UI offers a retry, which works', { timeout: 180_000 }, async () => {
  const customer = await openPage(stack.browser, { name: 'customer-2', viewport: { width: 400, height: 780 } });
  const c = customer.page;
  await signIn(c, stack.url, { role: 'customer', name: 'Parker Patient' });
  customer.tolerate(isBrowserNetworkError);
  await stack.server.stop();
  // Ten attempts with backoff (at most 5 s apart), then it stops and says so.
  await c.locator('[data-testid="connection-status"][data-status="failed"]').waitFor({ timeout: 90_000 });
  const banner = c.getByTestId('connection-banner');
  assert.match(await banner.textContent(), /Could not reach the chat server after 10 attempts/);
  await screenshot(c, 'customer-widget-failed');
  await stack.startServerAgain();
  // Nothing happens by itself any more…
  await c.waitForTimeout(1500);
  assert.equal(await c.getByTestId('connection-status').getAttribute('data-status'), 'failed');
  // …until the user asks.
  await banner.getByRole('button', { name: 'Retry' }).click();
  await waitConnected(c, 15_000);
  customer.tolerate(null);
  assert.deepEqual(customer.errors, [], 'no console errors or page errors');
});

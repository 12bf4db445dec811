// Reactions and ticks, end to end against the real server. A reaction the
// customer picks shows on the agent's side with its count, the agent adds
// the same one (count 2, highlighted as theirs), the customer takes theirs
// back. Ticks on the agent's message move from sent to delivered while the
// customer's page is in the background (its client confirms arrival by
// itself), then to read once the customer looks.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventually, openPage, screenshot, serverAndBrowser, signIn } from './harness.mjs';
import { setPageHidden, startAndTake, tickOf } from './fixtures.mjs';

const stack = serverAndBrowser();
const pages = [];
let a;
let c;

function noErrors() {
  const errors = pages.flatMap((p) => p.errors);
  assert.deepEqual(errors, [], 'no console errors or page errors');
}

/** The chip of an emoji under the message with this text: { count, mine } or null. */
async function chip(page, text, emoji) {
  const item = page.getByTestId('message').filter({ hasText: text }).locator(`[data-testid="reaction-chip"][data-emoji="${emoji}"]`);
  if ((await item.count()) !== 1) return null;
  return { count: Number(await item.getAttribute('data-count')), mine: (await item.getAttribute('data-mine')) === 'true' };
}

test('a reaction made by the customer is seen by the agent, and toggles on both sides', { timeout: 120_000 }, async () => {
  const agent = await openPage(stack.browser, { name: 'agent' });
  const customer = await openPage(stack.browser, { name: 'customer', viewport: { width: 420, height: 800 } });
  pages.push(agent, customer);
  a = agent.page;
  c = customer.page;
  await signIn(a, stack.url, { role: 'agent', name: 'Rita Agent', userId: 'rita' });
  await signIn(c, stack.url, { role: 'customer', name: 'Rex Customer', userId: 'rex' });
  await startAndTake(c, a, { customerName: 'Rex Customer', subject: 'Delivery', message: 'Where is my parcel?' });

  const agentBox = a.getByRole('textbox', { name: 'Message' });
  await agentBox.fill('It arrives tomorrow.');
  await agentBox.press('Enter');
  const onCustomer = c.getByTestId('message').filter({ hasText: 'It arrives tomorrow.' });
  await onCustomer.waitFor();

  // The customer picks 👍 from the picker under the agent's message.
  await onCustomer.getByRole('button', { name: 'Add reaction' }).click();
  await c.getByTestId('emoji-picker').getByRole('menuitem', { name: 'thumbs up' }).click();
  await eventually(async () => JSON.stringify(await chip(c, 'It arrives tomorrow.', '👍')) === JSON.stringify({ count: 1, mine: true }), { message: 'own reaction highlighted' });
  await eventually(async () => JSON.stringify(await chip(a, 'It arrives tomorrow.', '👍')) === JSON.stringify({ count: 1, mine: false }), { message: "the customer's reaction on the agent's side" });
  await screenshot(a, 'reaction-agent');

  // The agent adds the same one by clicking the chip.
  await a.getByTestId('message').filter({ hasText: 'It arrives tomorrow.' }).locator('[data-testid="reaction-chip"][data-emoji="👍"]').click();
  await eventually(async () => JSON.stringify(await chip(a, 'It arrives tomorrow.', '👍')) === JSON.stringify({ count: 2, mine: true }), { message: 'agent joined the reaction' });
  await eventually(async () => JSON.stringify(await chip(c, 'It arrives tomorrow.', '👍')) === JSON.stringify({ count: 2, mine: true }), { message: 'count 2 on the customer side' });

  // The customer takes theirs back; a reload shows the list as stored.
  await onCustomer.locator('[data-testid="reaction-chip"][data-emoji="👍"]').click();
  await eventually(async () => JSON.stringify(await chip(a, 'It arrives tomorrow.', '👍')) === JSON.stringify({ count: 1, mine: true }), { message: 'back to 1 on the agent side' });
  await c.reload();
  await eventually(async () => JSON.stringify(await chip(c, 'It arrives tomorrow.', '👍')) === JSON.stringify({ count: 1, mine: false }), { message: 'stored list after a reload' });
  // The emoji is text in a fallback font stack: it has a size even without a colour emoji font.
  const box = await c.locator('[data-testid="reaction-chip"] .emoji').first().boundingBox();
  assert.ok(box && box.width > 0 && box.height > 0, 'the emoji is drawn');
  noErrors();
});

test('ticks: sent, delivered while the customer is away, read once they look', { timeout: 120_000 }, async () => {
  await setPageHidden(c, true);
  const agentBox = a.getByRole('textbox', { name: 'Message' });
  await agentBox.fill('Are you still there?');
  await agentBox.press('Enter');
  await eventually(async () => ['sent', 'delivered'].includes(await tickOf(a, 'Are you still there?')), { message: 'stored: a tick shown' });
  await eventually(async () => (await tickOf(a, 'Are you still there?')) === 'delivered', { message: 'delivered to the hidden customer page' });
  // Nothing reads it while the page stays hidden.
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(await tickOf(a, 'Are you still there?'), 'delivered');
  await setPageHidden(c, false);
  await eventually(async () => (await tickOf(a, 'Are you still there?')) === 'read', { message: 'read once the customer looks' });
  // The customer's own messages carry ticks too: the agent has the chat open.
  const customerBox = c.getByRole('textbox', { name: 'Message' });
  await customerBox.fill('Yes!');
  await customerBox.press('Enter');
  await eventually(async () => (await tickOf(c, 'Yes!')) === 'read', { message: "customer's message read by the agent" });
  noErrors();
});

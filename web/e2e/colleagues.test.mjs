// Invited colleagues and internal notes, end to end against the real
// server. Ana, who has the chat, invites Ben from the directory; the
// customer sees "Ben joined the chat" and who they are chatting with; Ben
// finds the chat among his own and writes in it, and the customer reads him.
// Ana writes an internal note: Ben sees it, styled as one, live and after a
// reload; the customer never does (not live, not after a reload). Ben leaves.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, devToken, eventually, openPage, screenshot, serverAndBrowser, shownMessages, signIn } from './harness.mjs';
import { startAndTake } from './fixtures.mjs';

const stack = serverAndBrowser();
const pages = [];
let ana;
let ben;
let cust;

function noErrors() {
  const errors = pages.flatMap((p) => p.errors);
  assert.deepEqual(errors, [], 'no console errors or page errors');
}

async function chatId(page) {
  return new URL(page.url()).searchParams.get('chat');
}

test('an invited colleague writes a message the customer sees', { timeout: 150_000 }, async () => {
  const anaPage = await openPage(stack.browser, { name: 'ana' });
  const benPage = await openPage(stack.browser, { name: 'ben' });
  const custPage = await openPage(stack.browser, { name: 'customer', viewport: { width: 420, height: 800 } });
  pages.push(anaPage, benPage, custPage);
  ana = anaPage.page;
  ben = benPage.page;
  cust = custPage.page;
  await signIn(ana, stack.url, { role: 'agent', name: 'Ana', userId: 'ana' });
  await signIn(ben, stack.url, { role: 'agent', name: 'Ben', userId: 'ben' });
  await signIn(cust, stack.url, { role: 'customer', name: 'Cleo', userId: 'cleo' });
  await startAndTake(cust, ana, { customerName: 'Cleo', subject: 'Refund', message: 'I want a refund for order 7.' });

  // Ana invites Ben from the directory.
  await ana.getByRole('button', { name: 'Invite colleague' }).click();
  const dialog = ana.getByRole('dialog');
  const picker = dialog.getByTestId('colleague-picker');
  await eventually(async () => (await picker.locator('option', { hasText: 'Ben' }).count()) === 1, { message: 'Ben offered' });
  assert.equal(await picker.locator('option', { hasText: 'Ana' }).count(), 0, 'Ana herself is not offered');
  await picker.selectOption('ben');
  await dialog.getByRole('button', { name: 'Invite' }).click();
  await dialog.waitFor({ state: 'detached' });
  await ana.getByTestId('participant').filter({ hasText: 'Ben' }).waitFor();

  // The customer sees who joined, in the timeline and the header.
  await cust.getByTestId('session-event').filter({ hasText: 'Ben joined the chat' }).waitFor();
  await cust.getByText('You are chatting with Ana and Ben').waitFor();
  await ana.getByTestId('session-event').filter({ hasText: 'Ben joined the chat' }).waitFor();

  // Ben has the chat among his own, told by a toast; he writes.
  const benItem = ben.getByTestId('my-chat-item').filter({ hasText: 'Cleo' });
  await benItem.waitFor();
  await benItem.click();
  await ben.getByRole('heading', { name: /Cleo/ }).waitFor();
  await ben.getByRole('button', { name: 'Leave chat' }).waitFor();
  const benBox = ben.getByRole('textbox', { name: 'Message' });
  await benBox.fill('Hi Cleo, I handle refunds. Approved.');
  await benBox.press('Enter');
  await eventually(async () => (await shownMessages(cust)).some((m) => m.content === 'Hi Cleo, I handle refunds. Approved.' && !m.mine), { message: "Ben's message reaches the customer" });
  const fromBen = cust.getByTestId('message').filter({ hasText: 'I handle refunds' });
  assert.match(await fromBen.textContent(), /Ben/);
  await eventually(async () => (await shownMessages(ana)).some((m) => m.content === 'Hi Cleo, I handle refunds. Approved.'), { message: "Ben's message on Ana's side" });
  await screenshot(cust, 'colleague-customer');
  noErrors();
});

test('an internal note is seen by the colleague and never by the customer', { timeout: 150_000 }, async () => {
  // Ana switches the box to an internal note.
  await ana.getByTestId('note-toggle').check();
  const anaBox = ana.getByRole('textbox', { name: 'Message' });
  await anaBox.fill('Careful: this customer already got a refund in May.');
  await ana.getByRole('button', { name: 'Add note' }).click();
  const anaNote = ana.getByTestId('note').filter({ hasText: 'already got a refund in May' });
  await anaNote.waitFor();
  await eventually(async () => (await anaNote.getAttribute('data-state')) === 'sent', { message: 'note stored' });
  assert.match(await anaNote.textContent(), /Internal note — only staff see this/);

  // Ben sees it live, styled as a note, between the messages.
  const benNote = ben.getByTestId('note').filter({ hasText: 'already got a refund in May' });
  await benNote.waitFor();
  assert.match(await benNote.textContent(), /Internal note — only staff see this/);
  assert.match(await benNote.textContent(), /Ana/);
  assert.equal(await ben.getByTestId('message').filter({ hasText: 'already got a refund in May' }).count(), 0, 'not a message bubble');
  await screenshot(ben, 'internal-note-colleague');

  // A message after the note: the note keeps its place (afterSeq) before it.
  await ana.getByTestId('note-toggle').uncheck();
  await anaBox.fill('Let me check the May refund.');
  await anaBox.press('Enter');
  await eventually(async () => (await shownMessages(cust)).some((m) => m.content === 'Let me check the May refund.'), { message: 'next message reaches the customer' });
  const order = await ben.locator('[data-testid="message"], [data-testid="note"]').evaluateAll((els) => els.map((el) => (el.getAttribute('data-testid') === 'note' ? 'note' : el.querySelector('.bubble')?.textContent ?? '')));
  const noteAt = order.indexOf('note');
  assert.ok(noteAt > order.indexOf('Hi Cleo, I handle refunds. Approved.') && noteAt < order.indexOf('Let me check the May refund.'), `note placed between the messages: ${JSON.stringify(order)}`);

  // The customer never sees it: not live, not after a reload, not over REST.
  assert.equal(await cust.getByTestId('note').count(), 0);
  assert.equal(await cust.getByText('already got a refund in May').count(), 0);
  await cust.reload();
  await cust.getByTestId('message').filter({ hasText: 'Let me check the May refund.' }).waitFor();
  assert.equal(await cust.getByText('already got a refund in May').count(), 0);
  const id = await chatId(ana);
  const customerView = await api(stack.url, await devToken(stack.url, { userId: 'cleo', name: 'Cleo', role: 'customer' }), 'GET', `/sessions/${id}/messages?limit=100`);
  assert.equal(customerView.status, 200);
  assert.ok(!customerView.body.items.some((m) => /refund in May/.test(m.content) && m.internal), 'no note among the messages');

  // Ben reloads: the join brings the note back.
  await ben.reload();
  await ben.getByTestId('my-chat-item').filter({ hasText: 'Cleo' }).click();
  await ben.getByTestId('note').filter({ hasText: 'already got a refund in May' }).waitFor();

  // Ben leaves: the customer sees it, and the chat leaves Ben's list.
  await ben.getByRole('button', { name: 'Leave chat' }).click();
  await cust.getByTestId('session-event').filter({ hasText: 'Ben left the chat' }).waitFor();
  await cust.getByText('You are chatting with Ana.').waitFor();
  await eventually(async () => (await ben.getByTestId('my-chat-item').filter({ hasText: 'Cleo' }).count()) === 0, { message: "the chat left Ben's list" });
  noErrors();
});

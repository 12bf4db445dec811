// End to end against a standalone server that gives chats out by itself
// (ASSIGNMENT=auto, POOL_CAPACITY=1): a new chat reaches an online agent's
// console with no click; waiting customers see their place in the queue move;
// an agent's status (online/away) decides who gets chats and shows in the
// directory; the transfer dialog lists the directory's agents and hands a
// chat over; assignments and transfers appear as system entries in both
// sides' timelines.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, devToken, eventually, openPage, screenshot, serverAndBrowser, signIn, startChat } from './harness.mjs';

const stack = serverAndBrowser({ env: { ASSIGNMENT: 'auto', POOL_CAPACITY: '1' } });
const pages = [];
let ana;
let carla;
let bo;

function noErrors() {
  const errors = pages.flatMap((p) => p.errors);
  assert.deepEqual(errors, [], 'no console errors or page errors');
}

async function open(name, viewport) {
  const opened = await openPage(stack.browser, { name, ...(viewport ? { viewport } : {}) });
  pages.push(opened);
  return opened;
}

/** The system entries of the conversation on screen, as their text. */
async function entries(page) {
  return page.getByTestId('session-event').evaluateAll((items) => items.map((li) => li.textContent ?? ''));
}

/** The id of the chat a console has open (from its address). */
async function chatId(page) {
  return new URL(page.url()).searchParams.get('chat');
}

const directoryAgent = (page, id) => page.locator(`[data-testid="directory-agent"][data-agent-id="${id}"]`);

test('auto-assignment: a new chat reaches the online agent with no click, with an entry on both sides', { timeout: 120_000 }, async () => {
  ana = await open('ana');
  carla = await open('carla', { width: 400, height: 780 });
  await signIn(ana.page, stack.url, { role: 'agent', name: 'Ana', userId: 'ana' });
  // Ana is online (the default) before the customer starts.
  await directoryAgent(ana.page, 'ana').and(ana.page.locator('[data-status="online"]')).waitFor();
  await ana.page.locator('[data-testid="status-control"][data-status="online"]').waitFor();

  await signIn(carla.page, stack.url, { role: 'customer', name: 'Carla', userId: 'carla' });
  await startChat(carla.page, { subject: 'Refund', message: 'Where is my refund?' });

  // No click: the chat is Ana's.
  await ana.page.getByTestId('my-chat-item').filter({ hasText: 'Carla' }).waitFor();
  await carla.page.getByText('You are chatting with Ana').waitFor();
  assert.equal(await ana.page.getByTestId('queue-item').count(), 0, 'nothing left in the queue');
  // Ana's load in the directory follows agent-updated: one open chat of one.
  await eventually(async () => (await directoryAgent(ana.page, 'ana').getByTestId('agent-load').textContent()) === '1/1', { message: "Ana's load 1/1" });

  // The assignment is a system entry in the customer's timeline, after message 1 (case aside: an
  // automatic assignment names the agent by id, and the customer has no directory to look the name up).
  const carlaEntry = carla.page.getByTestId('session-event').filter({ hasText: /Assigned to Ana/i });
  await carlaEntry.waitFor();
  assert.equal(await carlaEntry.getAttribute('data-after-seq'), '1');
  assert.equal(await carlaEntry.getAttribute('data-kind'), 'assigned');
  // ...and in the agent's once she opens the chat.
  await ana.page.getByTestId('my-chat-item').filter({ hasText: 'Carla' }).click();
  await ana.page.getByTestId('session-event').filter({ hasText: /Assigned to Ana/ }).waitFor();
  // A reload reads the entries over REST and the join: still exactly one.
  await carla.page.reload();
  await carla.page.getByText('You are chatting with Ana').waitFor();
  await carla.page.getByTestId('session-event').first().waitFor();
  assert.deepEqual(
    (await entries(carla.page)).map((t) => t.replace(/ · .*$/, '').toLowerCase()),
    ['assigned to ana'],
  );
  await screenshot(carla.page, 'customer-widget-assigned');
  noErrors();
});

test('queue position: with the only agent at capacity, the second customer waits as number 2, then moves to 1', { timeout: 120_000 }, async () => {
  // Ana holds one chat of her capacity of one: new chats wait.
  const dora = await devToken(stack.url, { userId: 'dora', name: 'Dora', role: 'customer' });
  const first = await api(stack.url, dora, 'POST', '/sessions', { subject: 'First in line', message: 'Hello' });
  assert.equal(first.status, 201);
  assert.equal(first.body.status, 'pending');

  const evan = await open('evan', { width: 400, height: 780 });
  await signIn(evan.page, stack.url, { role: 'customer', name: 'Evan', userId: 'evan' });
  // Before any queue-position arrives, the usual promise.
  await evan.page.getByText('We usually answer within a few minutes.').waitFor();
  await startChat(evan.page, { subject: 'Second in line', message: 'Anyone there?' });
  const position = evan.page.getByTestId('queue-position');
  await eventually(async () => /^You are number 2 in the queue( — (about \d+ minutes?|less than a minute))?$/.test((await position.textContent()) ?? ''), {
    message: 'Evan is number 2',
  });
  // The console lists both, oldest first, with how long each has waited.
  const queue = ana.page.getByTestId('queue-item');
  await eventually(async () => (await queue.count()) === 2, { message: 'two in the queue' });
  assert.match((await queue.nth(0).textContent()) ?? '', /Dora/);
  assert.match((await queue.nth(1).textContent()) ?? '', /Evan/);
  assert.match((await queue.nth(1).getByTestId('waiting-since').textContent()) ?? '', /Waiting since .+ · \d+ s/);
  await screenshot(evan.page, 'customer-widget-queue-position');

  // The first leaves the queue: Evan moves up.
  const closed = await api(stack.url, dora, 'POST', `/sessions/${first.body.id}/close`, {});
  assert.equal(closed.status, 200);
  await eventually(async () => /^You are number 1 in the queue/.test((await position.textContent()) ?? ''), { message: 'Evan is number 1' });
  await eventually(async () => (await queue.count()) === 1, { message: 'one left in the queue' });
  noErrors();
});

test('status: an away agent gets no chat, back online the oldest waiting chat is hers; a manual take puts the focus in the message box; a new agent shows in the directory', { timeout: 120_000 }, async () => {
  const a = ana.page;
  // Ana frees her seat while away: Evan's chat still waits.
  await a.getByRole('radio', { name: 'Away' }).click();
  await a.locator('[data-testid="status-control"][data-status="away"]').waitFor();
  await directoryAgent(a, 'ana').and(a.locator('[data-status="away"]')).waitFor();
  const carlaSession = (await api(stack.url, await devToken(stack.url, { userId: 'carla', name: 'Carla', role: 'customer' }), 'GET', '/sessions?status=active')).body.items[0];
  await a.getByTestId('my-chat-item').filter({ hasText: 'Carla' }).click();
  await a.getByRole('button', { name: 'Transfer' }).click();
  await a.getByRole('radio', { name: 'Back to a queue' }).check();
  const dialog = a.getByRole('dialog');
  assert.equal(await dialog.getByTestId('pool-picker').inputValue(), 'default');
  await dialog.getByRole('button', { name: 'Transfer' }).click();
  await eventually(async () => (await a.getByTestId('queue-item').count()) === 2, { message: "Carla's chat back in the queue" });
  await eventually(async () => (await directoryAgent(a, 'ana').getByTestId('agent-load').textContent()) === '0/1', { message: "Ana's load 0/1" });
  // Carla's chat went back to the queue: its wait starts now, and it keeps its place (created first).
  assert.match((await a.getByTestId('queue-item').nth(0).textContent()) ?? '', /Carla/);
  assert.match((await a.getByTestId('queue-item').nth(0).getByTestId('waiting-since').textContent()) ?? '', /· \d s$/);
  await carla.page.getByTestId('session-event').filter({ hasText: 'Transferred to the default queue by Ana' }).or(carla.page.getByTestId('session-event').filter({ hasText: 'Returned to the queue' })).first().waitFor();

  // Online again: the oldest waiting chat (Carla's) is hers with no click.
  await a.getByRole('radio', { name: 'Online' }).click();
  await a.locator('[data-testid="status-control"][data-status="online"]').waitFor();
  await a.getByTestId('my-chat-item').filter({ hasText: 'Carla' }).waitFor();
  const again = await api(stack.url, await devToken(stack.url, { userId: 'ana', name: 'Ana', role: 'agent' }), 'GET', `/sessions/${carlaSession.id}`);
  assert.equal(again.body.agentId, 'ana');

  // Evan still waits (Ana is at capacity): a manual take is not bounded by it, and puts the focus in the message box.
  await a.getByRole('button', { name: 'Take chat with Evan' }).click();
  await a.getByRole('heading', { name: /Evan/ }).waitFor();
  await eventually(async () => a.evaluate(() => document.activeElement?.getAttribute('aria-describedby') !== null && document.activeElement?.tagName === 'TEXTAREA'), {
    message: 'focus in the message box after taking',
  });
  await a.keyboard.type('Hello Evan');
  await a.keyboard.press('Enter');
  await eventually(async () => (await a.getByTestId('message').filter({ hasText: 'Hello Evan' }).count()) === 1, { message: 'typed straight into the box' });

  // Bo arrives: Ana sees him in the directory, online with nothing to do.
  bo = await open('bo');
  await signIn(bo.page, stack.url, { role: 'agent', name: 'Bo', userId: 'bo' });
  await eventually(async () => (await directoryAgent(a, 'bo').getByTestId('agent-load').textContent()) === '0/1', { message: "Bo listed with 0/1 on Ana's console" });
  assert.equal(await directoryAgent(a, 'bo').getAttribute('data-status'), 'online');
  noErrors();
});

test('transfer: the picker lists the directory with status and load, and hands the chat over', { timeout: 120_000 }, async () => {
  const a = ana.page;
  await a.getByTestId('my-chat-item').filter({ hasText: 'Carla' }).click();
  await a.getByRole('heading', { name: /Carla/ }).waitFor();
  // A link from the customer, and a word from Ana before she hands over.
  await api(stack.url, await devToken(stack.url, { userId: 'carla', name: 'Carla', role: 'customer' }), 'POST', `/sessions/${await chatId(a)}/messages`, {
    content: 'My order: https://shop.example/orders/42 <script>window.injected = 1</script> javascript:alert(1)',
    clientMsgId: 'carla-link',
  });
  const agentBox = a.getByRole('textbox', { name: 'Message' });
  await agentBox.fill('Bo will take over from here.');
  await agentBox.press('Enter');
  // Stored: sent, or already read by Carla, whose widget is open.
  await eventually(async () => ['sent', 'read'].includes(await a.getByTestId('message').filter({ hasText: 'Bo will take over' }).getAttribute('data-state')), {
    message: "Ana's message stored",
  });
  const opener = a.getByRole('button', { name: 'Transfer' });
  await opener.click();
  const dialog = a.getByRole('dialog');
  const picker = dialog.getByTestId('agent-picker');
  await eventually(async () => (await picker.locator('option', { hasText: 'Bo — online · 0/1 chats' }).count()) === 1, { message: 'Bo listed with status and load' });
  // Ana herself is not offered.
  assert.equal(await picker.locator('option', { hasText: 'Ana' }).count(), 0);

  // The dialog keeps the focus: Tab from its last control comes back to its first, Escape closes it.
  await dialog.getByRole('button', { name: 'Transfer' }).focus();
  await a.keyboard.press('Tab');
  assert.equal(await a.evaluate(() => !!document.activeElement?.closest('[role="dialog"]')), true, 'focus stays in the dialog');
  await a.keyboard.press('Shift+Tab');
  assert.equal(await a.evaluate(() => !!document.activeElement?.closest('[role="dialog"]')), true, 'focus stays in the dialog backwards');
  await a.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached' });
  assert.equal(await a.evaluate(() => document.activeElement?.textContent), 'Transfer', 'focus back on the opener');

  await opener.click();
  await eventually(async () => (await picker.locator('option', { hasText: 'Bo — online' }).count()) === 1, { message: 'Bo listed again' });
  await picker.selectOption('bo');
  await dialog.getByRole('button', { name: 'Transfer' }).click();
  await a.getByText('No chat selected').waitFor();
  await bo.page.getByTestId('my-chat-item').filter({ hasText: 'Carla' }).waitFor();
  // The directory follows: Bo holds one, Ana is left with Evan's.
  await eventually(async () => (await directoryAgent(a, 'bo').getByTestId('agent-load').textContent()) === '1/1', { message: "Bo's load 1/1" });
  await eventually(async () => (await directoryAgent(a, 'ana').getByTestId('agent-load').textContent()) === '1/1', { message: "Ana's load 1/1" });
  // Both sides' timelines say so.
  await carla.page.getByTestId('session-event').filter({ hasText: /Transferred to Bo by Ana/ }).waitFor();
  await bo.page.getByTestId('my-chat-item').filter({ hasText: 'Carla' }).click();
  await bo.page.getByTestId('session-event').filter({ hasText: /Transferred to Bo by Ana/ }).waitFor();
  // Ana's messages look like another agent's to Bo, not like the customer's or his own.
  const b = bo.page;
  await b.getByTestId('message').filter({ hasText: 'Bo will take over' }).waitFor();
  assert.equal(await b.getByTestId('message').filter({ hasText: 'Bo will take over' }).getAttribute('data-sender'), 'other-agent');
  assert.equal(await b.getByTestId('message').filter({ hasText: 'My order' }).getAttribute('data-sender'), 'customer');
  // The link is an anchor opening elsewhere; the markup stayed text and ran nothing.
  const link = b.getByTestId('message').filter({ hasText: 'My order' }).locator('a');
  assert.equal(await link.count(), 1);
  assert.equal(await link.getAttribute('href'), 'https://shop.example/orders/42');
  assert.equal(await link.getAttribute('target'), '_blank');
  assert.equal(await link.getAttribute('rel'), 'noopener noreferrer nofollow');
  assert.match((await b.getByTestId('message').filter({ hasText: 'My order' }).locator('.bubble').textContent()) ?? '', /<script>window.injected = 1<\/script> javascript:alert\(1\)$/);
  assert.equal(await b.evaluate(() => window.injected), undefined);
  await bo.page.getByRole('textbox', { name: 'Message' }).fill('');
  await screenshot(b, 'agent-console-routing');
  noErrors();
});

test('admin: opens any chat by id and closes it; both sides show who closed it', { timeout: 120_000 }, async () => {
  const sam = await open('sam');
  await signIn(sam.page, stack.url, { role: 'admin', name: 'Sam', userId: 'sam' });
  const id = await chatId(bo.page);
  await sam.page.goto(`${stack.url}/console?chat=${encodeURIComponent(id)}`);
  await sam.page.getByRole('heading', { name: /Carla/ }).waitFor();
  // Sam is not Carla's agent, yet may transfer and close.
  await sam.page.getByRole('button', { name: 'Transfer' }).waitFor();
  await sam.page.getByRole('button', { name: 'Close', exact: true }).click();
  await sam.page.getByLabel(/Reason/).fill('Handled elsewhere');
  await sam.page.getByRole('button', { name: 'Close chat' }).click();
  await carla.page.getByTestId('closed-note').waitFor();
  // Neither side has Sam in a directory of agents: a supervisor closed it.
  await carla.page.getByTestId('session-event').filter({ hasText: /Closed by a supervisor/ }).waitFor();
  await bo.page.getByTestId('session-event').filter({ hasText: /Closed by a supervisor/ }).waitFor();
  await sam.page.getByText('No chat selected').waitFor();
  noErrors();
});

// End to end against the real standalone server: the supervisor's tables on
// an admin's dashboard. A customer starts a chat → it shows as waiting → an
// agent takes it → the row shows the agent and the agent's load is 1 → Open
// leads to the console → the admin transfers it to another agent, then
// closes it from the table → the row goes.
// Then the pool filter, the stale marker when answers stop coming, and the
// polling's pace.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { api, devToken, eventually, openPage, screenshot, serverAndBrowser, signIn, waitConnected } from './harness.mjs';

const stack = serverAndBrowser();
const pages = [];
let admin;
/** When each request of the supervisor view started (ms), from sign-in until the admin leaves the dashboard. */
const viewRequests = [];
let measuring = true;

function noErrors() {
  const errors = pages.flatMap((p) => p.errors);
  assert.deepEqual(errors, [], 'no console errors or page errors');
}

const UPDATE_TIMEOUT = 8000;

function chatRow(page, sessionId) {
  return page.locator(`[data-testid="supervisor-chat-row"][data-session-id="${sessionId}"]`);
}

function agentRow(page, agentId) {
  return page.locator(`[data-testid="supervisor-agent-row"][data-agent-id="${agentId}"]`);
}

/** An agent of the given pools, through the sign-in page's extra options (the harness signs agents into `default`). */
async function signInAgentOfPools(page, baseUrl, { name, userId, pools }) {
  await page.goto(`${baseUrl}/`);
  await page.getByRole('radio', { name: /^Agent/ }).check();
  await page.getByLabel('Your name').fill(name);
  await page.getByText('More options').click();
  await page.getByLabel('User id').fill(userId);
  await page.getByLabel('Pools (comma separated)').fill(pools.join(', '));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/console');
  await waitConnected(page);
}

async function text(locator) {
  return ((await locator.textContent()) ?? '').replace(/\s+/g, ' ').trim();
}

test('supervisor: a chat waits, is taken, opened, transferred and closed from the table', { timeout: 180_000 }, async () => {
  admin = await openPage(stack.browser, { name: 'admin' });
  const agent = await openPage(stack.browser, { name: 'agent' });
  const second = await openPage(stack.browser, { name: 'second agent' });
  pages.push(admin, agent, second);
  const s = admin.page;
  const a = agent.page;
  s.on('request', (request) => {
    if (measuring && new URL(request.url()).pathname === '/api/chat/supervisor') viewRequests.push(Date.now());
  });

  await signIn(s, stack.url, { role: 'admin', name: 'Sam Supervisor', userId: 'sam' });
  const chats = s.getByTestId('supervisor-chats');
  const agents = s.getByTestId('supervisor-agents');
  await chats.waitFor();
  await agents.waitFor();
  // Real tables, with headers scoped for assistive technology.
  assert.equal(await chats.evaluate((t) => t.tagName), 'TABLE');
  assert.ok((await chats.locator('th[scope="col"]').count()) >= 6);
  assert.ok((await agents.locator('th[scope="col"]').count()) >= 5);

  await signIn(a, stack.url, { role: 'agent', name: 'Ada Agent', userId: 'ada' });
  await signIn(second.page, stack.url, { role: 'agent', name: 'Ben Agent', userId: 'ben' });
  const ada = agentRow(s, 'ada');
  const ben = agentRow(s, 'ben');
  await ben.waitFor({ timeout: UPDATE_TIMEOUT });
  await ada.waitFor({ timeout: UPDATE_TIMEOUT });
  await eventually(async () => (await ada.getAttribute('data-status')) === 'online', { timeout: UPDATE_TIMEOUT, message: 'agent online' });
  assert.match(await text(ada.getByTestId('supervisor-agent-load')), /^0 \/ \d+$/);

  // 1. A customer starts a chat: a waiting row within a few seconds.
  const dora = await devToken(stack.url, { userId: 'dora', name: 'Dora Customer', role: 'customer' });
  const created = await api(stack.url, dora, 'POST', '/sessions', { subject: 'Lost parcel', message: 'My parcel never came.' });
  assert.equal(created.status, 201);
  const id = created.body.id;
  const row = chatRow(s, id);
  await row.waitFor({ timeout: UPDATE_TIMEOUT });
  assert.equal(await row.getAttribute('data-state'), 'waiting');
  assert.equal(await text(row.getByTestId('supervisor-chat-agent')), 'waiting');
  assert.match(await text(row), /Dora Customer/);
  assert.match(await text(row), /Lost parcel/);
  assert.match(await text(row.getByTestId('supervisor-chat-for')), /^waiting for \d+:\d\d$/);
  assert.equal(await text(row.getByTestId('supervisor-chat-unread')), '—');
  // The wait ticks between answers.
  const waitedFirst = await text(row.getByTestId('supervisor-chat-for'));
  await eventually(async () => (await text(row.getByTestId('supervisor-chat-for'))) !== waitedFirst, { timeout: 5000, message: 'the wait ticks' });

  // 2. The agent takes it: the row shows the agent, the agent table a load of 1.
  await a.getByRole('button', { name: 'Take chat with Dora Customer' }).click();
  await a.getByTestId('my-chat-item').filter({ hasText: 'Dora Customer' }).waitFor();
  await eventually(async () => (await row.getAttribute('data-state')) === 'active', { timeout: UPDATE_TIMEOUT, message: 'row active' });
  assert.equal(await text(row.getByTestId('supervisor-chat-agent')), 'Ada Agent');
  assert.match(await text(row.getByTestId('supervisor-chat-for')), /^active for \d+:\d\d$/);
  await eventually(async () => /^1 \/ \d+$/.test(await text(ada.getByTestId('supervisor-agent-load'))), { timeout: UPDATE_TIMEOUT, message: 'agent load 1' });
  // A message the agent has not read yet is counted: the customer writes while the agent looks elsewhere.
  await a.goto(`${stack.url}/dashboard`);
  await waitConnected(a);
  const sent = await api(stack.url, dora, 'POST', `/sessions/${id}/messages`, { content: 'Any news?', clientMsgId: 'sup-e2e-1' });
  assert.equal(sent.status, 201);
  await eventually(async () => Number(await text(row.getByTestId('supervisor-chat-unread'))) >= 1, { timeout: UPDATE_TIMEOUT, message: 'unread by agent counted' });
  await chats.scrollIntoViewIfNeeded();
  await screenshot(s, 'supervisor');
  await s.setViewportSize({ width: 360, height: 780 });
  await chats.scrollIntoViewIfNeeded();
  await screenshot(s, 'supervisor-360');
  await s.setViewportSize({ width: 1280, height: 800 });

  // 3. Open leads to the chat in the console (the dashboard's polling ends there; a new one starts on coming back).
  measuring = false;
  await row.getByRole('link', { name: 'Open the chat with Dora Customer' }).click();
  await s.waitForURL(`**/console?chat=${id}`);
  await s.getByRole('heading', { name: /Dora Customer/ }).waitFor();
  await s.getByRole('link', { name: 'Dashboard' }).click();
  await s.waitForURL('**/dashboard');
  await row.waitFor({ timeout: UPDATE_TIMEOUT });

  // 4. The admin hands it to Ben: the row and both agents' loads follow.
  await row.getByRole('button', { name: 'Transfer the chat with Dora Customer' }).click();
  const transfer = s.getByRole('dialog', { name: 'Transfer chat' });
  await transfer.waitFor();
  await transfer.getByTestId('agent-picker').selectOption('ben');
  await transfer.getByRole('button', { name: 'Transfer', exact: true }).click();
  await transfer.waitFor({ state: 'detached' });
  await s.getByTestId('supervisor-notice').filter({ hasText: 'now with Ben Agent' }).waitFor();
  await eventually(async () => (await text(row.getByTestId('supervisor-chat-agent'))) === 'Ben Agent', { timeout: UPDATE_TIMEOUT, message: 'row shows the new agent' });
  await eventually(
    async () => /^1 \/ \d+$/.test(await text(ben.getByTestId('supervisor-agent-load'))) && /^0 \/ \d+$/.test(await text(ada.getByTestId('supervisor-agent-load'))),
    { timeout: UPDATE_TIMEOUT, message: 'loads follow the transfer' },
  );

  // 5. The admin closes it from the table, with a reason: the row goes.
  await row.getByRole('button', { name: 'Close the chat with Dora Customer' }).click();
  const dialog = s.getByRole('dialog', { name: 'Close the chat with Dora Customer?' });
  await dialog.waitFor();
  // No reason, no close: the customer is owed one.
  await dialog.getByRole('button', { name: 'Close chat', exact: true }).click();
  await dialog.getByRole('alert').filter({ hasText: 'Say why' }).waitFor();
  await dialog.getByLabel('Reason (the customer sees it)').fill('Parcel found, closing for the team');
  await dialog.getByRole('button', { name: 'Close chat', exact: true }).click();
  await dialog.waitFor({ state: 'detached' });
  await row.waitFor({ state: 'detached', timeout: UPDATE_TIMEOUT });
  await s.getByTestId('supervisor-notice').filter({ hasText: 'Dora Customer' }).waitFor();
  const after = await api(stack.url, dora, 'GET', `/sessions/${id}`);
  assert.equal(after.body.status, 'closed');
  // The server's next answers agree: no row comes back, and the agent's load is 0 again.
  await eventually(async () => /^0 \/ \d+$/.test(await text(ben.getByTestId('supervisor-agent-load'))), { timeout: UPDATE_TIMEOUT, message: 'agent load back to 0' });
  assert.equal(await row.count(), 0);
  noErrors();
});

test('supervisor: the pool filter shows one pool\'s chats and agents', { timeout: 120_000 }, async () => {
  const s = admin.page;
  const billingAgent = await openPage(stack.browser, { name: 'billing agent' });
  pages.push(billingAgent);
  await signInAgentOfPools(billingAgent.page, stack.url, { name: 'Cleo Billing', userId: 'cleo', pools: ['billing'] });
  const eve = await devToken(stack.url, { userId: 'eve', name: 'Eve Customer', role: 'customer' });
  const inBilling = await api(stack.url, eve, 'POST', '/sessions', { subject: 'Refund', pool: 'billing', message: 'Refund please' });
  assert.equal(inBilling.status, 201);
  const inDefault = await api(stack.url, eve, 'POST', '/sessions', { subject: 'Hello', message: 'Hi there' });
  assert.equal(inDefault.status, 201);

  const billingRow = chatRow(s, inBilling.body.id);
  const defaultRow = chatRow(s, inDefault.body.id);
  await billingRow.waitFor({ timeout: UPDATE_TIMEOUT });
  await defaultRow.waitFor({ timeout: UPDATE_TIMEOUT });
  await agentRow(s, 'cleo').waitFor({ timeout: UPDATE_TIMEOUT });

  const filter = s.getByTestId('supervisor-pool');
  await filter.locator('option[value="billing"]').waitFor({ state: 'attached', timeout: UPDATE_TIMEOUT });
  await filter.selectOption('billing');
  await defaultRow.waitFor({ state: 'detached', timeout: UPDATE_TIMEOUT });
  await billingRow.waitFor({ timeout: UPDATE_TIMEOUT });
  assert.equal(await text(billingRow.locator('td').nth(1)), 'billing');
  assert.deepEqual(await s.getByTestId('supervisor-agent-row').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-agent-id'))), ['cleo']);
  assert.match(await text(s.getByTestId('supervisor-chats').locator('caption')), /in billing$/);

  await filter.selectOption('');
  await defaultRow.waitFor({ timeout: UPDATE_TIMEOUT });
  assert.equal(await billingRow.count(), 1);
  await agentRow(s, 'ada').waitFor({ timeout: UPDATE_TIMEOUT });
  noErrors();
});

test('supervisor: a stale marker when answers stop, gone when they come back', { timeout: 120_000 }, async () => {
  const s = admin.page;
  await s.getByTestId('supervisor-chats').waitFor();
  assert.equal(await s.getByTestId('supervisor-stale').count(), 0);
  // The browser logs each refused request; those are the point here.
  admin.tolerate((message) => /Failed to load resource: the server responded with a status of 503/.test(message));
  await s.route('**/api/chat/supervisor**', (route) =>
    route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: { code: 'unavailable', message: 'try again' } }) }),
  );
  await s.getByTestId('supervisor-error').waitFor({ timeout: UPDATE_TIMEOUT });
  await s.getByTestId('supervisor-stale').waitFor({ timeout: 12_000 });
  assert.match(await text(s.getByTestId('supervisor-stale')), /^Stale: no update for \d+ s$/);
  await s.unroute('**/api/chat/supervisor**');
  await s.getByTestId('supervisor-stale').waitFor({ state: 'detached', timeout: UPDATE_TIMEOUT });
  await s.getByTestId('supervisor-error').waitFor({ state: 'detached', timeout: UPDATE_TIMEOUT });
  admin.tolerate(null);
  noErrors();
});

test('supervisor: one request at most every 2 s', () => {
  assert.ok(viewRequests.length >= 5, `enough requests seen (${viewRequests.length})`);
  // The request events reach the test a little late or early: allow 150 ms.
  const gaps = viewRequests.slice(1).map((t, i) => t - viewRequests[i]);
  assert.ok(Math.min(...gaps) >= 1850, `smallest gap between two requests: ${Math.min(...gaps)} ms`);
});

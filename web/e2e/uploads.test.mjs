// Uploads from the message box, end to end against the real server: a
// throttled upload shows its progress bar moving up to 100; a file over
// ATTACHMENT_MAX_BYTES and one of a type the server does not take are
// refused with a clear reason; an upload under way can be cancelled, and
// the next message then carries nothing.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openPage, serverAndBrowser, signIn } from './harness.mjs';
import { png, startAndTake } from './fixtures.mjs';

const MAX_BYTES = 3_000_000;
const stack = serverAndBrowser({ env: { ATTACHMENT_MAX_BYTES: String(MAX_BYTES) } });
const pages = [];
let customer;

function noErrors() {
  const errors = pages.flatMap((p) => p.errors);
  assert.deepEqual(errors, [], 'no console errors or page errors');
}

/** Records every progress value the upload rows show, from the page itself. */
async function recordProgress(page) {
  await page.evaluate(() => {
    window.__progress = [];
    const seen = window.__progress;
    new MutationObserver(() => {
      for (const row of document.querySelectorAll('[data-testid="upload"]')) seen.push(`${row.getAttribute('data-phase')}:${row.getAttribute('data-progress')}`);
    }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-progress', 'data-phase'] });
  });
}

test('an image goes up with its progress shown', { timeout: 180_000 }, async () => {
  const agent = await openPage(stack.browser, { name: 'agent' });
  customer = await openPage(stack.browser, { name: 'customer', viewport: { width: 420, height: 800 } });
  pages.push(agent, customer);
  const a = agent.page;
  const c = customer.page;
  await signIn(a, stack.url, { role: 'agent', name: 'Alice Agent', userId: 'alice' });
  await signIn(c, stack.url, { role: 'customer', name: 'Fiona Files', userId: 'fiona' });
  await startAndTake(c, a, { customerName: 'Fiona Files', subject: 'Broken screen', message: 'My screen shows stripes.' });
  // The file goes up when picked, before any message is sent; a throttled
  // upload (about 1 MB/s) lets the bar be seen moving.
  const cdp = await customer.context.newCDPSession(c);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 1_000_000 });
  await recordProgress(c);
  const image = png({ width: 64, height: 48, padTo: 2_000_000 });
  await c.getByTestId('file-input').setInputFiles({ name: 'stripes.png', mimeType: 'image/png', buffer: image });
  await c.getByTestId('upload-progress').waitFor({ timeout: 10_000 });
  await c.locator('[data-testid="upload"][data-phase="done"]').waitFor({ timeout: 30_000 });
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  const progress = await c.evaluate(() => window.__progress);
  const partial = progress.filter((p) => /^uploading:(\d+)$/.test(p) && Number(p.split(':')[1]) > 0 && Number(p.split(':')[1]) < 100);
  assert.ok(partial.length > 0, `progress between 0 and 100 was shown (saw ${[...new Set(progress)].join(', ')})`);
  assert.ok(progress.includes('done:100'), 'the upload ends at 100');
  // Removed once up: the message box is back as it was.
  await c.getByRole('button', { name: 'Remove stripes.png' }).click();
  await c.getByTestId('uploads').waitFor({ state: 'detached' });
  noErrors();
});

test('too large, a refused type and a cancelled upload say so and send nothing', { timeout: 120_000 }, async () => {
  const c = customer.page;
  const box = c.getByRole('textbox', { name: 'Message' });

  // The browser logs the refusals below itself; the test expects them.
  customer.tolerate((text) => /Failed to load resource: the server responded with a status of (413|400)/.test(text));
  // Over ATTACHMENT_MAX_BYTES: the server's 413 in words.
  await c.getByTestId('file-input').setInputFiles({ name: 'huge.png', mimeType: 'image/png', buffer: png({ padTo: MAX_BYTES + 200_000 }) });
  const tooLarge = c.locator('[data-testid="upload"][data-phase="failed"]').filter({ hasText: 'huge.png' });
  await tooLarge.waitFor({ timeout: 30_000 });
  assert.match(await tooLarge.getByTestId('upload-error').textContent(), /^Too large/);
  await tooLarge.getByRole('button', { name: 'Remove huge.png' }).click();

  // A type the server does not take.
  await c.getByTestId('file-input').setInputFiles({ name: 'archive.zip', mimeType: 'application/zip', buffer: Buffer.from('PK\x03\x04 not really a zip') });
  const refused = c.locator('[data-testid="upload"][data-phase="failed"]').filter({ hasText: 'archive.zip' });
  await refused.waitFor();
  assert.match(await refused.getByTestId('upload-error').textContent(), /not accepted/);
  await refused.getByRole('button', { name: 'Remove archive.zip' }).click();

  // Cancelled while under way (a slow upload): the row goes and nothing is sent with the next message.
  const cdp = await customer.context.newCDPSession(c);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 200_000 });
  await c.getByTestId('file-input').setInputFiles({ name: 'slow.png', mimeType: 'image/png', buffer: png({ padTo: 2_000_000 }) });
  await c.getByTestId('upload-progress').waitFor();
  await c.getByRole('button', { name: 'Cancel slow.png' }).click();
  await c.getByTestId('uploads').waitFor({ state: 'detached' });
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await box.fill('Never mind the file');
  await box.press('Enter');
  const sent = c.getByTestId('message').filter({ hasText: 'Never mind the file' });
  await sent.waitFor();
  assert.equal(await sent.getByTestId('attachment').count(), 0);
  customer.tolerate(null);
  noErrors();
});

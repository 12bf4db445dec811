// Files in messages, end to end against the real server: the customer
// sends an image with text, and the agent sees it inline (fetched with the
// token into a blob URL) and opens it full size; the agent sends a text file
// alone, with no words, and the customer gets a download link that saves it
// under its name with its bytes.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { eventually, openPage, screenshot, serverAndBrowser, signIn } from './harness.mjs';
import { png, startAndTake } from './fixtures.mjs';

const stack = serverAndBrowser();
const pages = [];

function noErrors() {
  const errors = pages.flatMap((p) => p.errors);
  assert.deepEqual(errors, [], 'no console errors or page errors');
}

test('an image shows inline on the other side; a file alone is a download', { timeout: 180_000 }, async () => {
  const agent = await openPage(stack.browser, { name: 'agent' });
  const customer = await openPage(stack.browser, { name: 'customer', viewport: { width: 420, height: 800 } });
  pages.push(agent, customer);
  const a = agent.page;
  const c = customer.page;
  await signIn(a, stack.url, { role: 'agent', name: 'Alice Agent', userId: 'alice' });
  await signIn(c, stack.url, { role: 'customer', name: 'Fiona Files', userId: 'fiona' });
  await startAndTake(c, a, { customerName: 'Fiona Files', subject: 'Broken screen', message: 'My screen shows stripes.' });

  const image = png({ width: 64, height: 48 });
  await c.getByTestId('file-input').setInputFiles({ name: 'stripes.png', mimeType: 'image/png', buffer: image });
  await c.locator('[data-testid="upload"][data-phase="done"]').waitFor({ timeout: 30_000 });

  const box = c.getByRole('textbox', { name: 'Message' });
  await box.fill('Here is a photo');
  await box.press('Enter');
  await c.getByTestId('uploads').waitFor({ state: 'detached' });

  // The agent sees the image inline, decoded from the bytes fetched with the token.
  const agentMessage = a.getByTestId('message').filter({ hasText: 'Here is a photo' });
  const thumb = agentMessage.getByTestId('attachment-thumbnail');
  await thumb.waitFor();
  await eventually(async () => thumb.evaluate((img) => img.complete && img.naturalWidth === 64 && img.naturalHeight === 48), { message: 'the thumbnail decoded at 64×48' });
  assert.match(await thumb.getAttribute('src'), /^blob:/);
  // The sender sees it inline too.
  await c.getByTestId('message').filter({ hasText: 'Here is a photo' }).getByTestId('attachment-thumbnail').waitFor();
  await screenshot(a, 'attachment-inline-agent');
  await agentMessage.getByRole('button', { name: 'Open image stripes.png' }).click();
  const full = a.getByTestId('attachment-full');
  await full.waitFor();
  assert.equal(await full.evaluate((img) => img.naturalWidth), 64);
  await a.getByRole('dialog').getByRole('button', { name: 'Close' }).click();

  // The agent sends a text file alone, no words: the customer gets a download link.
  const notes = Buffer.from('Step 1: restart.\nStep 2: update the driver.\n');
  await a.getByTestId('file-input').setInputFiles({ name: 'steps.txt', mimeType: 'text/plain', buffer: notes });
  await a.locator('[data-testid="upload"][data-phase="done"]').waitFor();
  await a.getByRole('button', { name: 'Send' }).click();
  const link = c.getByTestId('attachment').filter({ hasText: 'steps.txt' });
  await link.waitFor();
  assert.equal(await link.getAttribute('data-kind'), 'file');
  const [download] = await Promise.all([c.waitForEvent('download'), link.getByRole('button', { name: /steps\.txt/ }).click()]);
  assert.equal(download.suggestedFilename(), 'steps.txt');
  const saved = await download.path();
  assert.equal(await readFile(saved, 'utf8'), notes.toString('utf8'));
  noErrors();
});


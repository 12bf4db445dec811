// Files and page tricks for the browser tests of attachments, reactions,
// ticks and colleagues: a real PNG made here (padded to a size when asked),
// a chat started and taken, and a page made to look hidden to the app.

import { deflateSync } from 'node:zlib';
import { eventually, shownMessages, signIn, startChat } from './harness.mjs';

function crc32(buf) {
  let c;
  let crc = 0xffffffff;
  for (let n = 0; n < buf.length; n++) {
    c = (crc ^ buf[n]) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/**
 * A PNG of `width` × `height` in one colour; `padTo` adds a private ancillary
 * chunk so the file weighs about that many bytes (decoders skip it).
 */
export function png({ width = 40, height = 30, rgb = [220, 40, 40], padTo = 0 } = {}) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // truecolour
  const row = Buffer.alloc(1 + width * 3);
  for (let x = 0; x < width; x++) row.set(rgb, 1 + x * 3);
  const raw = Buffer.concat(Array.from({ length: height }, () => row));
  const parts = [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr)];
  const base = 8 + 25 + 12 + deflateSync(raw).length + 12;
  if (padTo > base + 12) parts.push(chunk('teXt', Buffer.concat([Buffer.from('Comment\0'), Buffer.alloc(padTo - base - 12 - 8, 0x61)])));
  parts.push(chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0)));
  return Buffer.concat(parts);
}

/** The customer starts a chat and the agent takes it; both see it open. */
export async function startAndTake(customerPage, agentPage, { customerName, subject, message }) {
  await startChat(customerPage, { subject, message });
  await agentPage.getByRole('button', { name: `Take chat with ${customerName}` }).click();
  await agentPage.getByRole('heading', { name: new RegExp(customerName) }).waitFor();
  await customerPage.getByText('You are chatting with').waitFor();
  await eventually(async () => (await shownMessages(agentPage)).some((m) => m.content === message), { message: 'first message on the agent side' });
}

export { signIn };

/** Makes the page report itself hidden (or visible again), as a background tab does. */
export async function setPageHidden(page, hidden) {
  await page.evaluate((h) => {
    if (h) {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    } else {
      delete document.visibilityState;
      delete document.hidden;
    }
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
}

/** The tick shown on my message with this text ('sent', 'delivered', 'read'), or null. */
export async function tickOf(page, text) {
  const item = page.getByTestId('message').filter({ hasText: text });
  if ((await item.count()) !== 1) return null;
  const tick = item.getByTestId('message-tick');
  if ((await tick.count()) !== 1) return null;
  return tick.getAttribute('aria-label');
}

// End-to-end harness: starts the real standalone server (serving web/dist),
// launches Debian's Chromium through playwright-core, signs users in, and
// watches every page for console errors. Used by the *.test.mjs files here.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const webDir = path.resolve(here, '..');
export const repoRoot = path.resolve(webDir, '..');
export const screenshotDir = path.join(here, 'screenshots');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The server binary; built (without rebuilding the UI) when missing. */
export function serverBinary() {
  const fromEnv = process.env.CHAT_SERVER_BIN || process.env.SUPPORT_CHAT_BIN;
  if (fromEnv) return fromEnv;
  const targetDir = process.env.CARGO_TARGET_DIR || path.join(repoRoot, 'target');
  const bin = path.join(targetDir, 'debug', 'support-chat');
  if (!existsSync(bin)) {
    const built = spawnSync('cargo', ['build', '--bin', 'support-chat'], {
      cwd: repoRoot,
      stdio: 'inherit',
      env: { ...process.env, CHAT_SKIP_WEB_BUILD: '1' },
    });
    if (built.status !== 0) throw new Error('cargo build --bin support-chat failed');
  }
  return bin;
}

export function assertWebBuilt() {
  if (!existsSync(path.join(webDir, 'dist', 'index.html'))) {
    throw new Error('web/dist is missing: run `npm run build` first (`npm run e2e` does)');
  }
}

export function tempDataDir() {
  return mkdtempSync(path.join(tmpdir(), 'support-chat-e2e-'));
}

/**
 * Starts the standalone server; resolves once it prints its address.
 * `port` 0 picks a free one; `env` adds settings (say `{ ASSIGNMENT: 'auto' }`).
 * Returns { url, port, stop() }.
 */
export async function startServer({ port = 0, dataDir, env: extraEnv = {} } = {}) {
  const bin = serverBinary();
  const env = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    CHAT_DATA_DIR: dataDir,
    WEB_DIR: path.join(webDir, 'dist'),
    RATE_LIMIT_PER_SEC: '0',
    RUST_LOG: process.env.RUST_LOG || 'warn',
    ...extraEnv,
  };
  delete env.JWT_SECRET;
  delete env.REDIS_URL;
  delete env.DATABASE_URL;
  const child = spawn(bin, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
    if (stderr.length > 20000) stderr = stderr.slice(-20000);
  });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not start in time\n${stderr}`)), 30000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const match = out.match(/support-chat listening on (http:\/\/[\d.]+:\d+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening\n${stderr}`));
    });
  });
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  return {
    url,
    port: Number(new URL(url).port),
    get stderr() {
      return stderr;
    },
    async stop() {
      if (exited) return;
      const done = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15000);
      await done;
      clearTimeout(timer);
    },
  };
}

export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install Debian's chromium (apt-get install -y chromium) or set CHROMIUM_PATH`);
  }
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

/**
 * The server (on a data directory of its own) and the browser that the tests
 * of one file share: started before the first test, stopped after the last.
 * Its fields are set once `before` has run, so read them inside the tests.
 * `env` adds server settings for the whole file (kept on a restart).
 */
export function serverAndBrowser({ env = {} } = {}) {
  const shared = {
    server: null,
    browser: null,
    dataDir: null,
    get url() {
      return shared.server.url;
    },
    /** After `server.stop()`: the same port and data, so pages come back to the address they know. */
    async startServerAgain() {
      shared.server = await startServer({ port: shared.server.port, dataDir: shared.dataDir, env });
      return shared.server;
    },
  };
  before(async () => {
    assertWebBuilt();
    shared.dataDir = tempDataDir();
    shared.server = await startServer({ dataDir: shared.dataDir, env });
    shared.browser = await launchBrowser();
  });
  after(async () => {
    await shared.browser?.close();
    await shared.server?.stop();
    removeDir(shared.dataDir);
  });
  return shared;
}

/**
 * A page in its own browser context (its own storage: its own user), with
 * every console error and uncaught exception recorded in `errors`.
 * `tolerate(text)` may excuse messages the browser itself logs (used only
 * while the test has taken the server or the network away on purpose).
 */
export async function openPage(browser, { viewport = { width: 1280, height: 800 }, name = 'page' } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors = [];
  const state = { tolerate: null };
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    if (state.tolerate && state.tolerate(text)) return;
    errors.push(`[${name}] console error: ${text}`);
  });
  page.on('pageerror', (error) => errors.push(`[${name}] page error: ${error.message}`));
  return {
    context,
    page,
    errors,
    /** Excuse browser-level network errors while `fn` is set; pass null to stop. */
    tolerate(fn) {
      state.tolerate = fn;
    },
  };
}

/** Network failures the browser logs by itself when the server or the network is away. */
export function isBrowserNetworkError(text) {
  return /WebSocket connection to '.*' failed|net::ERR_(CONNECTION_REFUSED|INTERNET_DISCONNECTED|CONNECTION_RESET|EMPTY_RESPONSE|NETWORK_CHANGED)/.test(text);
}

/** Signs in through the sign-in page with the development token endpoint. */
export async function signIn(page, baseUrl, { role, name, userId }) {
  await page.goto(`${baseUrl}/`);
  const label = role === 'customer' ? 'Customer' : role === 'agent' ? 'Agent' : 'Supervisor';
  await page.getByRole('radio', { name: new RegExp(`^${label}`) }).check();
  await page.getByLabel('Your name').fill(name);
  if (userId) {
    await page.getByText('More options').click();
    await page.getByLabel('User id').fill(userId);
  }
  await page.getByRole('button', { name: 'Sign in' }).click();
  const home = role === 'customer' ? '/support' : role === 'agent' ? '/console' : '/dashboard';
  await page.waitForURL(`**${home}`);
  await waitConnected(page);
}

/** Through the start form, as a customer does it (scripted users POST /sessions instead). */
export async function startChat(page, { subject, message }) {
  await page.getByLabel('Subject').fill(subject);
  await page.getByLabel('Your message').fill(message);
  await page.getByRole('button', { name: 'Start chat' }).click();
}

export async function waitConnected(page, timeout = 20000) {
  await page.locator('[data-testid="connection-status"][data-status="connected"]').first().waitFor({ timeout });
}

/** A token for scripted users (REST calls made by the test itself). */
export async function devToken(baseUrl, body) {
  const response = await fetch(`${baseUrl}/api/dev/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`dev token: ${response.status} ${await response.text()}`);
  return (await response.json()).token;
}

export async function api(baseUrl, token, method, pathName, body) {
  const response = await fetch(`${baseUrl}/api/chat${pathName}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** Polls `fn` until it returns a truthy value (or stops throwing). */
export async function eventually(fn, { timeout = 15000, interval = 100, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let lastError;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${message}${lastError ? `: ${lastError.message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** The conversation as shown: [{ content, state, seq, mine }]. */
export async function shownMessages(page) {
  return page.locator('[data-testid="message"]').evaluateAll((items) =>
    items.map((li) => ({
      content: li.querySelector('.bubble')?.textContent ?? '',
      state: li.getAttribute('data-state'),
      seq: li.getAttribute('data-seq') ? Number(li.getAttribute('data-seq')) : null,
      mine: li.getAttribute('data-mine') === 'true',
    })),
  );
}

export async function screenshot(page, name) {
  mkdirSync(screenshotDir, { recursive: true });
  const file = path.join(screenshotDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  return file;
}

export function removeDir(dir) {
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    // best effort
  }
}

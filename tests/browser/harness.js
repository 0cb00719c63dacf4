// Test harness for the dashboard: starts the real switchboard binary on a fresh SQLite file,
// mints tokens, opens plain-WebSocket clients whose every wait has a timeout, and launches
// Debian's headless Chromium through playwright-core (no browser download: CHROMIUM or
// /usr/bin/chromium). The server and tokens come from tests/support/server.js, shared with
// the Socket.IO suite.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import WebSocket from 'ws';
import { root, token } from '../support/server.js';

export { SECRET, root, startServer, token } from '../support/server.js';
export const WAIT_MS = 10000;
/** Where screenshots go (a CI artefact); under the target dir, never committed. */
export const artifacts = join(
  process.env.CARGO_TARGET_DIR || join(root, 'target'),
  'browser-artifacts',
);

/** A connected `/ws` client: `.next(event)` waits for an event, `.closed` resolves with the
 * close code, `.call(event, data)` sends with an ack and waits for it. */
export async function wsUser(url, sub, options = {}) {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/ws?token=${token(sub, options)}`);
  const queue = [];
  const waiters = [];
  ws.on('message', (raw) => {
    queue.push(JSON.parse(raw.toString()));
    waiters.splice(0).forEach((wake) => wake());
  });
  ws.closed = new Promise((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  ws.next = async (event, timeout = WAIT_MS) => {
    const deadline = Date.now() + timeout;
    for (;;) {
      const index = queue.findIndex((e) => e.event === event);
      if (index >= 0) return queue.splice(0, index + 1).pop().data;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for "${event}"`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  };
  let acks = 0;
  ws.call = async (event, data) => {
    const ack = ++acks;
    ws.send(JSON.stringify({ event, data, ack }));
    for (;;) {
      const reply = await ws.next('ack');
      if (reply.ack === ack) return reply;
    }
  };
  ws.welcome = await ws.next('connected');
  return ws;
}

/** Debian's Chromium, headless. `--no-sandbox` because CI containers run as root. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox'],
  });
}

/** A fresh page on the dashboard that records console errors and CSP violations. */
export async function openDashboard(browser, url, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport, reducedMotion: 'reduce' });
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (m) => {
    // A refused token's 401/403 (and the favicon's 404) are logged as failed loads: expected.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
      page.problems.push(m.text());
    }
  });
  page.on('pageerror', (e) => page.problems.push(String(e)));
  await page.goto(`${url}/admin/`);
  return page;
}

/** Signs in with `jwt` through the form, as an operator would (keyboard only). */
export async function signIn(page, jwt) {
  await page.getByLabel('Admin token').fill(jwt);
  await page.getByLabel('Admin token').press('Enter');
}

export function screenshotPath(name) {
  mkdirSync(artifacts, { recursive: true });
  return join(artifacts, name);
}

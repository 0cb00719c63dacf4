// The /admin/ dashboard in a real headless Chromium against the real binary: sign in with an
// admin token, watch a user connect and disconnect, see room messages raise the rate chart,
// disconnect a user from the page, remove a room member from the page, send failed webhook
// events again from the page, and a non-admin token refused. Every wait is on an event or a
// selector with a timeout, never a fixed sleep.
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launchBrowser, openDashboard, screenshotPath, signIn, startServer, token, wsUser,
  WAIT_MS } from './harness.js';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

const admin = () => token('ops', { role: 'ADMIN', username: 'Operator' });
const user = (id) => `li.user[data-user-id="${id}"]`;

/** Opens the dashboard and signs in as an admin; resolves once the first snapshot is shown. */
async function adminPage(viewport) {
  const page = await openDashboard(browser, server.url, viewport);
  await signIn(page, admin());
  await page.locator('#dashboard').waitFor({ state: 'visible', timeout: WAIT_MS });
  return page;
}

test('a non-admin token is refused with a message, and no data is shown', async () => {
  const page = await openDashboard(browser, server.url);
  await signIn(page, token('mallory', { role: 'USER' }));
  const error = page.locator('#login-error');
  await page.waitForFunction(() => document.getElementById('login-error').textContent !== '',
    null, { timeout: WAIT_MS });
  assert.match(await error.textContent(), /refused.*role "USER".*ADMIN_ROLES/);
  assert.equal(await page.locator('#dashboard').isHidden(), true);
  assert.equal(await page.locator('#users > li').count(), 0);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'the token is forgotten');

  await signIn(page, 'not-a-jwt');
  await page.waitForFunction(() => /invalid token/.test(
    document.getElementById('login-error').textContent), null, { timeout: WAIT_MS });
  assert.equal(await page.locator('#dashboard').isHidden(), true);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('an admin sees a user connect and disconnect live, with the reason in the history', async () => {
  const page = await adminPage();
  assert.equal(await page.evaluate(() => sessionStorage.length), 1, 'kept for this tab');

  const alice = await wsUser(server.url, 'alice');
  const item = page.locator(user('alice'));
  await item.waitFor({ timeout: WAIT_MS });
  assert.match(await item.locator('.connections').textContent(), /ws #\d+ from 127\.0\.0\.1:\d+/);
  await page.waitForFunction(() => /Online: alice/.test(
    document.getElementById('presence-news').textContent), null, { timeout: WAIT_MS });

  alice.close();
  await item.waitFor({ state: 'detached', timeout: WAIT_MS });
  await page.waitForFunction(
    () => [...document.querySelectorAll('#history tbody tr')].some((tr) =>
      tr.textContent.includes('alice') && tr.textContent.includes('client_closed')),
    null, { timeout: WAIT_MS });
  assert.deepEqual(page.problems, []);

  // Logging out forgets the token and hides the data.
  await page.getByRole('button', { name: 'Log out' }).click();
  assert.equal(await page.locator('#dashboard').isHidden(), true);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  await page.context().close();
});

test('room messages raise the message-rate chart', async () => {
  const page = await adminPage();
  const bob = await wsUser(server.url, 'bob');
  await bob.call('join-room', { room: 'lobby' });
  await page.locator('#rooms li.room', { hasText: 'lobby' }).waitFor({ timeout: WAIT_MS });

  const peak = () => page.locator('#rate-messages').getAttribute('data-peak').then(Number);
  assert.equal(await peak(), 0, 'nothing sent yet');
  for (let i = 0; i < 5; i++) {
    const ack = await bob.call('room-message', { room: 'lobby', message: `hello ${i}` });
    assert.equal(ack.ok, true);
  }
  await page.waitForFunction(
    () => Number(document.getElementById('rate-messages').dataset.peak) > 0,
    null, { timeout: WAIT_MS });
  assert.ok(await peak() > 0);
  assert.ok(await page.locator('#chart-messages svg polyline').count() === 1, 'a line is drawn');
  assert.match(await page.locator('#chart-messages-title').textContent(),
    /Messages per second: [\d.]+ now, peak [1-9][\d.]* over the last 5 minutes/);

  bob.close();
  await bob.closed;
  await page.context().close();
});

test('disconnecting a user from the page closes their connection', async () => {
  const page = await adminPage();
  const carol = await wsUser(server.url, 'carol');
  const item = page.locator(user('carol'));
  await item.waitFor({ timeout: WAIT_MS });

  await item.getByRole('button', { name: 'Disconnect carol' }).click();
  assert.equal(await carol.closed, 1008, 'closed by the server as kicked');
  await item.waitFor({ state: 'detached', timeout: WAIT_MS });
  await page.waitForFunction(() => /carol: 1 connection\(s\) closed/.test(
    document.getElementById('action-status').textContent), null, { timeout: WAIT_MS });
  await page.waitForFunction(
    () => [...document.querySelectorAll('#history tbody tr')].some((tr) =>
      tr.textContent.includes('carol') && tr.textContent.includes('kicked')),
    null, { timeout: WAIT_MS });
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test('removing a member from the rooms view ends the membership live', async () => {
  const page = await adminPage();
  const dave = await wsUser(server.url, 'dave');
  await dave.call('join-room', { room: 'ops-room' });
  const room = page.locator('#rooms li.room[data-room="ops-room"]');
  await room.waitFor({ timeout: WAIT_MS });
  assert.match(await room.locator('.policy').textContent(),
    /join: anyone · post: members · history: all/);
  const member = room.locator('li[data-user-id="dave"]');
  await member.waitFor({ timeout: WAIT_MS });

  await member.getByRole('button', { name: 'Remove dave from ops-room' }).click();
  const left = await dave.next('left-room');
  assert.equal(left.room, 'ops-room');
  assert.equal(left.reason, 'removed');
  // Its only member gone, the room leaves the list.
  await room.waitFor({ state: 'detached', timeout: WAIT_MS });
  await page.waitForFunction(() => /dave: removed from ops-room/.test(
    document.getElementById('rooms-status').textContent), null, { timeout: WAIT_MS });
  assert.deepEqual(page.problems, []);
  dave.close();
  await dave.closed;
  await page.context().close();
});

test('failed webhook events are listed with the endpoint\'s health and sent again from the page',
  async () => {
    // The application's receiver: 500 until `accept`, then it takes the events.
    let accept = false;
    const received = [];
    let arrived;
    const bothArrived = new Promise((resolve) => { arrived = resolve; });
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => { body += chunk; });
      req.on('end', () => {
        if (!accept) {
          res.writeHead(500).end();
          return;
        }
        const parsed = JSON.parse(body);
        received.push(...(parsed.events ?? [parsed]));
        if (received.length >= 2) arrived();
        res.writeHead(204).end();
      });
    });
    await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const hooked = await startServer({
      WEBHOOK_URL: `http://127.0.0.1:${receiver.address().port}/hook`,
      WEBHOOK_SECRET: 'whsec_YnJvd3Nlci10ZXN0LWtleQ==',
      WEBHOOK_GIVE_UP_SECS: '1',
    });
    // Failing takes the give-up second and the retries; the panel reads every 5 s.
    const SLOW_MS = 30000;
    let erin;
    try {
      const page = await openDashboard(browser, hooked.url);
      await signIn(page, admin());
      await page.locator('#dashboard').waitFor({ state: 'visible', timeout: WAIT_MS });
      // Erin's connection makes two events (session.opened, user.online), both refused.
      erin = await wsUser(hooked.url, 'erin');
      const endpoint = page.locator('li.webhook[data-endpoint="default"]');
      const failedIs = (n) => page.waitForFunction((want) => Number(document.querySelector(
        'li.webhook[data-endpoint="default"] [data-figure="failed"]')?.textContent) === want,
      n, { timeout: SLOW_MS });
      await failedIs(2);
      assert.match(await endpoint.locator('.health').textContent(), /failing, \d+ in a row/);
      assert.match(await endpoint.locator('.backlog').textContent(), /HTTP 500/);
      assert.match(await endpoint.locator('.url').textContent(), /^http:\/\/127\.0\.0\.1:\d+\/hook$/);
      const rows = endpoint.locator('table.failed tbody tr');
      assert.equal(await rows.count(), 2);
      assert.match(await rows.first().textContent(), /HTTP 500/);
      assert.equal(await page.locator('#webhooks-panel').textContent().then((t) => t.includes('whsec_')),
        false, 'never the secret');
      await page.locator('#webhooks-panel').screenshot({ path: screenshotPath('admin-webhooks.png') });

      // The receiver is back: one event by its button, then the rest with "Send all again".
      accept = true;
      const id = await rows.first().getAttribute('data-event-id');
      await endpoint.getByRole('button', { name: `Send event #${id} to default again` }).click();
      await failedIs(1);
      await page.waitForFunction(() => /default: 1 event\(s\) sent again/.test(
        document.getElementById('webhooks-status').textContent), null, { timeout: WAIT_MS });
      await endpoint.getByRole('button', { name: 'Send all 1 failed events of default again' })
        .click();
      await failedIs(0);
      assert.equal(await rows.count(), 0, 'no failed event is listed');

      let timer;
      await Promise.race([bothArrived, new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`received only ${JSON.stringify(received)}`)),
          SLOW_MS);
      })]).finally(() => clearTimeout(timer));
      assert.deepEqual(received.map((e) => e.type).sort(), ['session.opened', 'user.online']);
      await page.waitForFunction(() => document.querySelector(
        'li.webhook[data-endpoint="default"] .health')?.textContent === 'ok', null,
      { timeout: SLOW_MS });
      assert.deepEqual(page.problems, []);
      await page.context().close();
    } finally {
      erin?.close();
      await hooked.stop();
      receiver.close();
    }
  });

test('a screenshot of a busy dashboard, on a desktop and on a phone', async () => {
  const people = [];
  for (const [id, name, role] of [['alice', 'Alice', 'USER'], ['bob', 'Bob', 'USER'],
    ['dora', 'Dora', 'SUPPORT']]) {
    const ws = await wsUser(server.url, id, { username: name, role });
    await ws.call('join-room', { room: 'lobby' });
    people.push(ws);
  }
  await people[2].call('join-room', { room: 'support' });
  // Carol is offline (kicked above): this waits in her queue.
  await people[0].call('send-message', { message: 'see you', to: 'carol' });

  const page = await adminPage({ width: 1280, height: 900 });
  await page.locator(user('dora')).waitFor({ timeout: WAIT_MS });
  // A few snapshots of traffic, so the charts have a shape: each round sends some messages
  // (and now and then opens a short connection), then waits for the next snapshot.
  const samples = () => page.locator('#chart-messages svg').getAttribute('data-samples')
    .then(Number);
  for (let round = 0; round < 8; round++) {
    const seen = await samples();
    for (let i = 0; i <= (round * 3) % 5; i++) {
      await people[i % 3].call('room-message', { room: 'lobby', message: `m${round}.${i}` });
    }
    if (round % 3 === 1) (await wsUser(server.url, `visitor${round}`)).close();
    await page.waitForFunction(
      (n) => Number(document.querySelector('#chart-messages svg').dataset.samples) > n,
      seen, { timeout: WAIT_MS });
  }
  assert.ok(Number(await page.locator('#rate-messages').getAttribute('data-peak')) > 0);
  assert.ok(Number(await page.locator('#rate-connections').getAttribute('data-peak')) > 0);
  await page.locator('#queues tbody tr', { hasText: 'carol' }).waitFor({ timeout: WAIT_MS });

  for (const [name, viewport] of [['admin-dashboard.png', { width: 1280, height: 900 }],
    ['admin-dashboard-phone.png', { width: 375, height: 812 }]]) {
    await page.setViewportSize(viewport);
    // Nothing wider than the viewport: readable without sideways scrolling (the history
    // table scrolls inside its own region).
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= viewport.width, `page is ${width}px wide at ${viewport.width}px`);
    await page.screenshot({ path: screenshotPath(name), fullPage: true });
  }
  assert.deepEqual(page.problems, []);
  await page.context().close();
  for (const ws of people) ws.close();
});

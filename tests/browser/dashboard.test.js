// The /admin/ dashboard in a real headless Chromium against the real binary: sign in with an
// admin token, watch a user connect and disconnect, see room messages raise the rate chart,
// disconnect a user from the page, remove a room member from the page, and a non-admin token
// refused. Every wait is on an event or a selector with a timeout, never a fixed sleep.
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

// The README's webhook receiver recipe (receiver.mjs, run as a process as a user would run it)
// against the real gateway: the release binary (SWITCHBOARD_BIN, or target/release) on a fresh
// SQLite file, with WEBHOOK_URL pointing at the recipe and a secret made the way the README
// says. The recipe checks every request with the Standard Webhooks library and prints each
// event it acts on; what it printed is what these tests read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Webhook } from 'standardwebhooks';
import { SECRET, root, startServer } from '../../tests/support/server.js';

const here = dirname(fileURLToPath(import.meta.url));
const binary = process.env.SWITCHBOARD_BIN || join(root, 'target', 'release', 'switchboard');
const WAIT_MS = 10000;

/** Resolves once `probe()` is truthy (polled, never a fixed sleep). */
async function until(probe, what, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A secret as the README makes it: `echo "whsec_$(head -c 32 /dev/urandom | base64)"`. */
const newSecret = () => `whsec_${randomBytes(32).toString('base64')}`;

/** receiver.mjs as a process on a free port; `lines` is what it printed, `events` parsed. */
async function startReceiver(secret) {
  const child = spawn(process.execPath, [join(here, 'receiver.mjs')], {
    env: { PATH: process.env.PATH, WEBHOOK_SECRET: secret, PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = [];
  createInterface({ input: child.stdout }).on('line', (line) => lines.push(line));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const listening = await until(() => lines.find((l) => l.startsWith('listening on port ')), 'the receiver to listen');
  const port = Number(listening.split(' ').at(-1));
  return {
    url: `http://127.0.0.1:${port}/`,
    lines,
    /** `event <id> <type> <userId>` lines, in the order the recipe acted on them. */
    events: () =>
      lines
        .filter((l) => l.startsWith('event '))
        .map((l) => {
          const [, id, type, userId] = l.split(' ');
          return { id: Number(id), type, userId };
        }),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** A token minted by the gateway's own `switchboard token`, with the server's secret. */
function mint(sub, username, dir) {
  return execFileSync(binary, ['token', '--sub', sub, '--username', username], {
    cwd: dir,
    env: { PATH: process.env.PATH, JWT_SECRET: SECRET, DATABASE_URL: `sqlite://${join(dir, 'test.db')}` },
  })
    .toString()
    .trim();
}

/** POSTs `event` to the receiver, signed with `secret` by the Standard Webhooks library. */
async function post(receiver, secret, event) {
  const body = JSON.stringify(event);
  const id = `evt_${event.id}`;
  const now = new Date();
  const response = await fetch(receiver.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
      'webhook-signature': new Webhook(secret).sign(id, now, body),
    },
    body,
  });
  return response.status;
}

const userEvent = (id, type, userId) => ({
  id,
  type,
  timestamp: new Date().toISOString(),
  data: { user: { userId, username: userId, role: 'USER' }, sessionId: 1, transport: 'ws', node: 'test', reason: 'client_closed' },
});

test('the recipe verifies the gateway\'s signed events and sees a user come online, then go offline', async () => {
  // Arrange: the recipe, and the gateway sending to it.
  const secret = newSecret();
  const receiver = await startReceiver(secret);
  const server = await startServer({ WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: secret });
  try {
    const token = mint('alice', 'Alice', server.dir);

    // Act: alice connects over /ws, and leaves.
    const ws = new WebSocket(`${server.url.replace('http', 'ws')}/ws?token=${token}`);
    const frames = [];
    ws.onmessage = (e) => frames.push(JSON.parse(e.data));
    await until(() => frames.some((f) => f.event === 'connected'), 'connected');
    const closed = new Promise((resolve) => ws.addEventListener('close', resolve));
    ws.close();
    await closed;

    // Assert: the recipe acted on alice's online, then her offline, each once, and reacted.
    await until(() => receiver.lines.includes('Alice went offline (client_closed)'), 'the offline reaction');
    const presence = receiver.events().filter((e) => e.userId === 'alice' && e.type.startsWith('user.'));
    assert.deepEqual(presence.map((e) => e.type), ['user.online', 'user.offline']);
    assert.ok(presence[0].id < presence[1].id, 'ids follow the order of the facts');
    const types = receiver.events().map((e) => e.type);
    assert.ok(types.indexOf('user.online') < types.indexOf('session.opened'), `online before the session: ${types}`);
    assert.ok(types.indexOf('session.closed') < types.indexOf('user.offline'), `offline after the session: ${types}`);
    // Every request the gateway made passed the library's check (a refused one would count as
    // an error here, and be sent again).
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /switchboard_webhook_requests_total\{endpoint="default",result="ok"\} [1-9]/);
    assert.doesNotMatch(metrics, /switchboard_webhook_requests_total\{endpoint="default",result="error"\} [1-9]/);
  } finally {
    await server.stop();
    await receiver.stop();
  }
});

test('the recipe acts once on an event sent again, and refuses a request not signed with its secret', async () => {
  const secret = newSecret();
  const receiver = await startReceiver(secret);
  try {
    // A retried request repeats its events: acted on once.
    assert.equal(await post(receiver, secret, userEvent(7, 'user.offline', 'bob')), 204);
    assert.equal(await post(receiver, secret, userEvent(7, 'user.offline', 'bob')), 204);
    // Signed with another secret, or the body changed after signing: 401, not acted on.
    assert.equal(await post(receiver, newSecret(), userEvent(8, 'user.offline', 'mallory')), 401);
    const forged = await fetch(receiver.url, {
      method: 'POST',
      headers: {
        'webhook-id': 'evt_9',
        'webhook-timestamp': String(Math.floor(Date.now() / 1000)),
        'webhook-signature': new Webhook(secret).sign('evt_9', new Date(), '{"id":9}'),
      },
      body: JSON.stringify(userEvent(9, 'user.offline', 'mallory')),
    });
    assert.equal(forged.status, 401);
    // A last good event: once it is printed, everything before it has been.
    assert.equal(await post(receiver, secret, userEvent(10, 'user.online', 'carol')), 204);
    await until(() => receiver.events().some((e) => e.id === 10), 'the last event');
    assert.deepEqual(
      receiver.events().map((e) => `${e.id} ${e.type} ${e.userId}`),
      ['7 user.offline bob', '10 user.online carol'],
    );
    assert.equal(receiver.lines.filter((l) => l.endsWith('went offline (client_closed)')).length, 1);
  } finally {
    await receiver.stop();
  }
});

test('the README shows the recipe as receiver.mjs runs it', () => {
  const file = readFileSync(join(here, 'receiver.mjs'), 'utf8');
  const code = file.slice(file.indexOf('import '));
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
  const recipe = blocks.find((b) => b.includes("from 'standardwebhooks'"));
  assert.ok(recipe, 'README.md has the receiver recipe in a js block');
  assert.equal(recipe, code);
});

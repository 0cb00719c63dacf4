// PRESENCE_EVENTS over Socket.IO (docs/protocol.md section 9), with the official client: `diff`
// merges a window's changes into one presence-diff; `off` sends none while get-active-users
// answers. (/ws: tests/api/presence.rs.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sioUser } from './harness.js';

const ids = (users) => users.map((u) => u.userId);

test('PRESENCE_EVENTS=diff: one presence-diff per window, net changes only', async () => {
  const server = await startServer({ PRESENCE_EVENTS: 'diff', PRESENCE_DIFF_INTERVAL_MS: '1500' });
  try {
    const alice = await sioUser(server.url, 'alice');
    // Every connection gets the same diff: alice's own arrival included.
    assert.deepEqual(ids((await alice.events.next('presence-diff')).joins), ['alice']);
    // One window, opened by bob's arrival: dave comes and goes inside it.
    const bob = await sioUser(server.url, 'bob');
    const carol = await sioUser(server.url, 'carol');
    const dave = await sioUser(server.url, 'dave');
    dave.disconnect();
    const diff = await alice.events.next('presence-diff');
    assert.deepEqual(ids(diff.joins), ['bob', 'carol']);
    assert.deepEqual(ids(diff.leaves), []);
    assert.equal(diff.activeUsersCount, 3);
    assert.equal(typeof diff.timestamp, 'string');
    await alice.events.none('presence-diff');
    await alice.events.none('user-connected', 0);

    bob.disconnect();
    const left = await alice.events.next('presence-diff');
    assert.deepEqual(ids(left.leaves), ['bob']);
    assert.equal(left.activeUsersCount, 2);
    carol.disconnect();
    alice.disconnect();
  } finally {
    await server.stop();
  }
});

test('PRESENCE_EVENTS=off: no presence events; get-active-users still answers', async () => {
  const server = await startServer({ PRESENCE_EVENTS: 'off' });
  try {
    const alice = await sioUser(server.url, 'alice');
    const bob = await sioUser(server.url, 'bob');
    const carol = await sioUser(server.url, 'carol');
    carol.disconnect();
    // The server learns of carol's departure after her client moves on: ask until it has.
    let reply;
    for (let tries = 0; tries < 100; tries += 1) {
      reply = await alice.ack('get-active-users');
      if (reply.count === 2) break;
    }
    assert.deepEqual(ids(reply.users).sort(), ['alice', 'bob']);
    for (const name of ['user-connected', 'user-disconnected', 'presence-diff']) {
      await alice.events.none(name, 0);
    }
    await alice.events.none('user-disconnected');
    await alice.events.next('active-users');
    bob.disconnect();
    alice.disconnect();
  } finally {
    await server.stop();
  }
});

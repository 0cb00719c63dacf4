// Recovery across a crash: the server killed (SIGKILL) and started again on the same
// database and address. A receiver that was away meanwhile gets everything it missed through
// its cursor, and nothing twice; a sender's unacknowledged sends go out again after the
// restart, and every one is acknowledged once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, record, switchable, until } from './support.js';
import { TRANSPORTS, client, opener } from './clients.js';

for (const transport of TRANSPORTS) {
  test(`after a SIGKILL and a restart a client misses nothing and sees nothing twice (${transport})`, async () => {
    // Arrange: a receiver whose network the test controls, and a sender.
    const server = await startServer();
    const link = switchable(opener(transport));
    const receiver = client(server, 'receiver', transport, { link });
    const sender = client(server, 'sender', transport);
    const seen = record(receiver);
    const sent = record(sender);
    try {
      await until(() => seen.hasState('connected') && sent.hasState('connected'), 'both connected');
      const before = await Promise.all([1, 2, 3].map((n) => sender.sendMessage(`before ${n}`)));
      await until(() => seen.ids.length === 3, 'the first three live');

      // Act: the receiver loses its network, the server crashes; the sender sends while the
      // server is down (held by the client) and after it is back, all before the receiver returns.
      link.down = true;
      await server.stop('SIGKILL');
      await until(() => receiver.state.state === 'offline' && sender.state.state === 'offline', 'both offline');
      const during = [1, 2, 3].map((n) => sender.sendMessage(`during ${n}`));
      await server.restart();
      const after = [1, 2].map((n) => sender.sendMessage(`after ${n}`));
      const acked = [...before, ...(await Promise.all([...during, ...after]))];
      const statesBefore = seen.states.length;
      link.down = false;

      // Assert: every acknowledged message reached the receiver once, in order, through its
      // cursor (counted in `recovered`), and nothing reached it twice.
      const recovered = await until(() => seen.hasState('recovered', statesBefore), 'the receiver recovered', 15000);
      assert.equal(recovered.count, 5);
      assert.equal(recovered.complete, true);
      assert.deepEqual(seen.ids, acked.map((a) => a.id));
      assert.deepEqual(
        seen.named('broadcast-message').map((m) => m.message),
        ['before 1', 'before 2', 'before 3', 'during 1', 'during 2', 'during 3', 'after 1', 'after 2'],
      );
      assert.equal(receiver.lastMessageId, acked.at(-1).id);
      assert.deepEqual(seen.unknownFields, []);
    } finally {
      receiver.close();
      sender.close();
      await server.dispose();
    }
  });
}

for (const transport of TRANSPORTS) {
  test(`a graceful stop is heard as server_shutdown and the client comes back by itself (${transport})`, async () => {
    const server = await startServer();
    const returner = client(server, 'returner', transport);
    const seen = record(returner);
    try {
      await until(() => seen.hasState('connected'), 'connected');

      await server.stop('SIGTERM');
      const offline = await until(() => seen.hasState('offline'), 'offline');
      await server.restart();

      assert.equal(offline.reason, 'server_shutdown');
      const back = seen.states.length;
      await until(() => seen.hasState('connected', back), 'back', 15000);
      assert.equal((await returner.getActiveUsers()).count, 1);
    } finally {
      returner.close();
      await server.dispose();
    }
  });
}

test('a cursor kept in storage resumes a new client where the last one stopped (a reload)', async () => {
  const server = await startServer();
  const items = new Map();
  const storage = { get: (key) => items.get(key), set: (key, value) => void items.set(key, value) };
  const sender = client(server, 'poster', 'ws');
  const first = client(server, 'reloader', 'ws', { storage });
  const seenFirst = record(first);
  let second;
  try {
    await until(() => seenFirst.hasState('connected') && sender.state.state === 'connected', 'connected');
    const live = await sender.sendMessage('seen before the reload');
    await until(() => seenFirst.ids.includes(live.id), 'the live message');
    first.close();
    const missed = await sender.sendMessage('sent during the reload');

    second = client(server, 'reloader', 'ws', { storage });
    const seenSecond = record(second);
    const recovered = await until(() => seenSecond.hasState('recovered'), 'recovered');

    assert.equal(items.get('switchboard:lastMessageId'), String(missed.id));
    assert.equal(recovered.count, 1);
    assert.deepEqual(seenSecond.named('broadcast-message').map((m) => m.message), ['sent during the reload']);
  } finally {
    second?.close();
    sender.close();
    await server.dispose();
  }
});

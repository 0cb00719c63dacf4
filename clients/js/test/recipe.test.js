// The README's Socket.IO recipe, with the official socket.io-client alone: `auth` as a
// function (asked again on every reconnect, so it sends the current token and the last id
// seen, where a static object would send the first connection's cursor forever) and an
// `onAny` listener that records ids and drops those seen. Across a graceful restart, with
// messages published while the client is away, it misses nothing and sees nothing twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startServer, token, until } from './support.js';

/** The recipe, as in README.md ("Socket.IO recipe"). */
function recipeClient(url, currentToken, { reconnectionDelay }) {
  let lastSeen; // the highest id seen: the recovery cursor (keep it in localStorage to survive reloads)
  const seenIds = new Set();
  const handed = [];
  const socket = io(url, {
    auth: (cb) => cb({ token: currentToken(), lastMessageId: lastSeen }),
    // Test only: a fixed delay, so the messages below are published while it is away.
    reconnectionDelay,
    randomizationFactor: 0,
  });
  socket.onAny((event, data) => {
    if (typeof data?.id === 'number') {
      if (seenIds.has(data.id) || data.id <= (lastSeen ?? -1)) return; // a duplicate
      seenIds.add(data.id);
      lastSeen = data.id;
    }
    handed.push({ event, data });
  });
  return { socket, handed, lastSeen: () => lastSeen };
}

test('the Socket.IO recipe recovers what was published during a restart, once', async () => {
  // Arrange: the recipe client, and messages it sees live.
  const server = await startServer();
  const { socket, handed, lastSeen } = recipeClient(server.url, () => token('recipe'), { reconnectionDelay: 3000 });
  const messages = () => handed.filter((e) => e.event === 'broadcast-notification').map((e) => e.data.message);
  try {
    await until(() => handed.some((e) => e.event === 'connected'), 'connected');
    for (const n of [1, 2]) await server.rest('POST', '/websocket/broadcast', { message: `before ${n}` });
    await until(() => messages().length === 2, 'two live');
    const cursorBefore = lastSeen();

    // Act: a graceful restart; published while the client waits to come back.
    await server.stop('SIGTERM');
    await server.restart();
    for (const n of [1, 2, 3]) await server.rest('POST', '/websocket/broadcast', { message: `while away ${n}` });
    const connectsBefore = handed.filter((e) => e.event === 'connected').length;

    // Assert: back by itself, with the cursor of the moment, and everything once.
    await until(() => handed.filter((e) => e.event === 'connected').length > connectsBefore, 'back', 15000);
    await until(() => messages().length === 5, 'the missed three');
    assert.deepEqual(messages(), ['before 1', 'before 2', 'while away 1', 'while away 2', 'while away 3']);
    const complete = handed.filter((e) => e.event === 'sync-complete').at(-1)?.data;
    assert.equal(complete?.count, 3, 'replayed from the cursor of the moment');
    assert.ok(lastSeen() > cursorBefore);
  } finally {
    socket.close();
    await server.dispose();
  }
});

// The README's Socket.IO recipe, with the official socket.io-client alone: `auth` as a
// function (asked again on every reconnect, so it sends the current token and the last id
// seen, where a static object would send the first connection's cursor forever) and one
// `onAny` listener that drops the ids seen and hands the rest to the application's handlers.
// Across a graceful restart, with messages published while the client is away, it misses
// nothing, and a replay of what it has (`sync` from 0) reaches the application not at all,
// although a `socket.on` listener gets all of it again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startServer, token, until } from './support.js';

/** The recipe, as in README.md ("Socket.IO recipe"); `handed` is what the application got. */
function recipeClient(url, currentToken, { reconnectionDelay }) {
  let lastSeen; // the recovery cursor (the README keeps it in localStorage to survive reloads)
  const handed = [];
  const socket = io(url, {
    auth: (cb) => cb({ token: currentToken(), lastMessageId: lastSeen }),
    // Test only: a fixed delay, so the messages below are published while it is away.
    reconnectionDelay,
    randomizationFactor: 0,
  });
  const onMessage = { 'broadcast-notification': (m) => handed.push({ event: 'broadcast-notification', data: m }) };
  socket.onAny((event, data) => {
    if (typeof data?.id !== 'number') return;
    if (data.id <= (lastSeen ?? -1)) return; // seen already: a replay or a re-delivery repeats it
    lastSeen = data.id;
    onMessage[event]?.(data);
  });
  // Events without an id, with socket.on as usual.
  for (const event of ['connected', 'sync-complete']) socket.on(event, (data) => handed.push({ event, data }));
  // Not the recipe: what a socket.on listener of messages gets, repeats and all.
  const raw = [];
  socket.on('broadcast-notification', (m) => raw.push(m.id));
  return { socket, handed, raw, lastSeen: () => lastSeen };
}

test('the Socket.IO recipe recovers what was published during a restart, once', async () => {
  // Arrange: the recipe client, and messages it sees live.
  const server = await startServer();
  const { socket, handed, raw, lastSeen } = recipeClient(server.url, () => token('recipe'), { reconnectionDelay: 3000 });
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

    // A replay of everything it has: the application gets none of it again.
    const syncs = handed.filter((e) => e.event === 'sync-complete').length;
    socket.emit('sync', { since: 0 });
    await until(() => handed.filter((e) => e.event === 'sync-complete').length > syncs, 'the replay');
    assert.equal(raw.length, 10, 'socket.on got the five messages again');
    assert.equal(messages().length, 5);
  } finally {
    socket.close();
    await server.dispose();
  }
});

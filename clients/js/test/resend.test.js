// Resends without duplicates: a send whose connection is cut before its ack arrives goes out
// again on the next connection with the same `clientMsgId`; the server answers with the
// original's ack (`duplicate: true`) and delivers it once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, record, until } from './support.js';
import { TRANSPORTS, client } from './clients.js';

for (const transport of TRANSPORTS) {
  test(`a send cut off before its ack is resent with its key and stored once (${transport})`, async () => {
    // Arrange
    const server = await startServer();
    const receiver = client(server, 'reader', transport);
    const sender = client(server, 'writer', transport);
    const seen = record(receiver);
    const sent = record(sender);
    try {
      await until(() => seen.hasState('connected') && sent.hasState('connected'), 'both connected');

      // Act: the frame leaves, then the connection is cut before the ack can come back.
      const ack = sender.sendMessage('exactly once');
      sender.reconnect();
      const answered = await ack;

      // Assert: the resend was recognised, and the receiver saw one message.
      assert.equal(answered.duplicate, true, JSON.stringify(answered));
      assert.ok(sent.states.filter((s) => s.state === 'connected').length >= 2, 'the sender came back');
      const after = await sender.sendMessage('next');
      await until(() => seen.ids.includes(after.id), 'the next message');
      assert.deepEqual(seen.named('broadcast-message').map((m) => m.message), ['exactly once', 'next']);
      assert.deepEqual(seen.ids, [answered.id, after.id]);
    } finally {
      receiver.close();
      sender.close();
      await server.dispose();
    }
  });
}

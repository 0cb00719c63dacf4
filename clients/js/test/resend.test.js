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

      // Act: the send, then the connection cut in the same tick. Whether the frame left before
      // the cut is the transport's business (socket.io-client may still hold it when the
      // socket closes): either the server stored it and recognises the resend by its key
      // (`duplicate: true`, the original's ack), or it never saw it and stores the resend.
      // Delivered once either way; the first case is what this test is for, so the act is
      // repeated (at most 5 times) until it happened once.
      const texts = [];
      const ids = [];
      let recognised = 0;
      for (let attempt = 0; attempt < 5 && recognised === 0; attempt++) {
        const text = `exactly once ${attempt}`;
        texts.push(text);
        const ack = sender.sendMessage(text);
        sender.reconnect();
        const answered = await ack;
        ids.push(answered.id);
        if (answered.duplicate === true) recognised += 1;
      }

      // Assert: a resend was recognised, and the receiver saw each message once.
      assert.equal(recognised, 1, `no resend recognised in ${texts.length} cuts`);
      assert.ok(sent.states.filter((s) => s.state === 'connected').length >= 2, 'the sender came back');
      const after = await sender.sendMessage('next');
      await until(() => seen.ids.includes(after.id), 'the next message');
      assert.deepEqual(seen.named('broadcast-message').map((m) => m.message), [...texts, 'next']);
      assert.deepEqual(seen.ids, [...ids, after.id]);
    } finally {
      receiver.close();
      sender.close();
      await server.dispose();
    }
  });
}

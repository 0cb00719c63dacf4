// A catch-up longer than one page while live messages flow: the server replays 1,000 stored
// messages (plus the offline queue) on connect, ends with `sync-complete { more: true }` and
// releases the live messages it held, and the client asks for the next page. Live messages
// and the next pages then interleave; the client holds them until the last page and hands
// everything over once, in id order (a live message handed over first would move the cursor
// past the pages still to come, and they would be dropped as duplicates).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../dist/index.js';
import { startServer, token, until, switchable } from './support.js';

test('more than a page missed while live traffic flows: every message once, in id order', async () => {
  // Arrange: a receiver whose network the test controls.
  const server = await startServer();
  const link = switchable((url) => new WebSocket(url));
  const receiver = connect({
    url: server.url,
    token: token('reader'),
    WebSocket: link.open,
    backoff: { initialMs: 100, maxMs: 200 },
  });
  const ids = [];
  receiver.on('tick', (m) => ids.push(m.id));
  const publish = (n) => server.rest('POST', '/websocket/publish', { event: 'tick', data: { n }, everyone: true });
  try {
    await until(() => receiver.state.state === 'connected', 'connected');
    const acked = [(await publish(0)).id];
    await until(() => ids.length === 1, 'the first live');

    // Act: 2,300 messages while it is away (more than two pages), then more while it catches up.
    link.down = true;
    receiver.reconnect();
    await until(() => receiver.state.state === 'offline', 'offline');
    for (let n = 1; n <= 2300; n += 50) {
      const batch = await Promise.all(Array.from({ length: 50 }, (_, j) => publish(n + j)));
      acked.push(...batch.map((a) => a.id));
    }
    link.down = false;
    let live = true;
    const during = (async () => {
      for (let n = 5000; live; n += 1) acked.push((await publish(n)).id);
    })();
    await until(() => receiver.state.state === 'recovered', 'recovered', 20000);
    live = false;
    await during;

    // Assert: every acknowledged message once, in id order.
    await until(() => ids.at(-1) >= Math.max(...acked), 'the last one', 20000);
    const seen = new Set(ids);
    assert.deepEqual(acked.filter((id) => !seen.has(id)), [], 'none missed');
    assert.equal(seen.size, ids.length, 'none twice');
    assert.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]), 'in id order');
  } finally {
    receiver.close();
    await server.dispose();
  }
});

// The official socket.io-client against the real switchboard binary: a typical frontend's code
// unchanged (the README's Socket.IO example), every way to pass a token and every refusal, every
// event and payload field, a room shared with plain-WebSocket clients, recovery and the offline
// queue.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startServer, token, sioClient, sioUser, wsUser, WAIT_MS } from './harness.js';

let server;
before(async () => {
  server = await startServer({ RATE_LIMIT_PER_SEC: '1000', RATE_LIMIT_BURST: '1000' });
});
after(async () => {
  await server?.stop();
});

const isTimestamp = (s) => typeof s === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(s);

function assertUser(user, userId, sessions) {
  assert.equal(user.userId, userId);
  assert.equal(user.username, userId);
  assert.equal(user.role, 'USER');
  assert.equal(user.sessions, sessions);
  assert.ok(isTimestamp(user.connectedAt), user.connectedAt);
}

test("a typical frontend's code works unchanged (default transports)", async () => {
  const listener = await sioUser(server.url, 'frontend-listener');
  listener.emit('join-room', { room: 'general' });
  await listener.events.next('joined-room');

  // ---- a Socket.IO chat frontend's code, as is but for the URL and the token ----
  const seen = {};
  const socket = io(server.url, {
    auth: {
      token: token('frontend-user'),
    },
  });
  socket.on('connected', (data) => { seen.connected = data; });
  socket.emit('get-active-users');
  socket.on('active-users', (data) => { seen.activeUsers = data.users; });
  socket.emit('send-message', {
    message: 'Hello everyone!',
  });
  socket.on('broadcast-message', (data) => { seen.broadcast = `${data.from.username}: ${data.message}`; });
  socket.emit('join-room', { room: 'general' });
  socket.emit('room-message', {
    room: 'general',
    message: 'Hello room!',
  });
  // ------------------------------------------------------------------

  const broadcast = await listener.events.next('broadcast-message');
  assert.equal(broadcast.message, 'Hello everyone!');
  assert.equal(broadcast.from.userId, 'frontend-user');
  const roomMessage = await listener.events.next('room-message');
  assert.equal(roomMessage.message, 'Hello room!');
  assert.equal(roomMessage.room, 'general');
  assert.ok(Number.isInteger(roomMessage.id));
  // The listener's events can overtake the frontend socket's own replies (two connections): wait
  // for its `active-users`, which follows its `connected` on the same socket.
  const activeUsers = seen.activeUsers ?? await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no active-users in time')), WAIT_MS);
    socket.once('active-users', (data) => { clearTimeout(timer); resolve(data.users); });
  });
  assert.equal(seen.connected.user.userId, 'frontend-user');
  assert.ok(activeUsers.some((u) => u.userId === 'frontend-listener'));
  socket.disconnect();
  listener.disconnect();
});

test('the token is accepted from the auth object, the Authorization header and the query', async () => {
  const ways = {
    auth: { auth: { token: token('way-auth') } },
    header: { extraHeaders: { Authorization: `Bearer ${token('way-header')}` } },
    query: { query: { token: token('way-query') } },
  };
  for (const [way, options] of Object.entries(ways)) {
    const socket = await sioClient(server.url, options);
    const connected = await socket.events.next('connected');
    assert.equal(connected.user.userId, `way-${way}`, way);
    socket.disconnect();
  }
});

test('refusals reach the client as connect_error with the reason', async () => {
  const cases = [
    [{}, 'missing token'],
    [{ auth: { token: 'not-a-jwt' } }, 'invalid token'],
    [{ auth: { token: token('x', { secret: 'another-secret-another-secret!!' }) } }, 'invalid token: bad signature'],
    [{ auth: { token: token('x', { ttl: -3600 }) } }, 'token expired'],
    [{ auth: { token: token('x'), lastMessageId: 'soon' } }, 'lastMessageId must be a non-negative integer'],
  ];
  for (const [options, reason] of cases) {
    const socket = await sioClient(server.url, options);
    const error = await socket.events.next('connect_error');
    assert.ok(error.message.includes(reason), `${reason}: got ${error.message}`);
    socket.close();
  }
});

test('every event and payload field, with acks through the callback', async () => {
  const alice = await sioUser(server.url, 'ev-alice');
  const bob = await sioUser(server.url, 'ev-bob');
  assertUser(bob.welcome.user, 'ev-bob', 1);
  assert.ok(isTimestamp(bob.welcome.timestamp));
  assert.deepEqual(bob.welcome.rooms, []);
  const joined = await alice.events.next('user-connected');
  assertUser(joined.user, 'ev-bob', 1);
  assert.ok(joined.activeUsersCount >= 2);

  const users = await alice.ack('get-active-users');
  assert.equal(users.ok, true);
  const list = await alice.events.next('active-users');
  assert.equal(list.count, list.users.length);
  assert.ok(list.users.some((u) => u.userId === 'ev-bob'));

  const stats = await alice.ack('get-users-stats');
  assert.equal(stats.ok, true);
  const statsEvent = await alice.events.next('users-stats');
  assert.ok(statsEvent.totalUsers >= 2);
  const entry = statsEvent.connectionTimes.find((t) => t.userId === 'ev-alice');
  for (const field of ['connectedSeconds', 'totalConnectedSeconds', 'sessionsCount']) {
    assert.ok(Number.isInteger(entry[field]), field);
  }
  assert.ok(isTimestamp(entry.firstSeen) && isTimestamp(entry.connectedAt));

  const sent = await alice.ack('send-message', { message: 'psst', to: 'ev-bob' });
  assert.equal(sent.ok, true);
  assert.equal(sent.delivered, 1);
  assert.equal(sent.queued, false);
  const privateMessage = await bob.events.next('private-message');
  assert.equal(privateMessage.id, sent.id);
  assert.equal(privateMessage.message, 'psst');
  assertUser(privateMessage.from, 'ev-alice', 1);
  assert.ok(isTimestamp(privateMessage.timestamp));

  await alice.ack('join-room', { room: 'ev-room' });
  assert.deepEqual(await alice.events.next('joined-room'), { room: 'ev-room', message: 'Joined room ev-room' });
  await bob.ack('join-room', { room: 'ev-room' });
  const note = await alice.events.next('user-joined-room');
  assert.equal(note.room, 'ev-room');
  assertUser(note.user, 'ev-bob', 1);
  const roomAck = await alice.ack('room-message', { room: 'ev-room', message: 'hi room' });
  assert.equal(roomAck.delivered, 1);
  const roomMessage = await bob.events.next('room-message');
  assert.equal(roomMessage.id, roomAck.id);
  assert.equal(roomMessage.room, 'ev-room');
  await bob.ack('leave-room', { room: 'ev-room' });
  assert.equal((await bob.events.next('left-room')).room, 'ev-room');
  assert.equal((await alice.events.next('user-left-room')).user.userId, 'ev-bob');

  bob.disconnect();
  const left = await alice.events.next('user-disconnected');
  assert.equal(left.user.userId, 'ev-bob');
  assert.equal(left.user.username, 'ev-bob');
  alice.disconnect();
});

test('bad payloads get an error event and an ok:false ack; the connection stays', async () => {
  const alice = await sioUser(server.url, 'bad-alice');
  const cases = [
    ['send-message', 'hi', 'expects an object payload', 'bad_payload'],
    ['send-message', {}, 'missing field "message"', 'bad_payload'],
    ['send-message', { message: 5 }, '"message" must be a string', 'bad_payload'],
    ['send-message', { message: '' }, 'message must not be empty', 'bad_payload'],
    ['join-room', { room: 'bad room' }, 'invalid room name', 'bad_payload'],
    ['room-message', { room: 'nowhere', message: 'x' }, 'not a member of room "nowhere"', 'not_member'],
    ['send-message', { message: 'x', to: 'nobody-ever' }, 'unknown user "nobody-ever"', 'unknown_user'],
    ['sync', { since: -1 }, 'non-negative integer', 'bad_payload'],
    ['launch-rockets', {}, 'unknown event "launch-rockets"', 'unknown_event'],
  ];
  for (const [event, data, reason, code] of cases) {
    const ack = await alice.ack(event, data);
    assert.equal(ack.ok, false, event);
    assert.ok(ack.error.includes(reason), `${event}: ${ack.error}`);
    assert.equal(ack.code, code, event);
    const error = await alice.events.next('error');
    assert.equal(error.message, ack.error);
    assert.equal(error.code, code, event);
  }
  assert.equal((await alice.ack('get-active-users')).ok, true);
  alice.disconnect();
});

test('Socket.IO and /ws clients share rooms, presence and messages', async () => {
  const sio = await sioUser(server.url, 'mix-sio');
  const ws = await wsUser(server.url, 'mix-ws');
  assert.equal((await sio.events.next('user-connected')).user.userId, 'mix-ws');

  await sio.ack('join-room', { room: 'mixed' });
  ws.emitEvent('join-room', { room: 'mixed' });
  await ws.events.next('joined-room');
  assert.equal((await sio.events.next('user-joined-room')).user.userId, 'mix-ws');

  ws.emitEvent('room-message', { room: 'mixed', message: 'from ws' }, 1);
  const fromWs = await sio.events.next('room-message');
  assert.equal(fromWs.message, 'from ws');
  assert.equal(fromWs.from.userId, 'mix-ws');
  const wsAck = await ws.events.next('ack');
  assert.equal(wsAck.id, fromWs.id);

  const sioAck = await sio.ack('room-message', { room: 'mixed', message: 'from socket.io' });
  const fromSio = await ws.events.next('room-message');
  assert.equal(fromSio.message, 'from socket.io');
  assert.equal(fromSio.id, sioAck.id);
  // Same payload shape on both transports: compare the keys.
  assert.deepEqual(Object.keys(fromSio).sort(), Object.keys(fromWs).sort());

  const users = await sio.ack('get-active-users');
  assert.ok(users.users.some((u) => u.userId === 'mix-ws'));
  ws.close();
  assert.equal((await sio.events.next('user-disconnected')).user.userId, 'mix-ws');
  sio.disconnect();
});

test('reconnecting with auth.lastMessageId replays what was missed', async () => {
  const bob = await sioUser(server.url, 'rec-bob');
  const alice = await sioUser(server.url, 'rec-alice');
  const first = await alice.ack('send-message', { message: 'seen' });
  assert.equal((await bob.events.next('broadcast-message')).id, first.id);
  bob.disconnect();
  await alice.events.next('user-disconnected');

  const missed = await alice.ack('send-message', { message: 'missed' });
  const back = await sioClient(server.url, { auth: { token: token('rec-bob'), lastMessageId: first.id } });
  await back.events.next('connected');
  const replayed = await back.events.next('broadcast-message');
  assert.equal(replayed.id, missed.id);
  assert.equal(replayed.message, 'missed');
  const done = await back.events.next('sync-complete');
  assert.equal(done.lastMessageId, missed.id);
  assert.equal(done.complete, true);

  // And `sync` on demand, through the ack too.
  const sync = await back.ack('sync', { since: first.id });
  assert.equal(sync.count, 1);
  assert.equal(sync.lastMessageId, missed.id);
  back.disconnect();
  alice.disconnect();
});

test('a private message to an offline user is queued and delivered on reconnect', async () => {
  const bob = await sioUser(server.url, 'q-bob');
  bob.disconnect();
  const alice = await sioUser(server.url, 'q-alice');
  const sent = await alice.ack('send-message', { message: 'while you were away', to: 'q-bob' });
  assert.equal(sent.queued, true);
  assert.equal(sent.delivered, 0);

  const back = await sioUser(server.url, 'q-bob');
  const queued = await back.events.next('private-message');
  assert.equal(queued.id, sent.id);
  assert.equal(queued.message, 'while you were away');
  back.disconnect();

  // The writer recorded the delivery: the next connection is not sent it again (a replay
  // would arrive before the answer to its first event).
  const again = await sioUser(server.url, 'q-bob');
  await again.ack('get-active-users');
  assert.ok(!again.events.queue.some((e) => e.event === 'private-message'), 'delivered once');
  again.disconnect();
  alice.disconnect();
});

test('long-polling alone works', async () => {
  const a = await sioUser(server.url, 'poll-a', { client: { transports: ['polling'] } });
  const b = await sioUser(server.url, 'poll-b', { client: { transports: ['polling'] } });
  await a.ack('send-message', { message: 'over polling', to: 'poll-b' });
  assert.equal((await b.events.next('private-message')).message, 'over polling');
  a.disconnect();
  b.disconnect();
});

test('a resend with the same clientMsgId gets the original ack', async () => {
  const alice = await sioUser(server.url, 'idem-alice');
  const first = await alice.ack('send-message', { message: 'once', clientMsgId: 'c-1' });
  const again = await alice.ack('send-message', { message: 'once', clientMsgId: 'c-1' });
  assert.equal(again.id, first.id);
  assert.equal(again.duplicate, true);
  alice.disconnect();
});

test('back-to-back messages are acked in event order, each once stored; a refusal in its place', async () => {
  const bob = await sioUser(server.url, 'pipe-bob');
  assert.equal((await bob.ack('join-room', { room: 'pipe' })).ok, true);
  const alice = await sioUser(server.url, 'pipe-alice');
  // Acks and `error` events in the order they arrive (callbacks run as packets are read).
  const arrivals = [];
  alice.onAny((event) => { if (event === 'error') arrivals.push('error'); });
  const acks = [];
  const frames = 51;
  for (let frame = 1; frame <= frames; frame += 1) {
    let event = 'send-message';
    let data = { message: `m${frame}`, to: 'pipe-bob' };
    if (frame === 1) [event, data] = ['join-room', { room: 'pipe' }];
    else if (frame === 26) data = { message: '', to: 'pipe-bob' };
    else if (frame % 2 === 1) [event, data] = ['room-message', { room: 'pipe', message: `m${frame}` }];
    acks.push(new Promise((resolve, reject) => {
      alice.timeout(WAIT_MS).emit(event, data, (err, ack) => {
        if (err) return reject(err);
        arrivals.push(frame);
        return resolve(ack);
      });
    }));
  }
  const results = await Promise.all(acks);

  const expected = [];
  for (let frame = 1; frame <= frames; frame += 1) {
    if (frame === 26) expected.push('error');
    expected.push(frame);
  }
  assert.deepEqual(arrivals, expected, 'acks in event order, the refusal after its error');
  assert.equal(results[25].ok, false);
  assert.equal(results[25].code, 'bad_payload');
  let lastId = 0;
  const auth = { Authorization: `Bearer ${token('pipe-alice')}` };
  for (const [i, ack] of results.entries()) {
    if (i === 0 || i === 25) continue;
    assert.equal(ack.ok, true, JSON.stringify(ack));
    assert.ok(ack.id > lastId, `ids follow event order: ${ack.id} after ${lastId}`);
    lastId = ack.id;
    const response = await fetch(`${server.url}/websocket/messages?since=${ack.id - 1}&limit=1`, { headers: auth });
    const page = await response.json();
    assert.equal(page.messages[0]?.id, ack.id, `message ${ack.id} stored`);
    assert.equal(page.messages[0].data.message, `m${i + 1}`);
  }
  // The room messages reached bob, so the join (event 1) ran before them.
  for (let n = 0; n < 25; n += 1) await bob.events.next('room-message');
  alice.disconnect();
  bob.disconnect();
});

void WAIT_MS;

test('a token that expires: token-expiring, then error token_expired and a server-side disconnect; a refresh renews it', async () => {
  const short = await startServer({ JWT_LEEWAY_SECS: '0', TOKEN_EXPIRY_WARNING_SECS: '1' });
  try {
    const renewed = await sioUser(short.url, 'renewing', { ttl: 2 });
    const socket = await sioUser(short.url, 'expiring', { ttl: 3 });

    const fresh = token('renewing');
    const ack = await renewed.ack('refresh-token', { token: fresh });
    assert.equal(ack.ok, true);
    assert.ok(ack.exp > Date.now() / 1000 + 3000, `the new exp: ${ack.exp}`);
    const refused = await renewed.ack('refresh-token', { token: token('someone-else') });
    assert.deepEqual([refused.ok, refused.code], [false, 'wrong_subject']);
    assert.equal((await renewed.events.next('error')).code, 'wrong_subject');

    const warning = await socket.events.next('token-expiring');
    assert.ok(Number.isInteger(warning.exp), JSON.stringify(warning));
    assert.ok(warning.secondsLeft <= 1, JSON.stringify(warning));
    const error = await socket.events.next('error');
    assert.deepEqual(error, { message: 'token expired', code: 'token_expired' });
    assert.equal(await socket.events.next('disconnect'), 'io server disconnect');
    assert.ok(Date.now() / 1000 >= warning.exp, 'not before exp');

    // The refreshed connection outlived its old exp (2 s), which the other's (3 s) followed.
    const users = await renewed.ack('get-active-users');
    assert.deepEqual(users.users.map((u) => u.userId), ['renewing']);
    renewed.disconnect();
  } finally {
    await short.stop();
  }
});

test('a revoke disconnects the user and the old token then gets connect_error', async () => {
  const socket = await sioUser(server.url, 'revokee');
  const response = await fetch(`${server.url}/websocket/users/revokee/revoke`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token('root', { role: 'ADMIN' })}` },
    signal: AbortSignal.timeout(WAIT_MS),
  });
  assert.equal(response.status, 200);
  const body = await response.json();
  assert.equal(body.disconnected, 1);
  assert.equal((await socket.events.next('error')).code, 'revoked');
  assert.equal(await socket.events.next('disconnect'), 'io server disconnect');

  // The harness's tokens carry no iat: after a revoke they cannot show they are newer.
  const again = await sioClient(server.url, { auth: { token: token('revokee') } });
  const error = await again.events.next('connect_error');
  assert.equal(error.message, 'token revoked');
  again.close();
});

test("a message between MAX_MESSAGE_CHARS and socket.io's 1 MB gets an error; the socket stays", async () => {
  for (const transports of [['websocket'], ['polling']]) {
    const alice = await sioUser(server.url, `big-${transports[0]}`, { client: { transports } });
    const ack = await alice.ack('send-message', { message: 'x'.repeat(70000) });
    assert.equal(ack.ok, false, transports[0]);
    assert.equal(ack.code, 'bad_payload');
    assert.equal(ack.error, 'message is too long: 70000 characters, at most 4000');
    const error = await alice.events.next('error');
    assert.equal(error.code, 'bad_payload');
    assert.equal(alice.connected, true, transports[0]);
    assert.equal((await alice.ack('get-active-users')).ok, true, transports[0]);
    alice.disconnect();
  }
});

test('a token with a 100 KB username gets connect_error naming the claim', async () => {
  for (const transports of [['websocket'], ['polling']]) {
    const socket = await sioClient(server.url, {
      transports,
      auth: { token: token('huge-name', { username: 'n'.repeat(100000) }) },
    });
    const error = await socket.events.next('connect_error');
    assert.equal(error.message, 'invalid token: claim "username" is longer than 256 characters', transports[0]);
    socket.close();
  }
});

test('a flooder gets an error naming the rate limit before it is disconnected', async () => {
  const strict = await startServer({
    RATE_LIMIT_PER_SEC: '1',
    RATE_LIMIT_BURST: '3',
    RATE_LIMIT_MAX_STRIKES: '10',
  });
  try {
    for (const transports of [['websocket'], ['polling']]) {
      const flooder = await sioUser(strict.url, `flood-${transports[0]}`, { client: { transports } });
      for (let i = 0; i < 200; i += 1) flooder.emit('get-active-users');
      // Recorder.next skips earlier events only: the error must come before the disconnect.
      const error = await flooder.events.next('error').catch((e) => {
        throw new Error(`${transports[0]}: ${e.message}`);
      });
      assert.equal(error.code, 'rate_limited', transports[0]);
      assert.ok(error.message.includes('rate limit'), error.message);
      // Over polling, the client's own POSTs still in flight when the server lets go may
      // fail first, so the client may name the end `transport error`; the point is the order.
      const reason = await flooder.events.next('disconnect');
      const expected = transports[0] === 'polling'
        ? ['io server disconnect', 'transport error']
        : ['io server disconnect'];
      assert.ok(expected.includes(reason), `${transports[0]}: ${reason}`);
      flooder.close();
    }
  } finally {
    await strict.stop();
  }
});

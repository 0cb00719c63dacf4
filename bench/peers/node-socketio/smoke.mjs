// Smoke check of the Node.js Socket.IO reference peer (server.js): starts it with PORT=0,
// drives it with socket.io-client, checks events, payloads and acks, stops it.
// Run: `npm ci && node smoke.mjs`. Exits non-zero on the first failure.
// SMOKE_SERVER=/path/to/binary runs the same checks against another peer with the same env and
// output contract (bench/peers/socketioxide-bare).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';

const SECRET = randomBytes(24).toString('hex');
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

function sign(claims, { alg = 'HS256', secret = SECRET } = {}) {
  const head = `${b64({ alg, typ: 'JWT' })}.${b64(claims)}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}
const exp = () => Math.floor(Date.now() / 1000) + 600;

let passed = 0;
function check(name, fn) {
  fn();
  passed += 1;
  console.log(`ok - ${name}`);
}

/** Resolves with the next `event` on `socket` (its first argument), or rejects after a timeout. */
function next(socket, event, ms = 3000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for '${event}'`)), ms);
    socket.once(event, (data) => {
      clearTimeout(timer);
      resolve(data);
    });
  });
}

/** Resolves true if `event` arrives within `ms`, else false. */
function arrives(socket, event, ms = 300) {
  return next(socket, event, ms).then(
    () => true,
    () => false,
  );
}

const clients = [];
let url;
function connect(options) {
  const socket = io(url, { reconnection: false, forceNew: true, timeout: 3000, ...options });
  clients.push(socket);
  return socket;
}

async function refused(options) {
  const socket = connect(options);
  const err = await next(socket, 'connect_error');
  socket.close();
  return err.message;
}

// ---- start the server --------------------------------------------------------------------------

const here = dirname(fileURLToPath(import.meta.url));
const [command, args] = process.env.SMOKE_SERVER
  ? [process.env.SMOKE_SERVER, []]
  : [process.execPath, [join(here, 'server.js')]];
const server = spawn(command, args, {
  env: { ...process.env, PORT: '0', JWT_SECRET: SECRET },
  stdio: ['ignore', 'inherit', 'pipe'],
});
let stderr = '';
const stopServer = () => server.exitCode === null && server.kill('SIGTERM');
process.on('exit', stopServer);

try {
  url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${stderr}`)), 10000);
    server.stderr.on('data', (chunk) => {
      stderr += chunk;
      const m = /^listening on (http:\/\/127\.0\.0\.1:(\d+))$/m.exec(stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    server.once('exit', (code) => reject(new Error(`server exited with ${code}:\n${stderr}`)));
  });
  console.log(`server at ${url}`);
  check('exactly one "listening on" line on stderr', () => assert.equal(stderr, `listening on ${url}\n`));

  // ---- authentication refusals ---------------------------------------------------------------
  const missing = await refused({});
  check('no token -> connect_error "missing token"', () => assert.equal(missing, 'missing token'));
  const badSig = await refused({ auth: { token: sign({ sub: 'x', exp: exp() }, { secret: 'wrong' }) } });
  check('bad signature -> connect_error "invalid token"', () => assert.equal(badSig, 'invalid token'));
  const expired = await refused({ auth: { token: sign({ sub: 'x', exp: Math.floor(Date.now() / 1000) - 5 }) } });
  check('expired -> connect_error "token expired"', () => assert.equal(expired, 'token expired'));
  const none = await refused({ auth: { token: `${b64({ alg: 'none' })}.${b64({ sub: 'x', exp: exp() })}.` } });
  check('alg none -> connect_error "invalid token"', () => assert.equal(none, 'invalid token'));
  const hs512 = await refused({ auth: { token: sign({ sub: 'x', exp: exp() }, { alg: 'HS512' }) } });
  check('alg HS512 header -> connect_error "invalid token"', () => assert.equal(hs512, 'invalid token'));
  const garbage = await refused({ auth: { token: 'not-a-jwt' } });
  check('garbage -> connect_error "invalid token"', () => assert.equal(garbage, 'invalid token'));
  const noExp = await refused({ auth: { token: sign({ sub: 'x' }) } });
  check('no exp -> connect_error "invalid token"', () => assert.equal(noExp, 'invalid token'));

  // ---- connect: alice (auth object, polling then upgrade), bob (Bearer header, websocket) ------
  const alice = connect({ auth: { token: sign({ sub: 'u-alice', preferred_username: 'alice', roles: ['ADMIN'], exp: exp() }) } });
  const aliceConnected = await next(alice, 'connected');
  check('connected payload (auth object, polling transport)', () => {
    assert.deepEqual(Object.keys(aliceConnected).sort(), ['message', 'rooms', 'timestamp', 'user']);
    assert.deepEqual(aliceConnected.rooms, []);
    assert.match(aliceConnected.timestamp, ISO);
    const { connectedAt, ...rest } = aliceConnected.user;
    assert.deepEqual(rest, { userId: 'u-alice', username: 'alice', role: 'ADMIN', sessions: 1 });
    assert.match(connectedAt, ISO);
  });

  const aliceSeesBob = next(alice, 'user-connected');
  const bob = connect({
    transports: ['websocket'],
    extraHeaders: { Authorization: `Bearer ${sign({ sub: 'u-bob', username: 'bob', exp: exp() })}` },
  });
  const bobConnected = await next(bob, 'connected');
  check('Bearer header token; role defaults to USER', () => {
    assert.equal(bobConnected.user.userId, 'u-bob');
    assert.equal(bobConnected.user.username, 'bob');
    assert.equal(bobConnected.user.role, 'USER');
  });
  const presence = await aliceSeesBob;
  check('user-connected { user, timestamp, activeUsersCount } to the others', () => {
    assert.equal(presence.user.userId, 'u-bob');
    assert.equal(presence.activeUsersCount, 2);
    assert.match(presence.timestamp, ISO);
  });

  // A second socket of alice, token in the query: no presence event for bob.
  const bobSeesPresence = arrives(bob, 'user-connected');
  const alice2 = connect({ transports: ['websocket'], query: { token: sign({ sub: 'u-alice', name: 'Alice', role: 'ADMIN', exp: exp() }) } });
  const alice2Connected = await next(alice2, 'connected');
  check('?token= query; second socket of a user counts as a session', () => {
    assert.equal(alice2Connected.user.userId, 'u-alice');
    assert.equal(alice2Connected.user.sessions, 2);
    assert.equal(alice2Connected.user.connectedAt, aliceConnected.user.connectedAt);
  });
  const bobGotPresence = await bobSeesPresence;
  check('no user-connected for a second socket', () => assert.equal(bobGotPresence, false));

  // ---- queries -------------------------------------------------------------------------------
  const activeEvent = next(bob, 'active-users');
  const activeAck = await bob.emitWithAck('get-active-users');
  const active = await activeEvent;
  check('get-active-users -> active-users { users, count } and ack', () => {
    assert.equal(active.count, 2);
    assert.deepEqual(active.users.map((u) => [u.userId, u.sessions]), [['u-alice', 2], ['u-bob', 1]]);
    assert.equal(activeAck.ok, true);
    assert.equal(activeAck.count, 2);
  });
  const statsEvent = next(bob, 'users-stats');
  bob.emit('get-users-stats'); // no ack callback
  const stats = await statsEvent;
  check('get-users-stats -> users-stats', () => {
    assert.equal(stats.totalUsers, 2);
    assert.deepEqual(stats.usersByRole, { ADMIN: 1, USER: 1 });
    const a = stats.connectionTimes.find((c) => c.userId === 'u-alice');
    assert.deepEqual(Object.keys(a).sort(), [
      'connectedAt', 'connectedSeconds', 'firstSeen', 'sessionsCount', 'totalConnectedSeconds', 'userId', 'username',
    ]);
    assert.equal(a.sessionsCount, 2);
    assert.equal(typeof a.connectedSeconds, 'number');
    assert.match(a.firstSeen, ISO);
  });

  // ---- rooms -----------------------------------------------------------------------------------
  const joinedAck = await alice.emitWithAck('join-room', { room: 'lobby' });
  check('join-room ack', () => assert.deepEqual(joinedAck, { ok: true, room: 'lobby', joined: true }));
  const aliceSeesJoin = next(alice, 'user-joined-room');
  const bobJoined = next(bob, 'joined-room');
  bob.emit('join-room', { room: 'lobby' });
  const bobJoinedEvent = await bobJoined;
  check('joined-room { room, message } to the caller', () =>
    assert.deepEqual(bobJoinedEvent, { room: 'lobby', message: 'Joined room lobby' }));
  const joinEvent = await aliceSeesJoin;
  check('user-joined-room { user, room, timestamp } to the room', () => {
    assert.equal(joinEvent.user.userId, 'u-bob');
    assert.equal(joinEvent.room, 'lobby');
    assert.match(joinEvent.timestamp, ISO);
  });

  const bobGetsRoomMsg = next(bob, 'room-message');
  const aliceEcho = arrives(alice, 'room-message');
  const roomAck = await alice.emitWithAck('room-message', { room: 'lobby', message: 'hello room' });
  const roomMsg = await bobGetsRoomMsg;
  check('room-message { id, from, message, room, timestamp } and ack', () => {
    assert.deepEqual(Object.keys(roomMsg).sort(), ['from', 'id', 'message', 'room', 'timestamp']);
    assert.equal(roomMsg.from.userId, 'u-alice');
    assert.equal(roomMsg.message, 'hello room');
    assert.equal(roomMsg.room, 'lobby');
    assert.equal(typeof roomMsg.id, 'number');
    assert.deepEqual(roomAck, { ok: true, id: roomMsg.id, delivered: 1, queued: false, room: 'lobby' });
  });
  const aliceGotEcho = await aliceEcho;
  check('no room-message echo to the sender', () => assert.equal(aliceGotEcho, false));

  const notMember = next(alice2, 'error');
  const notMemberAck = await alice2.emitWithAck('room-message', { room: 'lobby', message: 'x' });
  const notMemberErr = await notMember;
  check('room-message from a non-member -> error + ack { ok: false }', () => {
    assert.equal(notMemberAck.ok, false);
    assert.match(notMemberErr.message, /not a member/);
  });

  // ---- broadcast -----------------------------------------------------------------------------
  const aliceGetsBroadcast = next(alice, 'broadcast-message');
  const alice2GetsBroadcast = next(alice2, 'broadcast-message');
  const bobEcho = arrives(bob, 'broadcast-message');
  const bcAck = await bob.emitWithAck('send-message', { message: 'hello all' });
  const bc = await aliceGetsBroadcast;
  await alice2GetsBroadcast;
  check('broadcast-message { id, from, message, timestamp } to every other socket, and ack', () => {
    assert.deepEqual(Object.keys(bc).sort(), ['from', 'id', 'message', 'timestamp']);
    assert.equal(bc.from.userId, 'u-bob');
    assert.equal(bc.message, 'hello all');
    assert.ok(bc.id > roomMsg.id, 'ids only grow');
    assert.deepEqual(bcAck, { ok: true, id: bc.id, delivered: 2, queued: false });
  });
  const bobGotEcho = await bobEcho;
  check('no broadcast echo to the sender', () => assert.equal(bobGotEcho, false));

  // ---- private ---------------------------------------------------------------------------------
  const pm1 = next(alice, 'private-message');
  const pm2 = next(alice2, 'private-message');
  const pmAck = await bob.emitWithAck('send-message', { message: 'psst', to: 'u-alice' });
  const [p1, p2] = await Promise.all([pm1, pm2]);
  check('private-message to each socket of the user, and ack', () => {
    assert.deepEqual(p1, p2);
    assert.equal(p1.from.userId, 'u-bob');
    assert.equal(p1.message, 'psst');
    assert.deepEqual(pmAck, { ok: true, id: p1.id, delivered: 2, queued: false });
  });
  const offlineErr = next(bob, 'error');
  const offlineAck = await bob.emitWithAck('send-message', { message: 'hi', to: 'u-nobody' });
  const offlineErrEvent = await offlineErr;
  check('private message to an offline user -> error + ack { ok: false }', () => {
    assert.equal(offlineAck.ok, false);
    assert.match(offlineErrEvent.message, /not online/);
  });

  // ---- validation ----------------------------------------------------------------------------
  for (const [event, payload] of [
    ['send-message', {}],
    ['send-message', { message: '   ' }],
    ['send-message', 'just a string'],
    ['room-message', { room: 'lobby' }],
    ['join-room', {}],
  ]) {
    const err = next(bob, 'error');
    const ack = await bob.emitWithAck(event, payload);
    const { message } = await err;
    check(`${event} ${JSON.stringify(payload)} -> error "${message}"`, () => {
      assert.equal(ack.ok, false);
      assert.equal(ack.error, message);
    });
  }
  const noPayloadErr = next(bob, 'error');
  bob.emit('send-message'); // no payload, no ack: must not crash the server
  const noPayload = await noPayloadErr;
  check('send-message without payload -> error', () => assert.match(noPayload.message, /expects an object/));

  // ---- leave and disconnect -------------------------------------------------------------------
  const aliceSeesLeave = next(alice, 'user-left-room');
  const leftAck = await bob.emitWithAck('leave-room', { room: 'lobby' });
  const leave = await aliceSeesLeave;
  check('leave-room -> ack, user-left-room to the room', () => {
    assert.deepEqual(leftAck, { ok: true, room: 'lobby' });
    assert.equal(leave.user.userId, 'u-bob');
    assert.equal(leave.room, 'lobby');
  });

  const bobSeesAliceLeave = arrives(bob, 'user-disconnected');
  alice2.close();
  const bobGotAliceLeave = await bobSeesAliceLeave;
  check('no user-disconnected while the user has another socket', () => assert.equal(bobGotAliceLeave, false));
  const aliceSeesBobGone = next(alice, 'user-disconnected');
  bob.close();
  const gone = await aliceSeesBobGone;
  check('user-disconnected on the last socket only', () => {
    assert.equal(gone.user.userId, 'u-bob');
    assert.equal(gone.user.sessions, 0);
    assert.equal(gone.activeUsersCount, 1);
  });

  const finalStats = await alice.emitWithAck('get-users-stats');
  check('stats after disconnects', () => {
    assert.equal(finalStats.totalUsers, 1);
    assert.equal(finalStats.connectionTimes[0].sessionsCount, 2);
  });

  console.log(`smoke: ${passed} passed, 0 failed`);
  process.exitCode = 0;
} catch (e) {
  console.error(`not ok - ${e.stack ?? e}`);
  console.log(`smoke: ${passed} passed, 1 failed`);
  process.exitCode = 1;
} finally {
  for (const c of clients) c.close();
  stopServer();
  await Promise.race([once(server, 'exit'), new Promise((r) => setTimeout(r, 3000))]);
}

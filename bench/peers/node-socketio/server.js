// switchboard-node-socketio-peer: a reference peer for BENCHMARKS ONLY.
//
// A plain Node.js Socket.IO 4.8 server, in memory, written the way people run the seed's
// NestJS/Socket.IO gateway today (shared/seed/websocket-gateway.md). It mirrors that gateway
// and switchboard's Socket.IO events and payloads (shared/spec/contract.md, sections 1-5), so
// that one load generator can drive both servers and compare them.
// Deliberately left out: persistence, offline queues, `sync`/recovery (socket.io's own in-memory
// recovery only with BENCH_RECOVERY=1, below), idempotency keys, the REST API, rate limits, the
// plain `/ws` endpoint. Not a product; do not deploy it.
//
//   PORT=0 JWT_SECRET=... node server.js   ->  stderr: "listening on http://127.0.0.1:<port>"
//
// Env: PORT (default 3100; 0 = any free port), JWT_SECRET (required; HS256 tokens only).
// Bench-only switches for bench/restart.py (off by default, so other runs are unchanged):
//   BENCH_RECOVERY=1   socket.io's connection state recovery (in memory, 2 min)
//   BENCH_PRESENCE=off no user-connected / user-disconnected broadcasts
//   BENCH_ADMIN=1      POST /bench/broadcast (io.emit a broadcast-message, answers { id }) and
//                      POST /bench/cut (closes every connection's transport, the process stays)

import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const PORT = Number(process.env.PORT ?? 3100);
const BENCH_RECOVERY = process.env.BENCH_RECOVERY === '1';
const BENCH_PRESENCE = process.env.BENCH_PRESENCE !== 'off';
const BENCH_ADMIN = process.env.BENCH_ADMIN === '1';
const SECRET = process.env.JWT_SECRET;
if (!SECRET) {
  console.error('JWT_SECRET is required');
  process.exit(2);
}

// ---- JWT (HS256 only, checked with node's crypto) -------------------------------------------

class Refusal extends Error {}

function decodePart(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

function nonEmpty(v) {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}

/** Verifies a token and returns `{ userId, username, role }`, or throws a Refusal. */
function verifyToken(token) {
  const parts = token.split('.');
  if (parts.length !== 3) throw new Refusal('invalid token');
  let header, claims;
  try {
    header = decodePart(parts[0]);
    claims = decodePart(parts[1]);
  } catch {
    throw new Refusal('invalid token');
  }
  // The algorithm is fixed here, never taken from the token.
  if (header?.alg !== 'HS256' || claims === null || typeof claims !== 'object') {
    throw new Refusal('invalid token');
  }
  const expected = createHmac('sha256', SECRET).update(`${parts[0]}.${parts[1]}`).digest();
  const given = Buffer.from(parts[2], 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new Refusal('invalid token');
  }
  const now = Date.now() / 1000;
  if (typeof claims.exp !== 'number') throw new Refusal('invalid token');
  if (now >= claims.exp) throw new Refusal('token expired');
  if (typeof claims.nbf === 'number' && now < claims.nbf) throw new Refusal('invalid token');
  const userId = nonEmpty(claims.sub);
  if (!userId) throw new Refusal('invalid token');
  const username =
    nonEmpty(claims.username) ?? nonEmpty(claims.preferred_username) ?? nonEmpty(claims.name) ?? userId;
  const role =
    nonEmpty(claims.role) ?? (Array.isArray(claims.roles) ? nonEmpty(claims.roles[0]) : undefined) ?? 'USER';
  return { userId, username, role };
}

/** Token from the auth object, else `Authorization: Bearer`, else `?token=`. */
function tokenOf(handshake) {
  if (nonEmpty(handshake.auth?.token)) return handshake.auth.token;
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(handshake.headers.authorization ?? '');
  if (bearer) return bearer[1];
  return nonEmpty(handshake.query?.token);
}

// ---- In-memory state --------------------------------------------------------------------------

const online = new Map(); // userId -> { userId, username, role, sockets: Map<socketId, Date> }
const history = new Map(); // userId -> { firstSeen: Date, sessionsCount, closedMs }
let lastMessageId = 0; // only grows

const now = () => new Date().toISOString();

function userObject(entry) {
  const oldest = entry.sockets.values().next().value; // Map keeps insertion order
  const { userId, username, role } = entry;
  return { userId, username, role, connectedAt: oldest?.toISOString(), sessions: entry.sockets.size };
}

function onlineUsers() {
  return [...online.values()].map(userObject).sort((a, b) => a.connectedAt.localeCompare(b.connectedAt));
}

function usersStats() {
  const t = Date.now();
  const usersByRole = {};
  const connectionTimes = onlineUsers().map((user) => {
    usersByRole[user.role] = (usersByRole[user.role] ?? 0) + 1;
    const h = history.get(user.userId);
    const liveMs = [...online.get(user.userId).sockets.values()].reduce((sum, at) => sum + (t - at), 0);
    return {
      userId: user.userId,
      username: user.username,
      connectedAt: user.connectedAt,
      connectedSeconds: Math.floor((t - Date.parse(user.connectedAt)) / 1000),
      totalConnectedSeconds: Math.round((h.closedMs + liveMs) / 1000),
      sessionsCount: h.sessionsCount,
      firstSeen: h.firstSeen.toISOString(),
    };
  });
  return { totalUsers: connectionTimes.length, usersByRole, connectionTimes };
}

// ---- Payload checks (what a class-validator DTO would do) --------------------------------------

function objectOf(event, data, shape) {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new Refusal(`${event} expects an object payload like ${shape}`);
  }
  return data;
}

function text(data, field) {
  const v = data[field];
  if (typeof v !== 'string') throw new Refusal(`${field} must be a string`);
  if (!v.trim()) throw new Refusal(`${field} must not be empty`);
  return v;
}

// ---- Server -----------------------------------------------------------------------------------

const httpServer = createServer((req, res) => {
  if (BENCH_ADMIN && req.method === 'POST' && req.url?.startsWith('/bench/')) return benchAdmin(req, res);
  const ok = req.url === '/healthz';
  res.writeHead(ok ? 200 : 404, { 'content-type': 'application/json' });
  res.end(ok ? '{"status":"ok"}' : '{"error":"not found"}');
});

const io = new Server(httpServer, {
  cors: { origin: '*' },
  maxHttpBufferSize: 1e6,
  // socket.io's defaults for the feature, spelled out: sessions and packets kept 2 minutes.
  ...(BENCH_RECOVERY && {
    connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000, skipMiddlewares: true },
  }),
});

// BENCH ONLY (BENCH_ADMIN=1): the restart bench's publisher and its cut. No auth: loopback
// benchmarks only.
function benchAdmin(req, res) {
  req.resume();
  req.on('end', () => {
    let body;
    if (req.url === '/bench/broadcast') {
      const id = ++lastMessageId;
      const from = { userId: 'bench-publisher', username: 'bench-publisher', role: 'ADMIN', connectedAt: now(), sessions: 0 };
      io.emit('broadcast-message', { id, from, message: 'tick', timestamp: now() });
      body = { id };
    } else if (req.url === '/bench/cut') {
      // Closing the Engine.IO transport ("forced close") is a disconnection socket.io
      // recovers from; io.disconnectSockets() ("server namespace disconnect") is not.
      let cut = 0;
      for (const socket of io.of('/').sockets.values()) {
        socket.conn.close();
        cut += 1;
      }
      body = { cut };
    } else {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  });
}

io.use((socket, next) => {
  const token = tokenOf(socket.handshake);
  if (!token) return next(new Error('missing token'));
  try {
    socket.data.identity = verifyToken(token);
    next();
  } catch (e) {
    next(new Error(e instanceof Refusal ? e.message : 'invalid token'));
  }
});

const roomKey = (room) => `room:${room}`; // so a room name can never be another socket's id

io.on('connection', (socket) => {
  const { userId, username, role } = socket.data.identity;
  const connectedAt = new Date();
  let entry = online.get(userId);
  const first = !entry;
  if (first) online.set(userId, (entry = { userId, username, role, sockets: new Map() }));
  entry.sockets.set(socket.id, connectedAt);
  const h = history.get(userId) ?? { firstSeen: connectedAt, sessionsCount: 0, closedMs: 0 };
  h.sessionsCount += 1;
  history.set(userId, h);

  const user = userObject(entry);
  socket.emit('connected', { message: `Welcome, ${username}`, user, timestamp: now(), rooms: [] });
  if (first && BENCH_PRESENCE) socket.broadcast.emit('user-connected', { user, timestamp: now(), activeUsersCount: online.size });

  // Runs a handler; a Refusal becomes `error { message }`; the ack (if asked for) always comes.
  const on = (event, handler) =>
    socket.on(event, (...args) => {
      const ack = typeof args.at(-1) === 'function' ? args.pop() : undefined;
      let result;
      try {
        result = { ok: true, ...handler(args[0]) };
      } catch (e) {
        const message = e instanceof Refusal ? e.message : 'internal error';
        if (!(e instanceof Refusal)) console.error(e);
        socket.emit('error', { message });
        result = { ok: false, error: message };
      }
      ack?.(result);
    });

  const me = () => userObject(online.get(userId));

  on('get-active-users', () => {
    const users = onlineUsers();
    socket.emit('active-users', { users, count: users.length });
    return { users, count: users.length };
  });

  on('get-users-stats', () => {
    const stats = usersStats();
    socket.emit('users-stats', stats);
    return stats;
  });

  on('send-message', (data) => {
    objectOf('send-message', data, '{ message, to? }');
    const message = text(data, 'message');
    if (data.to != null && typeof data.to !== 'string') throw new Refusal('to must be a string');
    if (data.to == null) {
      const id = ++lastMessageId;
      socket.broadcast.emit('broadcast-message', { id, from: me(), message, timestamp: now() });
      return { id, delivered: io.of('/').sockets.size - 1, queued: false };
    }
    const target = online.get(data.to);
    if (!target) throw new Refusal(`user ${JSON.stringify(data.to)} is not online`);
    const id = ++lastMessageId;
    const sockets = [...target.sockets.keys()];
    io.to(sockets).emit('private-message', { id, from: me(), message, timestamp: now() });
    return { id, delivered: sockets.length, queued: false };
  });

  on('join-room', (data) => {
    const room = text(objectOf('join-room', data, '{ room }'), 'room');
    const joined = !socket.rooms.has(roomKey(room));
    if (joined) {
      socket.join(roomKey(room));
      socket.to(roomKey(room)).emit('user-joined-room', { user: me(), room, timestamp: now() });
    }
    socket.emit('joined-room', { room, message: `Joined room ${room}` });
    return { room, joined };
  });

  on('leave-room', (data) => {
    const room = text(objectOf('leave-room', data, '{ room }'), 'room');
    if (!socket.rooms.has(roomKey(room))) throw new Refusal(`you are not a member of room ${JSON.stringify(room)}`);
    socket.leave(roomKey(room));
    socket.to(roomKey(room)).emit('user-left-room', { user: me(), room, timestamp: now() });
    socket.emit('left-room', { room, message: `Left room ${room}` });
    return { room };
  });

  on('room-message', (data) => {
    objectOf('room-message', data, '{ room, message }');
    const room = text(data, 'room');
    const message = text(data, 'message');
    if (!socket.rooms.has(roomKey(room))) {
      throw new Refusal(`you are not a member of room ${JSON.stringify(room)}; join it first`);
    }
    const id = ++lastMessageId;
    socket.to(roomKey(room)).emit('room-message', { id, from: me(), message, room, timestamp: now() });
    const delivered = (io.of('/').adapter.rooms.get(roomKey(room))?.size ?? 1) - 1;
    return { id, delivered, queued: false, room };
  });

  socket.on('disconnect', () => {
    const user = userObject(entry); // as they were, before this socket goes
    entry.sockets.delete(socket.id);
    h.closedMs += Date.now() - connectedAt;
    if (entry.sockets.size === 0) {
      online.delete(userId);
      user.sessions = 0;
      if (BENCH_PRESENCE) socket.broadcast.emit('user-disconnected', { user, timestamp: now(), activeUsersCount: online.size });
    }
  });
});

httpServer.listen(PORT, '127.0.0.1', () => {
  console.error(`listening on http://127.0.0.1:${httpServer.address().port}`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    io.close(() => process.exit(0));
    httpServer.closeAllConnections(); // idle keep-alive HTTP connections would hold close()
    setTimeout(() => process.exit(0), 2000).unref();
  });
}

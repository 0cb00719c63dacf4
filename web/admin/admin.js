// switchboard operator dashboard. Plain JS, no framework, no build: the binary serves this file
// as it is. Data comes from the admin-only stream GET /websocket/admin/stream (Server-Sent
// Events read with fetch(), so the token goes in the Authorization header, never in a URL);
// the webhooks panel reads its own endpoints every few seconds; actions use the REST API. Everything shown is built with textContent and createElement, never
// innerHTML: names come from tokens, which anyone can mint for themselves on a misconfigured
// deployment. The page is served with a strict Content-Security-Policy (no inline script).
'use strict';

const TOKEN_KEY = 'switchboard.adminToken';
const WINDOW_MS = 5 * 60 * 1000; // the most the charts span
const MIN_SPAN_MS = 30 * 1000; // the least
const RETRY_MS = 2000; // before reopening a stream that ended
const SVG_NS = 'http://www.w3.org/2000/svg';
const WEBHOOKS_EVERY_MS = 5000; // how often the webhooks panel is read again
const FAILED_LISTED = 20; // failed events listed per endpoint (the oldest)

const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  abort: null, // AbortController of the open stream
  retry: null, // timer that reopens it
  previous: null, // the last snapshot's counters, for the rates
  samples: [], // { t, messages, connections } rates over the window
  online: null, // Set of user ids in the last snapshot (null before the first)
  rendered: new Map(), // userId -> <li> in the online list (kept, so focus survives updates)
  sections: {}, // last JSON rendered per section, to skip unchanged ones
  webhooks: { started: false, timer: null, reads: 0 }, // the panel's polling
};

// ---- Sign in, sign out ----

function start() {
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const token = $('token').value.trim();
    if (!token) return;
    $('token').value = '';
    sessionStorage.setItem(TOKEN_KEY, token);
    open(token);
  });
  $('logout').addEventListener('click', () => logout(''));
  $('users').addEventListener('click', onUserAction);
  $('rooms').addEventListener('click', onMemberAction);
  $('webhooks').addEventListener('click', onWebhookAction);
  $('notify-form').addEventListener('submit', onNotify);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) open(saved);
}

function open(token) {
  state.token = token;
  $('login-error').textContent = '';
  $('logout').hidden = false;
  setConnection('Connecting…');
  stream();
}

/** Forgets the token and every datum shown; `message` says why (empty for a plain logout). */
function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  if (state.abort) state.abort.abort();
  clearTimeout(state.retry);
  state.previous = null;
  state.samples = [];
  state.online = null;
  state.rendered.clear();
  state.sections = {};
  stopWebhooks();
  $('users').replaceChildren();
  $('dashboard').hidden = true;
  $('login').hidden = false;
  $('logout').hidden = true;
  $('login-error').textContent = message;
  setConnection(message ? 'Refused' : 'Not signed in');
  $('token').focus();
}

function setConnection(text) {
  $('connection').textContent = text;
}

// ---- The stream ----

async function stream() {
  clearTimeout(state.retry);
  const abort = new AbortController();
  state.abort = abort;
  const token = state.token;
  try {
    const response = await fetch('/websocket/admin/stream', {
      headers: { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' },
      signal: abort.signal,
      cache: 'no-store',
    });
    if (response.status === 401 || response.status === 403) {
      logout(`The server refused this token: ${await errorOf(response)}`);
      return;
    }
    if (!response.ok) throw new Error(`${response.status} ${await errorOf(response)}`);
    setConnection('Live');
    await readEvents(response.body, (name, data) => {
      if (name === 'overview') render(JSON.parse(data));
      else if (name === 'error') setConnection(`Live, but: ${JSON.parse(data).error}`);
    });
    if (state.token === token) setConnection('Stream ended; reconnecting…');
  } catch (e) {
    if (abort.signal.aborted) return;
    setConnection(`Disconnected (${e.message}); reconnecting…`);
  }
  if (state.token === token) state.retry = setTimeout(stream, RETRY_MS);
}

/** Calls `onEvent(name, data)` for each Server-Sent Event of `body` until it ends. */
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) onEvent(name, data.join('\n'));
    }
  }
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return body.error || response.statusText;
  } catch {
    return response.statusText || String(response.status);
  }
}

// ---- Rendering a snapshot ----

function render(o) {
  $('login').hidden = true;
  $('dashboard').hidden = false;
  $('users-total').textContent = o.usersTotal;
  $('sessions-total').textContent = o.sessionsTotal;
  $('rooms-total').textContent = o.roomsTotal;
  $('queued-total').textContent = o.offlineQueues.messages;
  const time = $('server-time');
  time.dateTime = o.serverTime;
  time.textContent = clock(o.serverTime);
  renderRates(o);
  renderUsers(o);
  changed('rooms', o.rooms, () => renderRooms(o));
  changed('queues', o.offlineQueues, () => renderQueues(o.offlineQueues));
  changed('history', o.recentSessions, () => renderHistory(o.recentSessions));
  // The token is an admin's (the stream took it): the webhooks panel starts reading too.
  if (!state.webhooks.started) {
    state.webhooks.started = true;
    refreshWebhooks();
  }
}

/** Runs `draw` only when `value` differs from what was last drawn for `key`. */
function changed(key, value, draw) {
  const json = JSON.stringify(value);
  if (state.sections[key] === json) return;
  state.sections[key] = json;
  draw();
}

// ---- Rates and charts ----

function renderRates(o) {
  const now = Date.parse(o.serverTime);
  const c = o.counters;
  const prev = state.previous;
  state.previous = { t: now, ...c };
  if (prev && now > prev.t) {
    const seconds = (now - prev.t) / 1000;
    const messages = Math.max(c.messagesStored - prev.messagesStored, 0) / seconds;
    const connections = Math.max(c.connectionsOpened - prev.connectionsOpened, 0) / seconds;
    state.samples.push({ t: now, messages, connections });
  }
  state.samples = state.samples.filter((s) => s.t >= now - WINDOW_MS);
  drawChart('messages', 'Messages per second', now);
  drawChart('connections', 'Connections opened per second', now);
}

function drawChart(key, what, now) {
  const samples = state.samples;
  const current = samples.length ? samples[samples.length - 1][key] : 0;
  const peak = samples.reduce((m, s) => Math.max(m, s[key]), 0);
  const rate = $(`rate-${key}`);
  rate.textContent = current.toFixed(1);
  rate.dataset.rate = String(current);
  rate.dataset.peak = String(peak);
  $(`peak-${key}`).textContent = peak.toFixed(1);

  const svg = document.querySelector(`#chart-${key} svg`);
  const title = svg.querySelector('title');
  title.textContent = samples.length
    ? `${what}: ${current.toFixed(1)} now, peak ${peak.toFixed(1)} over the last 5 minutes`
    : `${what}: no data yet`;
  // The x axis spans the samples kept (at least 30 s, at most the 5-minute window), so a
  // freshly opened page fills its chart instead of drawing in its last few pixels.
  const W = 300;
  const H = 80;
  const TOP = 14; // room for the scale labels
  const span = Math.min(WINDOW_MS, Math.max(MIN_SPAN_MS, samples.length ? now - samples[0].t : 0));
  const scale = niceCeiling(peak);
  const x = (t) => W - ((now - t) / span) * W;
  const y = (v) => H - (v / scale) * (H - TOP);
  const children = [title];
  for (const fraction of [0.5, 1]) {
    const at = y(scale * fraction).toFixed(1);
    children.push(svgEl('line', { x1: 0, x2: W, y1: at, y2: at, class: 'grid' }));
  }
  children.push(svgEl('text', { x: 3, y: TOP - 3, class: 'scale' }, `${scale}/s`));
  children.push(svgEl('text', { x: W - 3, y: TOP - 3, class: 'scale end' },
    `last ${span >= 60000 ? `${Math.round(span / 60000)} min` : `${Math.round(span / 1000)} s`}`));
  if (samples.length) {
    // A step per snapshot: each rate holds over the interval it was measured on.
    const points = [];
    let from = samples[0].t - 1000;
    for (const s of samples) {
      points.push(`${x(from).toFixed(1)},${y(s[key]).toFixed(1)}`,
        `${x(s.t).toFixed(1)},${y(s[key]).toFixed(1)}`);
      from = s.t;
    }
    const left = x(samples[0].t - 1000).toFixed(1);
    children.push(svgEl('polygon', { points: `${left},${H} ${points.join(' ')} ${W},${H}`,
      class: 'area' }));
    children.push(svgEl('polyline', { points: points.join(' '), class: 'line' }));
  }
  svg.dataset.samples = String(samples.length);
  svg.replaceChildren(...children);
}

/** 1, 2, 5, 10, 20, 50, ... at or above `v` (at least 1). */
function niceCeiling(v) {
  let step = 1;
  for (;;) {
    for (const m of [1, 2, 5]) if (v <= step * m) return step * m;
    step *= 10;
  }
}

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// ---- Online users ----

function renderUsers(o) {
  const ids = new Set(o.users.map((u) => u.userId));
  announce(ids, o.users);
  $('users-empty').hidden = o.users.length > 0;
  $('users-listed').textContent =
    o.usersTotal > o.users.length ? `(${o.users.length} of ${o.usersTotal})` : `(${o.usersTotal})`;
  for (const [id, li] of state.rendered) {
    if (!ids.has(id)) {
      li.remove();
      state.rendered.delete(id);
    }
  }
  const list = $('users');
  let before = list.firstElementChild;
  for (const user of o.users) {
    let li = state.rendered.get(user.userId);
    if (!li) {
      li = userItem(user);
      state.rendered.set(user.userId, li);
    }
    updateUser(li, user);
    // Keep the server's order (longest connected first) without re-inserting what is in place,
    // so a focused button keeps its focus.
    if (li !== before) list.insertBefore(li, before);
    else before = before.nextElementSibling;
  }
}

function announce(ids, users) {
  const before = state.online;
  state.online = ids;
  if (!before) return;
  const came = users.filter((u) => !before.has(u.userId)).map((u) => u.userId);
  const left = [...before].filter((id) => !ids.has(id));
  const news = [];
  if (came.length) news.push(`Online: ${came.join(', ')}.`);
  if (left.length) news.push(`Offline: ${left.join(', ')}.`);
  if (news.length) $('presence-news').textContent = news.join(' ');
}

function userItem(user) {
  const li = el('li', { class: 'user', 'data-user-id': user.userId });
  const head = el('div', { class: 'who' });
  head.append(el('strong', { class: 'name' }), el('span', { class: 'uid' }),
    el('span', { class: 'role' }));
  const actions = el('div', { class: 'actions' });
  for (const [action, label] of [['disconnect', 'Disconnect'], ['revoke', 'Revoke tokens'],
    ['notify', 'Notify']]) {
    const button = el('button', { type: 'button', 'data-action': action }, label);
    button.setAttribute('aria-label', `${label} ${user.userId}`);
    actions.append(button);
  }
  li.append(head, el('ul', { class: 'connections' }), actions);
  return li;
}

function updateUser(li, user) {
  li.querySelector('.name').textContent = user.username;
  li.querySelector('.uid').textContent = user.username === user.userId ? '' : user.userId;
  li.querySelector('.role').textContent = user.role;
  const json = JSON.stringify(user.connections);
  if (li.dataset.connections === json) return;
  li.dataset.connections = json;
  li.querySelector('.connections').replaceChildren(...user.connections.map((c) => {
    const item = el('li');
    item.append(el('span', { class: 'tag' }, c.transport),
      ` #${c.sessionId} from ${c.remoteAddr ?? 'unknown'} since `,
      el('time', { datetime: c.connectedAt }, clock(c.connectedAt)));
    return item;
  }));
}

async function onUserAction(e) {
  const button = e.target.closest('button[data-action]');
  if (!button) return;
  const userId = button.closest('li.user').dataset.userId;
  const action = button.dataset.action;
  if (action === 'notify') {
    $('notify-user').value = userId;
    $('notify-message').focus();
    return;
  }
  if (action === 'revoke' && !confirm(`Revoke every token of ${userId} issued so far, and ` +
    'close their connections? Tokens issued later still work.')) return;
  const status = $('action-status');
  status.textContent = `${action === 'revoke' ? 'Revoking' : 'Disconnecting'} ${userId}…`;
  const { ok, body } = await api('POST', `/websocket/users/${encodeURIComponent(userId)}/${action}`);
  status.textContent = ok
    ? `${userId}: ${body.disconnected} connection(s) closed${action === 'revoke'
      ? ', tokens issued before now refused' : ''}.`
    : `Could not ${action} ${userId}: ${body.error}`;
}

// ---- Notifications ----

async function onNotify(e) {
  e.preventDefault();
  const form = e.target;
  const userId = form.userId.value.trim();
  const status = $('notify-status');
  status.textContent = 'Sending…';
  const { ok, body } = await api('POST', '/websocket/send-notification', {
    userId,
    message: form.message.value,
    type: form.type.value,
  });
  if (ok) {
    status.textContent = body.queued
      ? `Stored as #${body.id}; ${userId} is offline, it waits in their queue.`
      : `Sent as #${body.id} to ${body.delivered} connection(s) of ${userId}.`;
    form.message.value = '';
  } else {
    status.textContent = `Not sent: ${body.error}`;
  }
}

/** A REST call with the token; a refused token signs out. */
async function api(method, path, json) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (json !== undefined) headers['Content-Type'] = 'application/json';
  try {
    const response = await fetch(path, {
      method,
      headers,
      body: json === undefined ? undefined : JSON.stringify(json),
    });
    const body = await response.json().catch(() => ({ error: response.statusText }));
    if (response.status === 401) logout(`The server refused this token: ${body.error}`);
    return { ok: response.ok, body };
  } catch (err) {
    return { ok: false, body: { error: err.message } };
  }
}

// ---- Webhooks ----

/** Reads the endpoints, and the oldest failed events of those that have some, now and then
 * every few seconds while signed in (not while the tab is hidden). Endpoints are configured at
 * start: a gateway without any is read once. */
async function refreshWebhooks() {
  const w = state.webhooks;
  clearTimeout(w.timer);
  const read = ++w.reads; // only the latest read draws and schedules the next
  if (!document.hidden) {
    const list = await api('GET', '/websocket/webhooks');
    if (read !== w.reads) return;
    if (list.ok) {
      const failed = await Promise.all(list.body.endpoints.map((e) => (e.failed > 0
        ? api('GET', `/websocket/webhooks/failed?endpoint=${encodeURIComponent(e.name)}` +
          `&limit=${FAILED_LISTED}`)
        : null)));
      if (read !== w.reads) return;
      renderWebhooks(list.body.endpoints, failed.map((f) => (f && f.ok ? f.body.events : [])));
      if (!list.body.endpoints.length) return;
    } else {
      showWebhooksNote(`Could not read the webhooks: ${list.body.error}`);
    }
  }
  w.timer = setTimeout(refreshWebhooks, WEBHOOKS_EVERY_MS);
}

function stopWebhooks() {
  const w = state.webhooks;
  clearTimeout(w.timer);
  w.reads++;
  w.started = false;
  $('webhooks').replaceChildren();
  $('webhooks-status').textContent = '';
  showWebhooksNote('Loading…');
}

function showWebhooksNote(text) {
  $('webhooks-empty').textContent = text;
  $('webhooks-empty').hidden = !text;
}

function renderWebhooks(endpoints, failedLists) {
  showWebhooksNote(endpoints.length ? ''
    : 'No webhook endpoint is configured (WEBHOOK_URL, WEBHOOKS_FILE).');
  $('webhooks-listed').textContent = endpoints.length ? `(${endpoints.length})` : '';
  changed('webhooks', [endpoints, failedLists], () => {
    // Redrawn whole; the focused button is found again by its key, so focus survives.
    const focused = document.activeElement?.dataset?.focusKey;
    $('webhooks').replaceChildren(...endpoints.map((e, i) => webhookItem(e, failedLists[i])));
    if (focused) document.querySelector(`[data-focus-key="${CSS.escape(focused)}"]`)?.focus();
  });
}

function webhookItem(e, failed) {
  const li = el('li', { class: 'webhook', 'data-endpoint': e.name });
  const h = e.health;
  const verdict = !h.lastResult ? 'no request yet'
    : h.lastResult === 'ok' ? 'ok' : `failing, ${h.consecutiveFailures} in a row`;
  const head = el('div', { class: 'who' });
  head.append(el('h3', {}, e.name), el('span', { class: `health ${h.lastResult ?? 'none'}` },
    verdict));
  const filters = [`events: ${e.events.join(', ')}`];
  if (e.messageEvents.length) filters.push(`message events: ${e.messageEvents.join(', ')}`);
  if (e.rooms.length) filters.push(`rooms: ${e.rooms.join(', ')}`);
  li.append(head, el('p', { class: 'url' }, e.url), el('p', { class: 'meta' },
    filters.join(' · ')));

  const figures = el('dl', { class: 'backlog' });
  const figure = (term, value, key) => {
    const item = el('div');
    item.append(el('dt', {}, term), el('dd', key ? { 'data-figure': key } : {}, value));
    figures.append(item);
  };
  figure('Pending', String(e.pending), 'pending');
  figure('Failed', String(e.failed), 'failed');
  figure('Oldest pending', e.oldestPendingAt ? clock(e.oldestPendingAt) : '–');
  figure('Last request', h.lastAttemptAt
    ? `${clock(h.lastAttemptAt)}: ${h.lastResult === 'ok' ? 'ok' : h.lastError}` : 'none yet');
  if (h.nextAttemptAt) figure('Next try', clock(h.nextAttemptAt));
  li.append(figures);

  if (e.failed > 0) {
    const all = el('button', { type: 'button', 'data-action': 'resend-all',
      'data-focus-key': `resend-all:${e.name}` }, 'Send all again');
    all.setAttribute('aria-label', `Send all ${e.failed} failed events of ${e.name} again`);
    const actions = el('div', { class: 'actions' });
    actions.append(all);
    const tableId = `failed-${e.name}`;
    const table = el('table', { class: 'failed', id: tableId });
    const caption = el('caption', {}, failed.length < e.failed
      ? `Failed events of ${e.name}, the oldest ${failed.length} of ${e.failed}`
      : `Failed events of ${e.name}`);
    const head = el('tr');
    for (const name of ['Event', 'Type', 'Happened', 'Tries', 'Last error', 'Data', '']) {
      head.append(el('th', { scope: 'col' }, name));
    }
    const thead = el('thead');
    thead.append(head);
    const tbody = el('tbody');
    for (const f of failed) {
      const row = tr([`#${f.id}`, f.type, clock(f.timestamp), String(f.attempts),
        f.lastError ?? '']);
      row.dataset.eventId = String(f.id);
      const data = el('details');
      data.append(el('summary', {}, 'show'), el('pre', {}, JSON.stringify(f.data, null, 2)));
      const again = el('button', { type: 'button', 'data-action': 'resend', 'data-id': f.id,
        'data-focus-key': `resend:${e.name}:${f.id}` }, 'Send again');
      again.setAttribute('aria-label', `Send event #${f.id} to ${e.name} again`);
      const dataCell = el('td');
      dataCell.append(data);
      const actionCell = el('td');
      actionCell.append(again);
      row.append(dataCell, actionCell);
      tbody.append(row);
    }
    table.append(caption, thead, tbody);
    const scroll = el('div', { class: 'scroll', tabindex: '0', role: 'region',
      'aria-labelledby': tableId });
    scroll.append(table);
    li.append(actions, scroll);
  }
  return li;
}

/** "Send again" (one event) and "Send all again" (an endpoint's): the events become pending,
 * the endpoint's sender takes them in its next batch; the panel is read again at once. */
async function onWebhookAction(e) {
  const button = e.target.closest('button[data-action^="resend"]');
  if (!button) return;
  const endpoint = button.closest('li.webhook').dataset.endpoint;
  const request = { endpoint };
  if (button.dataset.action === 'resend') request.ids = [Number(button.dataset.id)];
  const status = $('webhooks-status');
  status.textContent = `Sending ${request.ids ? `#${request.ids[0]}` : 'all'} to ${endpoint} again…`;
  button.disabled = true;
  const { ok, body } = await api('POST', '/websocket/webhooks/failed/resend', request);
  status.textContent = ok
    ? `${endpoint}: ${body.resent} event(s) sent again.`
    : `Could not send again to ${endpoint}: ${body.error}`;
  button.disabled = false;
  refreshWebhooks();
}

// ---- Rooms, queues, history ----

function renderRooms(o) {
  $('rooms-empty').hidden = o.rooms.length > 0;
  $('rooms-listed').textContent =
    o.roomsTotal > o.rooms.length ? `(${o.rooms.length} of ${o.roomsTotal})` : `(${o.roomsTotal})`;
  $('rooms').replaceChildren(...o.rooms.map((room) => {
    const li = el('li', { class: 'room', 'data-room': room.name });
    const p = room.policy;
    li.append(el('h3', {}, room.name),
      el('p', { class: 'meta' }, `${room.onlineTotal} of ${room.membersTotal} online`),
      el('p', { class: 'policy' },
        `join: ${p.join} · post: ${p.post} · history: ${p.history} (policy ${p.pattern})`));
    const members = el('ul', { class: 'members' });
    for (const m of room.members) {
      const item = el('li', { class: m.online ? 'online' : 'offline', 'data-user-id': m.userId },
        m.userId);
      item.append(el('span', { class: 'visually-hidden' }, m.online ? ' (online)' : ' (offline)'));
      if (m.addedByServer) item.append(el('span', { class: 'tag', title: 'added by the server' }, 'added'));
      const remove = el('button', { type: 'button', 'data-action': 'remove-member' }, 'Remove');
      remove.setAttribute('aria-label', `Remove ${m.userId} from ${room.name}`);
      item.append(remove);
      members.append(item);
    }
    if (room.membersTotal > room.members.length) {
      members.append(el('li', { class: 'more' }, `+${room.membersTotal - room.members.length}`));
    }
    li.append(members);
    return li;
  }));
}

/** A room member's "Remove": ends the membership (the user hears `left-room`, reason
 * `removed`); the next snapshot shows it gone. */
async function onMemberAction(e) {
  const button = e.target.closest('button[data-action="remove-member"]');
  if (!button) return;
  const userId = button.closest('li[data-user-id]').dataset.userId;
  const room = button.closest('li.room').dataset.room;
  const status = $('rooms-status');
  status.textContent = `Removing ${userId} from ${room}…`;
  const path = `/websocket/rooms/${encodeURIComponent(room)}/members/${encodeURIComponent(userId)}`;
  const { ok, body } = await api('DELETE', path);
  status.textContent = ok
    ? `${userId}: ${body.removed ? `removed from ${room}` : `was not in ${room}`}.`
    : `Could not remove ${userId} from ${room}: ${body.error}`;
}

function renderQueues(q) {
  $('queues-empty').hidden = q.largest.length > 0;
  $('queues').hidden = q.largest.length === 0;
  document.querySelector('#queues tbody').replaceChildren(...q.largest.map((row) =>
    tr([row.userId, String(row.pending)])));
}

function renderHistory(rows) {
  document.querySelector('#history tbody').replaceChildren(...rows.map((s) => {
    const row = tr([`#${s.sessionId}`, s.userId, s.transport, s.remoteAddr ?? '',
      clock(s.connectedAt), s.disconnectedAt ? clock(s.disconnectedAt) : 'live',
      s.disconnectReason ?? '']);
    if (!s.disconnectedAt) row.classList.add('live');
    return row;
  }));
}

function tr(cells) {
  const row = el('tr');
  row.append(...cells.map((c) => el('td', {}, c)));
  return row;
}

// ---- Helpers ----

function el(name, attrs = {}, text) {
  const node = document.createElement(name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** `HH:MM:SS` in the viewer's time zone, with the date when it is not today. */
function clock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const time = d.toLocaleTimeString([], { hour12: false });
  return d.toDateString() === new Date().toDateString()
    ? time
    : `${d.toLocaleDateString()} ${time}`;
}

start();

// The browser side of client.test.js: a page of "the application's site" that imports the
// built package as the browser's own ES module (/dist/index.js, served from clients/js/dist),
// starts clients of it, and keeps what each one handed the application (events, message ids,
// state changes, the token getter's calls, the outcome of each send) for the test to read
// through `page.evaluate`. Tokens come from the site's /token, as an application's back end
// would issue them; the test decides what each one is.
import { connect, SERVER_EVENT_FIELDS } from '/dist/index.js';
import { io } from 'socket.io-client';

const clients = new Map();

/**
 * A network that loses the server's acks while `dropAcks` is set, for a client started with
 * `lossy: true`: the send reaches the server, its ack never reaches the package. Below the
 * package, on either door: the standard WebSocket's `onmessage`, or socket.io-client's ack
 * callbacks.
 */
const network = { dropAcks: false };

class LossyWebSocket extends WebSocket {
  set onmessage(listener) {
    super.onmessage = listener && ((message) => {
      if (network.dropAcks && JSON.parse(message.data).event === 'ack') return;
      listener(message);
    });
  }

  get onmessage() {
    return super.onmessage;
  }
}

function lossyIo(url, options) {
  const socket = io(url, options);
  const emit = socket.emit.bind(socket);
  socket.emit = (event, ...args) => {
    const ack = typeof args.at(-1) === 'function' ? args.pop() : undefined;
    if (!ack) return emit(event, ...args);
    return emit(event, ...args, (...reply) => network.dropAcks || ack(...reply));
  };
  return socket;
}

/** What the test can read of a client: plain data, copied out by `page.evaluate`. */
function recorder(client) {
  const seen = { states: [], events: [], ids: [], unknownFields: [], asked: [], sends: [] };
  for (const name of Object.keys(SERVER_EVENT_FIELDS)) {
    client.on(name, (data) => {
      seen.events.push({ name, data });
      if (typeof data?.id === 'number') seen.ids.push(data.id);
      // A field the server sends that the package's types lack fails the test.
      const known = SERVER_EVENT_FIELDS[name].map((f) => f.replace(/\?$/, ''));
      for (const key of Object.keys(data ?? {})) {
        if (!known.includes(key)) seen.unknownFields.push(`${name}.${key}`);
      }
    });
  }
  client.onState((state) => seen.states.push(state));
  return seen;
}

window.switchboard = {
  /**
   * Starts client `name`, of the user of that name, against the gateway at `url`. Socket.IO
   * over WebSocket alone, as the DevTools protocol shows WebSocket frames and not polling; its
   * `io` is left to the package to import, except on the lossy network.
   */
  start(name, { url, transport, lossy = false }) {
    let seen;
    const token = async (reason) => {
      seen.asked.push(reason);
      const response = await fetch(`/token?sub=${encodeURIComponent(name)}&reason=${reason}`);
      if (!response.ok) throw new Error(`/token: ${response.status}`);
      return response.text();
    };
    const client = connect({
      url,
      token,
      transport,
      socketOptions: { transports: ['websocket'] },
      backoff: { initialMs: 200, maxMs: 1000 },
      ...(lossy ? { WebSocket: LossyWebSocket, io: lossyIo } : {}),
    });
    seen = recorder(client);
    clients.set(name, { client, seen });
  },
  network,
  client: (name) => clients.get(name).client,
  seen: (name) => clients.get(name).seen,
  /** A send whose ack the test waits for later (it may be held while the server is down). */
  send(name, message) {
    const { client, seen } = clients.get(name);
    const entry = { message };
    seen.sends.push(entry);
    client.sendMessage(message).then(
      (ack) => void (entry.ack = ack),
      (error) => void (entry.error = `${error.code}: ${error.message}`),
    );
  },
  /** Every client's state changes, for a failure's message. */
  states: () => Object.fromEntries([...clients].map(([name, { seen }]) => [name, seen.states])),
};

/**
 * The Socket.IO door through the official `socket.io-client` (an optional peer dependency):
 * passed in as `io` by the application, or imported on first use.
 *
 * socket.io-client's own reconnection is turned off: it would keep the `auth` of the first
 * connection (a stale cursor) and know nothing of the server's close reasons. Each attempt is
 * a fresh `io()` with the current token and cursor in `auth`; the server's reason arrives as
 * `error { code }` just before a disconnect (docs/protocol.md section 11), and an admission
 * refusal as the `connect_error` message.
 */
import { AckReply, Connector, Handlers, Opening, Transport } from './transport.js';
import { CLOSE_REASONS, hintOf, reasonOfRefusal } from './reasons.js';

/** The parts of a socket.io-client `Socket` the client uses. */
export interface SocketLike {
  emit(event: string, ...args: unknown[]): unknown;
  on(event: string, listener: (...args: any[]) => void): unknown;
  onAny(listener: (event: string, ...args: any[]) => void): unknown;
  disconnect(): unknown;
}

/** socket.io-client's `io` (or anything of its shape). */
export type IoFunction = (url: string, options: Record<string, unknown>) => SocketLike;

export interface SocketIoOptions {
  io?: IoFunction;
  /** More options for `io()` (e.g. `transports: ['websocket']`); the client sets `auth`, `reconnection` and `forceNew`. */
  socketOptions?: Record<string, unknown>;
}

/** Loads socket.io-client when the application did not pass `io`. */
export async function loadIo(): Promise<IoFunction> {
  const name = 'socket.io-client';
  try {
    // A variable name keeps bundlers and the compiler from requiring the optional peer.
    const module = (await import(/* @vite-ignore */ name)) as { io?: IoFunction; default?: IoFunction };
    const io = module.io ?? module.default;
    if (!io) throw new Error('socket.io-client exports no io()');
    return io;
  } catch (cause) {
    throw new Error('the Socket.IO transport needs socket.io-client: npm install socket.io-client, or pass `io`', { cause });
  }
}

export function socketIoConnector(io: IoFunction, options: SocketIoOptions = {}): Connector {
  return (opening, handlers) => new SocketIoTransport(io, opening, handlers, options);
}

class SocketIoTransport implements Transport {
  private socket: SocketLike | undefined;
  private done = false;
  /** The close reason the server named in `error` before disconnecting, with its hint. */
  private notice: { reason: string; hint: number | undefined } | undefined;

  constructor(io: IoFunction, opening: Opening, private readonly handlers: Handlers, options: SocketIoOptions) {
    const auth: Record<string, unknown> = { token: opening.token };
    if (opening.lastMessageId !== undefined) auth.lastMessageId = opening.lastMessageId;
    try {
      this.socket = io(opening.url, { ...options.socketOptions, auth, reconnection: false, forceNew: true });
    } catch {
      queueMicrotask(() => this.end('transport_error'));
      return;
    }
    const socket = this.socket;
    socket.onAny((event: string, data: unknown) => {
      if (event === 'error') this.noted(data);
      handlers.event(event, data);
    });
    socket.on('connect_error', (error: { message?: string }) => {
      // `server busy; retry after N ms` carries its hint in the text.
      const message = String(error?.message ?? '');
      this.end(reasonOfRefusal(message), hintOf(message));
    });
    socket.on('disconnect', (why: string) => {
      if (why === 'io client disconnect') return;
      this.end(this.notice?.reason ?? 'transport_error', this.notice?.hint);
    });
  }

  send(event: string, data: unknown, ack?: (reply: AckReply) => void): void {
    if (!this.socket || this.done) return;
    const payload = data === undefined ? null : data;
    if (ack) this.socket.emit(event, payload, ack);
    else this.socket.emit(event, payload);
  }

  close(): void {
    this.done = true;
    this.socket?.disconnect();
  }

  private noted(data: unknown): void {
    const code = (data as { code?: unknown } | undefined)?.code;
    // `rate_limited` is also the code of one refused event; only a disconnect makes it a close.
    if (typeof code === 'string' && code in CLOSE_REASONS) this.notice = { reason: code, hint: hintOf(data) };
  }

  private end(reason: string, retryAfterMs?: number): void {
    if (this.done) return;
    this.done = true;
    this.socket?.disconnect();
    this.handlers.ended(reason, retryAfterMs);
  }
}

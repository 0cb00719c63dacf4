/**
 * What the client needs of a door, so that `/ws` and Socket.IO differ only in their framing:
 * open with a token and a cursor, send an event with an optional ack callback, hand every
 * server event up, and say once, with a reason word (see `reasons.ts`), why the connection
 * ended or never opened.
 */

/** A reply to an event sent with an ack (docs/protocol.md section 5). */
export type AckReply =
  | ({ ok: true } & Record<string, unknown>)
  | { ok: false; error: string; code: string };

export interface Opening {
  /** The server's base URL, `http(s)://host[:port]`. */
  url: string;
  token: string;
  lastMessageId?: number;
}

export interface Handlers {
  event(name: string, data: unknown): void;
  /** Called once: the connection ended or could not open. */
  ended(reason: string, retryAfterMs?: number): void;
}

export interface Transport {
  send(event: string, data: unknown, ack?: (reply: AckReply) => void): void;
  /** Ends the connection from this side; `ended` is not called after it. */
  close(): void;
}

export type Connector = (opening: Opening, handlers: Handlers) => Transport;

/** The reply a transport gives to the acks it can no longer deliver. */
export function isAckReply(value: unknown): value is AckReply {
  return typeof value === 'object' && value !== null && typeof (value as { ok?: unknown }).ok === 'boolean';
}

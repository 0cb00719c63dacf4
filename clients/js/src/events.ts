/**
 * The protocol's events and payloads as types (docs/protocol.md sections 3, 4 and 6).
 *
 * Each map has a runtime twin listing its names and payload fields, which the compiler holds
 * equal to the types (`satisfies` plus the exactness checks in `test/types.ts`), and which
 * `test/events.test.js` holds equal to docs/protocol.md's event tables and to the frames
 * the real server sends: a new event or field on either side fails a test instead of
 * drifting silently.
 */

/** A user as the server describes one (section 3). */
export interface User {
  userId: string;
  username: string;
  role: string;
  /** ISO-8601 UTC: the user's oldest live connection. */
  connectedAt: string;
  /** Live connections of the user (0 for `system` and for REST callers not connected). */
  sessions: number;
}

/** One entry of `users-stats.connectionTimes`. */
export interface ConnectionTime {
  userId: string;
  username: string;
  connectedAt: string;
  connectedSeconds: number;
  totalConnectedSeconds: number;
  sessionsCount: number;
  firstSeen: string;
}

/** `broadcast-message` / `private-message`: a stored chat message. */
export interface ChatMessage {
  id: number;
  from: User;
  message: string;
  timestamp: string;
}

/** `room-message`. */
export interface RoomMessage extends ChatMessage {
  room: string;
}

/** `notification` / `broadcast-notification` (REST or the embedded API). */
export interface Notification {
  id: number;
  from: User;
  message: string;
  type: string;
  timestamp: string;
}

/** `role-notification`. */
export interface RoleNotification extends Notification {
  targetRole: string;
}

export interface Presence {
  user: User;
  timestamp: string;
  activeUsersCount: number;
}

export interface ActiveUsers {
  users: User[];
  count: number;
}

export interface UsersStats {
  totalUsers: number;
  usersByRole: Record<string, number>;
  connectionTimes: ConnectionTime[];
}

export interface SyncComplete {
  /** The highest id replayed (or `since` when nothing was). */
  lastMessageId: number;
  count: number;
  /** More than one page was waiting: `sync` again from `lastMessageId` (the client does). */
  more: boolean;
  /** `false`: retention deleted messages after the cursor; the history has a hole. */
  complete: boolean;
}

/**
 * `error`: a refusal (section 5), or the reason of a server-side close on Socket.IO
 * (section 11). `retryAfterMs` / `retryAfter` (seconds) are an optional hint of when to come
 * back, which a later server may add to the shutdown notice; the client waits at least that.
 */
export interface ErrorEvent {
  message: string;
  code: string;
  retryAfterMs?: number;
  retryAfter?: number;
}

/** Every server event of section 6 but `ack` (which the client consumes), by name. */
export interface ServerEvents {
  connected: { message: string; user: User; timestamp: string; rooms: string[] };
  'user-connected': Presence;
  'user-disconnected': Presence;
  'presence-diff': { joins: User[]; leaves: User[]; activeUsersCount: number; timestamp: string };
  /** A presence storm's changes, counted instead of named: the list of users is out of date. */
  'presence-summary': { connected: number; disconnected: number; activeUsersCount: number; timestamp: string };
  'active-users': ActiveUsers;
  'users-stats': UsersStats;
  'broadcast-message': ChatMessage;
  'private-message': ChatMessage;
  'room-message': RoomMessage;
  'joined-room': { room: string; message: string };
  /** `reason` (e.g. `not_granted`, `removed`) when the server ended the membership. */
  'left-room': { room: string; message: string; reason?: string };
  'user-joined-room': { user: User; room: string; timestamp: string };
  'user-left-room': { user: User; room: string; timestamp: string };
  notification: Notification;
  'broadcast-notification': Notification;
  'role-notification': RoleNotification;
  'sync-complete': SyncComplete;
  'token-expiring': { exp: number; secondsLeft: number };
  error: ErrorEvent;
}

/** A message that cost a commit: the ack of `send-message` / `room-message`. */
export interface SendAck {
  id: number;
  delivered: number;
  queued: boolean;
  /** A resend the server recognised by its `clientMsgId`: the original's ack. */
  duplicate?: boolean;
}

/** Every client event of section 4: its payload and the fields of its successful ack. */
export interface ClientEvents {
  'get-active-users': { payload: void; ack: ActiveUsers };
  'get-users-stats': { payload: void; ack: UsersStats };
  'send-message': { payload: { message: string; to?: string; clientMsgId?: string }; ack: SendAck };
  'join-room': { payload: { room: string }; ack: { room: string; joined: boolean } };
  'leave-room': { payload: { room: string }; ack: { room: string } };
  'room-message': {
    payload: { room: string; message: string; clientMsgId?: string };
    ack: SendAck & { room: string };
  };
  sync: { payload: { since: number }; ack: SyncComplete };
  'refresh-token': { payload: { token: string }; ack: { exp: number } };
}

export type ServerEventName = keyof ServerEvents;
export type ClientEventName = keyof ClientEvents;
export type Payload<E extends ClientEventName> = ClientEvents[E]['payload'];
export type AckOf<E extends ClientEventName> = ClientEvents[E]['ack'];

/** The payload fields of each server event, optional ones marked with a trailing `?`. */
export const SERVER_EVENT_FIELDS = {
  connected: ['message', 'user', 'timestamp', 'rooms'],
  'user-connected': ['user', 'timestamp', 'activeUsersCount'],
  'user-disconnected': ['user', 'timestamp', 'activeUsersCount'],
  'presence-diff': ['joins', 'leaves', 'activeUsersCount', 'timestamp'],
  'presence-summary': ['connected', 'disconnected', 'activeUsersCount', 'timestamp'],
  'active-users': ['users', 'count'],
  'users-stats': ['totalUsers', 'usersByRole', 'connectionTimes'],
  'broadcast-message': ['id', 'from', 'message', 'timestamp'],
  'private-message': ['id', 'from', 'message', 'timestamp'],
  'room-message': ['id', 'from', 'message', 'room', 'timestamp'],
  'joined-room': ['room', 'message'],
  'left-room': ['room', 'message', 'reason?'],
  'user-joined-room': ['user', 'room', 'timestamp'],
  'user-left-room': ['user', 'room', 'timestamp'],
  notification: ['id', 'from', 'message', 'type', 'timestamp'],
  'broadcast-notification': ['id', 'from', 'message', 'type', 'timestamp'],
  'role-notification': ['id', 'from', 'message', 'type', 'targetRole', 'timestamp'],
  'sync-complete': ['lastMessageId', 'count', 'more', 'complete'],
  'token-expiring': ['exp', 'secondsLeft'],
  error: ['message', 'code', 'retryAfterMs?', 'retryAfter?'],
} as const satisfies { [E in ServerEventName]: readonly FieldName<ServerEvents[E]>[] };

/** The payload fields of each client event (`[]`: no payload). */
export const CLIENT_EVENT_FIELDS = {
  'get-active-users': [],
  'get-users-stats': [],
  'send-message': ['message', 'to?', 'clientMsgId?'],
  'join-room': ['room'],
  'leave-room': ['room'],
  'room-message': ['room', 'message', 'clientMsgId?'],
  sync: ['since'],
  'refresh-token': ['token'],
} as const satisfies { [E in ClientEventName]: readonly FieldName<Payload<E>>[] };

/** Server events the client handles itself and never hands to the application. */
export const INTERNAL_SERVER_EVENTS = ['ack'] as const;

/** A payload's field names, optional ones spelled with a trailing `?` as in the tables. */
export type FieldName<T> = T extends void
  ? never
  : {
      [K in keyof T & string]-?: undefined extends T[K] ? `${K}?` : K;
    }[keyof T & string];

/** The fields a map's payloads have that its runtime twin does not list (`never`: none). */
type Unlisted<M, F extends { [E in keyof M]: readonly string[] }> = {
  [E in keyof M]: Exclude<FieldName<M[E]>, F[E][number]>;
}[keyof M];
type AssertNone<T extends never> = T;
/** @internal Compile-time proof that the field lists name every field of the types. */
export type FieldListsComplete = [
  AssertNone<Unlisted<ServerEvents, typeof SERVER_EVENT_FIELDS>>,
  AssertNone<Unlisted<{ [E in ClientEventName]: Payload<E> }, typeof CLIENT_EVENT_FIELDS>>,
];

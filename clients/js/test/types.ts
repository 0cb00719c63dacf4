// Compile-time tests of the public types (`npm run typecheck`): handlers get the payload of
// their event, requests take their event's payload and resolve to its ack, and mistakes fail
// to compile (each `@ts-expect-error` must meet an error).
import { connect, type ServerEvents } from '../dist/index.js';

const client = connect({ url: 'http://localhost:3000', token: async () => 'jwt' });

client.on('room-message', (m) => {
  const room: string = m.room;
  const id: number = m.id;
  const sender: string = m.from.username;
  void [room, id, sender];
});
client.on('left-room', (m) => {
  const reason: string | undefined = m.reason;
  void reason;
});
client.on('my-app-event', (data) => {
  const anything: unknown = data.whatever;
  void anything;
});
// @ts-expect-error a broadcast has no room
client.on('broadcast-message', (m) => m.room);

async function requests(): Promise<void> {
  const ack = await client.sendMessage('hi', { to: 'bob' });
  const dup: boolean | undefined = ack.duplicate;
  const joined: boolean = (await client.joinRoom('general')).joined;
  const complete: boolean = (await client.request('sync', { since: 0 })).complete;
  const count: number = (await client.getActiveUsers()).count;
  void [dup, joined, complete, count];
  // @ts-expect-error join-room needs a room
  await client.request('join-room', {});
  // @ts-expect-error no such client event
  await client.request('shout', { message: 'x' });
}
void requests;

const welcome: ServerEvents['connected']['rooms'] = [];
void welcome;
client.onState((s) => {
  if (s.state === 'recovered') {
    const n: number = s.count;
    void n;
  }
  if (s.state === 'closed') {
    const why: string = s.reason;
    void why;
  }
});

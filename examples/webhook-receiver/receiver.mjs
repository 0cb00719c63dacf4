// The README's webhook receiver ("Webhooks"), runnable: `npm ci`, then
// `WEBHOOK_SECRET=whsec_... PORT=8080 node receiver.mjs`, and point the gateway's WEBHOOK_URL
// (with the same WEBHOOK_SECRET) at it. Everything below this comment is the README's code,
// line for line (receiver.test.mjs checks that, and runs it against the real gateway).
import { createServer } from 'node:http';
import { Webhook } from 'standardwebhooks';

const webhook = new Webhook(process.env.WEBHOOK_SECRET); // the gateway's secret, whsec_...
const handled = new Set(); // ids of the events acted on (keep them in your database)

const server = createServer(async (req, res) => {
  req.setEncoding('utf8');
  let body = '';
  for await (const chunk of req) body += chunk;
  let payload;
  try {
    payload = webhook.verify(body, req.headers); // the signature, and a timestamp within 5 min
  } catch {
    return res.writeHead(401).end(); // not signed with our secret: refused
  }
  for (const event of payload.events ?? [payload]) { // a batch, or one event; in order
    if (handled.has(event.id)) continue; // at least once: a retry repeats events
    console.log('event', event.id, event.type, event.data.user.userId);
    if (event.type === 'user.offline') {
      console.log(`${event.data.user.username} went offline (${event.data.reason})`);
    }
    handled.add(event.id);
  }
  res.writeHead(204).end(); // a 2xx takes them all; anything else and they come again
});
server.listen(Number(process.env.PORT ?? 8080), () => console.log('listening on port', server.address().port));

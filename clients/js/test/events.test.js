// The package's event types against the server's own descriptions, so they cannot drift:
// docs/protocol.md's tables of client events (section 4) and server events (section 6),
// which tests/api/protocol_doc.rs in turn pins to the server's code; the README's close
// reasons table; and the close sentences in src/hub/outbound.rs. (The frames the real server
// sends are checked too: every integration test records events through `record()`, which
// fails a test on a payload field the types do not know.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { root } from './support.js';
import { CLIENT_EVENT_FIELDS, SERVER_EVENT_FIELDS, INTERNAL_SERVER_EVENTS, CLOSE_REASONS } from '../dist/index.js';

/** Fields the package accepts beyond the documents: the server's optional retry hint. */
const HINT_FIELDS = ['error.retryAfterMs', 'error.retryAfter'];

const protocol = readFileSync(join(root, 'docs', 'protocol.md'), 'utf8');

function section(number) {
  const start = protocol.indexOf(`\n## ${number}. `);
  const end = protocol.indexOf('\n## ', start + 1);
  assert.ok(start >= 0, `docs/protocol.md has a section ${number}`);
  return protocol.slice(start, end);
}

/** `{ a, b?, c: [user] }` → ['a', 'b?', 'c']; `—` → []. */
function fieldsOf(cell) {
  const inner = /\{(.*)\}/.exec(cell)?.[1];
  if (!inner) return [];
  let depth = 0;
  let part = '';
  const parts = [];
  for (const ch of inner) {
    if ('[{('.includes(ch)) depth += 1;
    if (']})'.includes(ch)) depth -= 1;
    if (ch === ',' && depth === 0) {
      parts.push(part);
      part = '';
    } else part += ch;
  }
  parts.push(part);
  return parts.map((p) => p.split(':')[0].trim()).filter(Boolean);
}

/** The event table of a section: event name → the union of its rows' fields. */
function eventTable(number) {
  const table = new Map();
  for (const line of section(number).split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length < 4 || !cells[1].startsWith('`')) continue;
    const names = [...cells[1].matchAll(/`([a-z-]+)`/g)].map((m) => m[1]);
    for (const name of names) {
      const fields = table.get(name) ?? new Set();
      for (const f of fieldsOf(cells[2])) fields.add(f);
      table.set(name, fields);
    }
  }
  return table;
}

function compare(documented, ours, side) {
  const internal = side === 'server' ? INTERNAL_SERVER_EVENTS : [];
  assert.deepEqual(
    [...documented.keys()].filter((n) => !internal.includes(n)).sort(),
    Object.keys(ours).sort(),
    `the ${side} events of docs/protocol.md and of the package differ`,
  );
  for (const [name, fields] of documented) {
    if (internal.includes(name)) continue;
    const plain = (f) => f.replace(/\?$/, '');
    const doc = new Set([...fields].map(plain));
    const mine = ours[name];
    for (const f of doc) assert.ok(mine.map(plain).includes(f), `${side} event ${name}: the package lacks "${f}"`);
    for (const f of mine) {
      const known = doc.has(plain(f)) || HINT_FIELDS.includes(`${name}.${plain(f)}`);
      assert.ok(known, `${side} event ${name}: the package has "${f}", the protocol does not`);
      // Required in the package means present in every documented row.
      if (!f.endsWith('?')) assert.ok(doc.has(f), `${side} event ${name}: "${f}" is optional in the protocol`);
    }
  }
}

test('every client event of docs/protocol.md section 4 is typed, with its fields', () => {
  compare(eventTable(4), CLIENT_EVENT_FIELDS, 'client');
});

test('every server event of docs/protocol.md section 6 is typed, with its fields', () => {
  compare(eventTable(6), SERVER_EVENT_FIELDS, 'server');
});

test("the close reasons and codes are the README's, with the server's sentences", () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('### Close reasons'), readme.indexOf('## REST API'));
  const documented = {};
  for (const m of table.matchAll(/^\| `([a-z_]+)` \| (\d+) \|/gm)) documented[m[1]] = Number(m[2]);
  const ours = Object.fromEntries(Object.entries(CLOSE_REASONS).map(([r, { code }]) => [r, code]));
  assert.deepEqual(ours, documented);

  const outbound = readFileSync(join(root, 'src', 'hub', 'outbound.rs'), 'utf8');
  const describe = outbound.slice(outbound.indexOf('fn describe'));
  const words = outbound.slice(outbound.indexOf('fn as_str'), outbound.indexOf('fn describe'));
  for (const [reason, { sentence }] of Object.entries(CLOSE_REASONS)) {
    const variant = new RegExp(`Self::(\\w+) => "${reason}"`).exec(words)?.[1];
    assert.ok(variant, `src/hub/outbound.rs names the reason ${reason}`);
    const said = new RegExp(`Self::${variant} => "([^"]*)"`).exec(describe)?.[1];
    assert.equal(sentence, said, `the close sentence of ${reason}`);
  }
});

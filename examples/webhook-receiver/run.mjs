// Runs receiver.test.mjs with node's test runner. Node < 22 has its global WebSocket behind a
// flag (as clients/js/test/run.js does): turned on here, so the test's client is the same
// standard WebSocket a browser has.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const flags = typeof WebSocket === 'function' ? [] : ['--experimental-websocket'];
const run = spawnSync(process.execPath, [...flags, '--test', ...process.argv.slice(2), join(here, 'receiver.test.mjs')], {
  stdio: 'inherit',
});
process.exit(run.status ?? 1);

// Runs the suite with node's test runner, one file at a time (each starts its own servers on
// a 2-core machine). Node < 22 has its global WebSocket behind a flag: turned on here, so
// the /ws tests use the same standard WebSocket a browser has.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const files = readdirSync(here).filter((f) => f.endsWith('.test.js')).map((f) => join(here, f));
const flags = typeof WebSocket === 'function' ? [] : ['--experimental-websocket'];
const run = spawnSync(process.execPath, [...flags, '--test', '--test-concurrency=1', ...files, ...process.argv.slice(2)], {
  stdio: 'inherit',
});
process.exit(run.status ?? 1);

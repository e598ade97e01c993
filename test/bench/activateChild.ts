/**
 * One activation in a fresh Node process: `node activate.js <dist/extension.js> <storageDir> [warm|cold]`.
 * Loads the bundle with the stub `vscode`, times require() and activate(), then lists what is in
 * the require cache and prints one JSON line. Bundled by the benchmark (esbuild) and run with plain
 * node, so nothing but the extension itself is loaded besides this harness.
 *
 * `warm` (default) loads Node's builtin modules first, as VS Code's extension host has long done by
 * the time it activates an extension (it uses them itself), so the figure is what our bundle
 * costs; `cold` leaves them unloaded (a bare `node` process), which adds their first-load time.
 */
import { statSync } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createVscodeStub, fakeContext, installVscodeStub, STUB_ID } from './vscodeStub';

interface ExtensionModule {
  activate(ctx: unknown): unknown;
  deactivate?(): Promise<void> | void;
}

const [extensionPath, storageDir, mode = 'warm'] = process.argv.slice(2);
if (!extensionPath || !storageDir) throw new Error('usage: activate.js <extension.js> <storageDir> [warm|cold]');

const BUILTINS = ['fs', 'fs/promises', 'path', 'os', 'crypto', 'child_process', 'net', 'http', 'https', 'stream', 'events', 'util', 'url', 'perf_hooks', 'timers'];
// eslint-disable-next-line @typescript-eslint/no-require-imports
if (mode === 'warm') for (const b of BUILTINS) require(`node:${b}`);

const stub = createVscodeStub();
installVscodeStub(stub);
const ctx = fakeContext(storageDir, '0.0.0-bench', stub.missing);
const before = new Set(Object.keys(require.cache));

const t0 = performance.now();
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ext = require(extensionPath) as ExtensionModule;
const t1 = performance.now();
ext.activate(ctx);
const t2 = performance.now();

const loaded = Object.keys(require.cache).filter((k) => !before.has(k) && k !== STUB_ID);
const modules = loaded.map((file) => ({ file, bytes: statSync(file).size }));
const forbidden = loaded.filter((f) => /[\\/]mcp\.js$|@modelcontextprotocol|[\\/]zod[\\/]/.test(f));

process.stdout.write(
  `${JSON.stringify({
    mode,
    requireMs: t1 - t0,
    activateMs: t2 - t1,
    totalMs: t2 - t0,
    modules: modules.map((m) => ({ file: path.basename(m.file), bytes: m.bytes })),
    loadedBytes: modules.reduce((n, m) => n + m.bytes, 0),
    forbidden,
    missingApi: [...stub.missing].sort(),
    heapUsed: process.memoryUsage().heapUsed,
  })}\n`,
);
// The extension scheduled timers (orphan reaping): end now, as a closed window would.
process.exit(0);

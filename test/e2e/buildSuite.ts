// Compiles the extension-host suite (test/suite/*.ts) to out/test/suite/*.js: one CommonJS bundle
// per file for the Node extension host. `vscode` is provided by the host; `mocha` stays external
// so index.js and every *.test.js share one mocha instance (resolved from the repo's node_modules).
// A .ts run with tsx (not .mjs) so that `eslint test` type-checks it like the rest of test/.
//   node --import tsx test/e2e/buildSuite.ts
import * as esbuild from 'esbuild';
import * as fs from 'node:fs';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..', '..');
const srcDir = path.join(root, 'test', 'suite');
const outDir = path.join(root, 'out', 'test', 'suite');

const entryPoints = fs.readdirSync(srcDir).filter((f) => f.endsWith('.ts')).map((f) => path.join(srcDir, f));
fs.rmSync(outDir, { recursive: true, force: true }); // no stale *.test.js from deleted tests

async function main(): Promise<void> {
  await esbuild.build({
    entryPoints,
    outdir: outDir,
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    sourcemap: true,
    sourcesContent: false,
    external: ['vscode', 'mocha'],
    logLevel: 'warning',
  });
  console.log(`[buildSuite] ${entryPoints.length} file(s) -> ${path.relative(root, outDir)}`);
}

main().catch((err: unknown) => {
  console.error('[buildSuite] failed:', err);
  process.exit(1);
});

// Build: esbuild bundles each entry to CommonJS for Node; `vscode` stays external.
// `--production` minifies and drops source maps; `--watch` rebuilds on change; `--only=<name>` builds one entry.
import * as path from 'node:path';
import * as esbuild from 'esbuild';

const production = process.argv.includes('--production');
const { version } = JSON.parse((await import('node:fs')).readFileSync(new URL('./package.json', import.meta.url), 'utf8'));
const watch = process.argv.includes('--watch');

/**
 * zod 4 re-exports every locale it has as `z.locales` (about 260 KB minified, over a quarter of
 * dist/mcp.js); nothing here or in the MCP SDK picks one, and English, the default, is imported by
 * zod's schemas on their own. So that namespace holds English only.
 * @type {import('esbuild').Plugin}
 */
const zodEnglishOnly = {
  name: 'zod-english-only',
  setup(build) {
    build.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]zod[\\/]v4[\\/]/.test(args.importer) ? { path: path.resolve(args.resolveDir, args.path), namespace: 'zod-english-only' } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'zod-english-only' }, (args) => ({
      contents: 'export { default as en } from "./en.js";',
      resolveDir: path.dirname(args.path),
      loader: 'js',
    }));
  },
};

/** @type {import('esbuild').BuildOptions} */
const common = {
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  minify: production,
  sourcemap: !production,
  sourcesContent: false,
  external: ['vscode'],
  // jsonc-parser's `main` is a UMD build whose requires esbuild cannot follow: bundle its ESM build.
  alias: { 'jsonc-parser': 'jsonc-parser/lib/esm/main.js' },
  logLevel: 'warning',
  plugins: [zodEnglishOnly],
};

const builds = [
  // The extension: what VS Code loads at activation. Keep it lean (no MCP SDK, no zod).
  { ...common, entryPoints: { extension: 'src/extension.ts' }, outdir: 'dist' },
  // The QR encoder, loaded on the first QR code (src/vscode/qrView.ts).
  { ...common, entryPoints: { qr: 'src/vscode/qrSvg.ts' }, outdir: 'dist' },
  // The Inspector page and Choose Shared Tools…, loaded on first use (src/vscode/panelsModule.ts).
  { ...common, entryPoints: { panels: 'src/vscode/panels.ts' }, outdir: 'dist' },
  // The access gate, loaded on the first start by the extension and the CLI (src/core/gate/loadGate.ts).
  { ...common, entryPoints: { gate: 'src/core/gate/accessGate.ts' }, outdir: 'dist' },
  // The reachability check, loaded on the first check (src/extension.ts, doctorCheck).
  { ...common, entryPoints: { doctor: 'src/core/doctor/reachability.ts' }, outdir: 'dist' },
  // Install cloudflared…, its update check and the installer, loaded on first use (src/vscode/installModule.ts).
  { ...common, entryPoints: { install: 'src/vscode/installCloudflared.ts' }, outdir: 'dist' },
  // Share MCP Server… and the other stdio-share commands, loaded on first use (src/vscode/shareServerModule.ts).
  { ...common, entryPoints: { shareServer: 'src/vscode/shareServer.ts' }, outdir: 'dist' },
  // The MCP room, loaded on first use by the extension and by the CLI.
  { ...common, entryPoints: { mcp: 'src/mcp/index.ts' }, outdir: 'dist' },
  // The standalone CLI (`mcp-tunnel start | mcp`).
  // The CLI's version comes from package.json at build time (it has no package.json at run time).
  // The fake cloudflared the tests spawn (test/fixtures/cloudflared runs out/fake-cloudflared.js): one plain
  // JS file, so a spawn costs node's start only (no TypeScript loader); never shipped.
  { ...common, entryPoints: { 'fake-cloudflared': 'test/fixtures/fake-cloudflared/main.ts' }, outdir: 'out', minify: false, sourcemap: false },
  { ...common, entryPoints: { cli: 'src/cli.ts' }, outdir: 'dist', banner: { js: '#!/usr/bin/env node' }, define: { __MCP_TUNNEL_VERSION__: JSON.stringify(version) } },
];

// `--only=<name>[,<name>]` builds just those entries (e.g. `--only=fake-cloudflared` before the browser e2e).
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length).split(',');
const existing = [];
for (const b of builds) {
  if (only && !only.includes(Object.keys(b.entryPoints)[0])) continue;
  const entry = Object.values(b.entryPoints)[0];
  try {
    (await import('node:fs')).accessSync(entry);
    existing.push(b);
  } catch {
    // entry not written yet
  }
}

if (watch) {
  for (const b of existing) {
    const ctx = await esbuild.context(b);
    await ctx.watch();
  }
  console.log('[esbuild] watching');
} else {
  await Promise.all(existing.map((b) => esbuild.build(b)));
}

// Browser end-to-end test of the packaged extension, the way a user sees it: real VS Code (the
// server inside code-server, Node 24) in headless Debian Chromium, driven with playwright-core.
//
//   node --import tsx test/e2e/browser.e2e.ts [--vsix mcp-tunnel.vsix] [--only 1,3] [--update-docs]
//
// Scenarios (run in the order 1, 3, 4, 2: 1, 3 and 4 share one server; 2 needs a server with another PATH):
//   1  user path: stopped status bar item and welcome view → Start Tunnel from the palette (progress
//      notification) → status bar host + uptime, tree rows, tooltip, actions quick pick → Copy MCP URL
//      (clipboard) → HTTP through the fake's public port reaches the origin → Stop; the PID is gone.
//   3  VS Code's own MCP client: MCP: List Servers → MCP Tunnel → Start Server → "Discovered N tools";
//      then a helper extension (test/e2e/helper-extension) calls start_tunnel / get_tunnel_status /
//      stop_tunnel through vscode.lm.invokeTool: VS Code's confirmation, our consent modal, the status bar.
//   4  two origins shared at once: the tree (screenshot), each only with its own secret, rotate one,
//      stop one, Stop Tunnel → cloudflared gone, nothing left.
//   2  cloudflared missing (a second server, PATH without the fake): the install-guidance welcome view,
//      then Start → an error notification naming the fix.
//   install  the walkthrough (a third server, no cloudflared) → Install cloudflared from its first step
//      against a local release host (MCP_TUNNEL_TEST_RELEASE_BASE) → progress in MB → installed,
//      the step checked, the view finds it.
// Screenshots: test-results/e2e-*.png. --update-docs copies the README ones to docs/screenshots/.
// Without --vsix the VSIX is built first (esbuild --production + vsce) in a temp copy of the repo, so
// dist/ of the checkout is left alone. Env: E2E_TIMEOUT_MS (whole run, default 480000), E2E_KEEP=1,
// E2E_VERBOSE=1. Needs `bash scripts/e2e-setup.sh` first. Exit code 0 only if every scenario passed.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { build } from 'esbuild';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Locator, Page } from 'playwright-core';
import {
  NODE24, REPO_ROOT, RESULTS_DIR, installVsix, launchBrowser, makeRigDirs, markedPids, openWorkbench, readExtHostLog,
  runCommand, startVsCodeServer, waitForExtensionActivated, type BrowserSession, type VsCodeServer,
} from './codeServer';
import { sleep } from '../support/wait';

const EXTENSION_ID = 'mcp-tunnel.mcp-tunnel';
const HELPER_DIR = path.join(REPO_ROOT, 'test', 'e2e', 'helper-extension');
const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures');
const DOCS_SCREENSHOTS = path.join(REPO_ROOT, 'docs', 'screenshots');
const TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS ?? 480_000);
/** Generous: the machine has 2 cores and other test runs share it. */
const UI_TIMEOUT = 45_000;

/** test-results screenshot → docs/screenshots name (README). */
const DOCS_PICKS: Record<string, string> = {
  'e2e-03-active-view': 'active.png',
  'e2e-21-cloudflared-missing': 'cloudflared-missing.png',
  'e2e-04-tooltip': 'tooltip.png',
  'e2e-05-actions': 'actions.png',
  'e2e-32-mcp-tools-discovered': 'mcp-server.png',
  'e2e-34-agent-consent': 'agent-consent.png',
  'e2e-06b-client-configs': 'client-configs.png',
  'e2e-06c-qr': 'qr.png',
  'e2e-09-open-warning': 'open-warning.png',
  'e2e-06d-two-shares': 'two-shares.png',
  'e2e-06e-stdio-share': 'stdio-share.png',
  'e2e-06f-vscode-mcp-client': 'vscode-mcp-client.png',
  'e2e-06g-inspector': 'inspector.png',
  'e2e-06h-read-only': 'read-only.png',
};

const log = (msg: string): void => console.log(`[e2e] ${msg}`);
let scenarioT0 = Date.now();
const since = (): string => `+${((Date.now() - scenarioT0) / 1000).toFixed(1)}s`;

/** Screenshot into test-results/<name>.png, logged with the time into the scenario. */
async function shot(page: Page, name: string): Promise<void> {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  await page.screenshot({ path: path.join(RESULTS_DIR, `${name}.png`) });
  log(`${since()} screenshot test-results/${name}.png`);
}

// ------------------------------------------------------------------------------------------------
// Small helpers
// ------------------------------------------------------------------------------------------------

/** Poll `fn` (every 200 ms) until it returns a truthy value; throws with `what` after `timeoutMs`. */
async function waitUntil<T>(fn: () => Promise<T | undefined | false | null> | T | undefined | false | null, what: string, timeoutMs = UI_TIMEOUT): Promise<T> {
  const end = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${lastErr instanceof Error ? lastErr.message : JSON.stringify(lastErr)})` : ''}`);
    await sleep(200);
  }
}

function check(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(`check failed: ${message}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function run(cmd: string, args: string[], cwd: string): void {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 180_000, env: { ...process.env, npm_config_update_notifier: 'false' } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal ?? r.error?.message}):\n${r.stdout}${r.stderr}`);
}

const VSCE = path.join(REPO_ROOT, 'node_modules', '.bin', 'vsce');

/** `node esbuild.mjs --production && vsce package --no-dependencies` in a temp copy of the repo (dist/ here is not touched). */
function buildVsix(workDir: string): string {
  const src = path.join(workDir, 'ext');
  fs.mkdirSync(src, { recursive: true });
  const skip = new Set(['node_modules', '.git', '.e2e', 'test-results', 'out', 'dist', 'docs', 'test']);
  for (const e of fs.readdirSync(REPO_ROOT)) {
    if (skip.has(e) || e.endsWith('.vsix')) continue;
    fs.cpSync(path.join(REPO_ROOT, e), path.join(src, e), { recursive: true });
  }
  fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(src, 'node_modules'), 'dir');
  const out = path.join(workDir, 'mcp-tunnel.vsix');
  run(process.execPath, ['esbuild.mjs', '--production'], src);
  run(VSCE, ['package', '--no-dependencies', '-o', out], src);
  return out;
}

/** The helper extension: extension.ts bundled to extension.js next to its package.json, packaged with vsce. */
async function buildHelperVsix(workDir: string): Promise<string> {
  const dir = path.join(workDir, 'helper');
  fs.mkdirSync(dir, { recursive: true });
  for (const f of ['package.json', 'LICENSE']) fs.copyFileSync(path.join(HELPER_DIR, f), path.join(dir, f));
  await build({
    entryPoints: [path.join(HELPER_DIR, 'extension.ts')],
    outfile: path.join(dir, 'extension.js'),
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external: ['vscode'],
    logLevel: 'warning',
  });
  const out = path.join(workDir, 'mcp-tunnel-e2e-helper.vsix');
  run(VSCE, ['package', '--no-dependencies', '-o', out], dir);
  return out;
}

interface Origin {
  port: number;
  requests: { method: string; url: string; host: string }[];
  close(): Promise<void>;
}

/** The local "MCP server" the tunnel exposes: answers every request, remembers what reached it. */
async function startOrigin(): Promise<Origin> {
  const requests: Origin['requests'] = [];
  const handler: http.RequestListener = (req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host ?? '' });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ origin: 'e2e', path: req.url }));
  };
  // The target host is `localhost`: answer on ::1 as well, whichever address it resolves to first.
  // A port free on 127.0.0.1 may be taken on ::1 by another server of this run: then `localhost`
  // would reach that one, so take another port until both are ours (or ::1 does not exist here).
  for (let attempt = 1; ; attempt++) {
    const v4 = http.createServer(handler);
    await new Promise<void>((r) => v4.listen(0, '127.0.0.1', r));
    const { port } = v4.address() as AddressInfo;
    const v6 = http.createServer(handler);
    const v6result = await new Promise<'ok' | 'in-use' | 'no-ipv6'>((r) => {
      v6.once('error', (err: NodeJS.ErrnoException) => r(err.code === 'EADDRINUSE' ? 'in-use' : 'no-ipv6'));
      v6.listen(port, '::1', () => r('ok'));
    });
    if (v6result === 'in-use' && attempt < 20) {
      await new Promise<void>((r) => v4.close(() => r()));
      continue;
    }
    if (v6result === 'in-use') throw new Error(`startOrigin: no port free on both 127.0.0.1 and ::1 after ${attempt} tries`);
    return originOf(port, requests, v4, v6result === 'ok' ? v6 : undefined);
  }
}

function originOf(port: number, requests: Origin['requests'], v4: http.Server, v6: http.Server | undefined): Origin {
  const close = (s: http.Server) => new Promise<void>((r) => {
    s.closeAllConnections();
    s.close(() => r());
  });
  return { port, requests, close: async () => void (await Promise.all([close(v4), v6 ? close(v6) : Promise.resolve()])) };
}

function httpGet(port: number, urlPath: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, headers, agent: false, timeout: 15_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

// ------------------------------------------------------------------------------------------------
// Workbench helpers
// ------------------------------------------------------------------------------------------------

/** Our status bar item (id = <extension id>.<item id>). */
const statusItem = (page: Page): Locator => page.locator(`[id="${EXTENSION_ID}.mcpTunnel.status"]`);

async function statusText(page: Page): Promise<string> {
  return (await statusItem(page).innerText()).trim();
}

async function waitForStatus(page: Page, re: RegExp, what: string, timeoutMs = UI_TIMEOUT): Promise<string> {
  return waitUntil(async () => {
    const t = await statusText(page).catch(() => '');
    return re.test(t) ? t : undefined;
  }, `status bar ${what} (${re})`, timeoutMs);
}

const STOPPED = /^MCP Tunnel$/;
const ACTIVE = /^\S+ · (<1m|\d+m)$/;

/** Open the MCP Tunnel view from the activity bar (a click on an already open one would close it). */
async function openTunnelView(page: Page): Promise<Locator> {
  const action = page.locator('.activitybar .action-item').filter({ has: page.locator('a[aria-label^="MCP Tunnel"]') }).first();
  await action.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  if (!/\bchecked\b/.test((await action.getAttribute('class')) ?? '')) await action.locator('a').click();
  const sidebar = page.locator('#workbench\\.parts\\.sidebar');
  await sidebar.locator('.pane-header, .title').filter({ hasText: /Tunnel/ }).first().waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  return sidebar;
}

/** Drag the sidebar's edge so long URLs fit (what a user does to read them). */
async function widenSidebar(page: Page, width: number): Promise<void> {
  const box = await page.locator('#workbench\\.parts\\.sidebar').boundingBox();
  if (!box || box.width >= width) return;
  const x = box.x + box.width + 1;
  const y = box.y + box.height / 2;
  const sash = page.locator('.monaco-sash.vertical').filter({ visible: true });
  // The sash sits on the sidebar's right edge; drag it from there.
  const n = await sash.count();
  for (let i = 0; i < n; i++) {
    const b = await sash.nth(i).boundingBox();
    if (b && Math.abs(b.x + b.width / 2 - x) < 6) {
      await page.mouse.move(b.x + b.width / 2, y);
      await page.mouse.down();
      await page.mouse.move(b.x + b.width / 2 + (width - box.width), y, { steps: 8 });
      await page.mouse.up();
      await page.mouse.move(900, 300); // off the sash, or it stays highlighted
      return;
    }
  }
  log(`(could not find the sidebar sash to widen it to ${width}px)`);
}

/**
 * The status bar names the tunnel by its host: `<words>` of `<words>.trycloudflare.com`, whole or shortened
 * with an ellipsis (at the end or in the middle), always starting with its first word; then ` · <uptime>`.
 */
function statusShowsHost(bar: string, url: string, uptime = /<1m/): boolean {
  const host = new URL(url).hostname.replace(/\.trycloudflare\.com$/, '');
  const m = /^(.+) · (\S+)$/.exec(bar);
  const shown = m?.[1];
  if (!m || shown === undefined || !uptime.test(m[2] ?? '')) return false;
  const [head = '', tail = ''] = shown.split('…');
  return host.startsWith(head) && host.endsWith(tail) && head.startsWith(host.split('-')[0] ?? host) && (shown === host || shown.includes('…'));
}

/** Tree rows as label → description, from each row's accessible label "<label>: <description>". */
async function treeRows(sidebar: Locator): Promise<Map<string, string>> {
  const list = sidebar.locator('.monaco-list-row');
  const rows = new Map<string, string>();
  const n = await list.count();
  for (let k = 0; k < n; k++) {
    const l = (await list.nth(k).getAttribute('aria-label', { timeout: 5000 }).catch(() => null)) ?? '';
    const i = l.indexOf(': ');
    if (i > 0) rows.set(l.slice(0, i), l.slice(i + 2));
  }
  return rows;
}

/** Wait until an element stops moving (toasts and hovers slide in). */
async function waitStable(loc: Locator, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  let prev = '';
  while (Date.now() < end) {
    const b = await loc.boundingBox().catch(() => null);
    const cur = b ? `${Math.round(b.x)},${Math.round(b.y)},${Math.round(b.width)},${Math.round(b.height)}` : '';
    if (cur && cur === prev) return;
    prev = cur;
    await sleep(150);
  }
}

/** The message line of a notification toast. */
async function toastMessage(t: Locator): Promise<string> {
  return (await t.locator('.notification-list-item-message').first().innerText().catch(() => t.innerText())).trim();
}

/** Name of the channel the Output view shows (its select box). */
async function outputChannelName(page: Page): Promise<string> {
  return page.locator('#workbench\\.parts\\.panel select[aria-label="Switch Output"]').first().inputValue({ timeout: 2000 }).catch(() => '');
}

const toast = (page: Page, text: string | RegExp): Locator => page.locator('.notifications-toasts .notification-toast').filter({ hasText: text }).first();
const dialog = (page: Page, text: string | RegExp): Locator => page.locator('.monaco-dialog-box').filter({ hasText: text }).first();

async function clickDialogButton(box: Locator, label: RegExp): Promise<string> {
  const button = box.locator('.dialog-buttons .monaco-button').filter({ hasText: label }).first();
  await button.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  const text = (await button.innerText()).trim();
  await button.click();
  await box.waitFor({ state: 'hidden', timeout: UI_TIMEOUT });
  return text;
}

/** Close whatever a failed step may have left open (quick input, hover, dialog). */
async function settle(page: Page): Promise<void> {
  for (let i = 0; i < 3; i++) await page.keyboard.press('Escape').catch(() => undefined);
  await page.mouse.move(700, 400).catch(() => undefined);
}

async function clearNotifications(page: Page): Promise<void> {
  if (!(await page.locator('.notifications-toasts .notification-toast').first().isVisible().catch(() => false))) return;
  await runCommand(page, 'Notifications: Clear All Notifications', 10_000).catch(() => settle(page));
}

/**
 * Like runCommand, for a command that opens a quick pick of its own (the palette's widget is reused,
 * so waiting for it to close would only time out): returns once the palette's input no longer starts with '>'.
 */
async function runCommandOpeningPick(page: Page, title: string): Promise<void> {
  const input = page.locator('.quick-input-widget .quick-input-box input');
  await page.keyboard.press('F1');
  await input.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await input.fill(`>${title}`);
  const row = page.locator('.quick-input-list .monaco-list-row').filter({ has: page.locator('.label-name', { hasText: new RegExp(`^${title.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }) }).first();
  await row.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await row.click();
  await waitUntil(async () => !(await input.inputValue().catch(() => '>')).startsWith('>'), `the quick pick of "${title}"`);
}

/** Pick the row whose label is exactly `label` in the open quick pick. */
async function pickQuickItem(page: Page, label: string | RegExp): Promise<void> {
  const re = typeof label === 'string' ? new RegExp(`^${label.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) : label;
  const row = page.locator('.quick-input-widget .quick-input-list .monaco-list-row').filter({ has: page.locator('.label-name', { hasText: re }) }).first();
  await row.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await row.click();
}

// ------------------------------------------------------------------------------------------------
// The rig
// ------------------------------------------------------------------------------------------------

interface Ctx {
  origin: Origin;
  vsix: string;
  helperVsix: string;
  browser?: BrowserSession;
  serverA?: VsCodeServer | undefined;
  pageA?: Page | undefined;
  stateDirA: string;
  toolResults: string;
  serverB?: VsCodeServer | undefined;
  cleanups: (() => Promise<void> | void)[];
}

const BASE_SETTINGS: Record<string, unknown> = {
  'workbench.colorTheme': 'Default Dark Modern',
  // MCP: List Servers and vscode.lm tools belong to VS Code's AI features (the rig turns them off).
  'chat.disableAIFeatures': false,
  // VS Code would otherwise "forward" every port cloudflared (and anything else here) opens.
  'remote.autoForwardPorts': false,
  'workbench.tips.enabled': false,
  // No fade/slide animations: screenshots show what is there, not a frame of a transition.
  'workbench.reduceMotion': 'on',
};

async function startServerWith(ctx: Ctx, name: string, env: Record<string, string>, settings: Record<string, unknown>): Promise<VsCodeServer> {
  const dirs = makeRigDirs(`mcp-tunnel-e2e-${name}-`);
  installVsix(ctx.vsix, dirs);
  installVsix(ctx.helperVsix, dirs);
  const server = await startVsCodeServer({
    dirs,
    // Toasts (progress, errors) are part of what we test: the smoke-test driver would hide them.
    smokeTestDriver: false,
    // VSCODE_CLI=1: keep the environment given here (the server would otherwise take PATH from a login shell).
    env: { VSCODE_CLI: '1', ...env },
    settings: { ...BASE_SETTINGS, ...settings },
  });
  ctx.cleanups.push(() => server.stop());
  return server;
}

async function openWorkbenchFor(ctx: Ctx, server: VsCodeServer): Promise<Page> {
  if (!ctx.browser) {
    ctx.browser = await launchBrowser({ viewport: { width: 1400, height: 900 } });
    const b = ctx.browser;
    ctx.cleanups.push(() => b.close());
  }
  await ctx.browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.origin });
  const page = await ctx.browser.context.newPage();
  if (process.env.E2E_VERBOSE === '1') page.on('console', (m) => console.log(`[browser:${m.type()}] ${m.text()}`));
  const workspace = path.join(server.dirs.root, 'workspace');
  fs.mkdirSync(workspace, { recursive: true });
  fs.writeFileSync(path.join(workspace, 'README.md'), '# e2e workspace\n');
  // A stdio server for Share MCP Server… (real server-everything from node_modules).
  fs.mkdirSync(path.join(workspace, '.vscode'), { recursive: true });
  const everything = path.join(REPO_ROOT, 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js');
  fs.writeFileSync(path.join(workspace, '.vscode', 'mcp.json'), JSON.stringify({ servers: { everything: { type: 'stdio', command: process.execPath, args: [everything, 'stdio'] } } }, null, 2));
  await openWorkbench(page, server, { folder: workspace });
  await waitForExtensionActivated(server, EXTENSION_ID, 90_000);
  await waitForStatus(page, STOPPED, 'stopped item', 60_000);
  // Let the workbench's own "Activating Extensions..." progress clear (cosmetic, for the screenshots).
  await page.locator('#workbench\\.parts\\.statusbar .statusbar-item').filter({ hasText: /Activating Extensions/ }).first()
    .waitFor({ state: 'hidden', timeout: 30_000 }).catch(() => undefined);
  return page;
}

/** A loopback port free now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = http.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function serverA(ctx: Ctx): Promise<{ server: VsCodeServer; page: Page }> {
  if (!ctx.serverA) {
    // The fake's "internet" side on a port known up front: the extension's reachability check
    // (which would ask real DNS for *.trycloudflare.com) connects there instead.
    const edgePort = await freePort();
    ctx.serverA = await startServerWith(ctx, 'a', {
      FAKE_CLOUDFLARED_PUBLIC_PORT: String(edgePort),
      MCP_TUNNEL_DOCTOR_CONNECT_TO: `*=http://127.0.0.1:${edgePort}`,
      PATH: `${FIXTURES}${path.delimiter}${path.dirname(NODE24)}${path.delimiter}${process.env.PATH ?? ''}`,
      FAKE_CLOUDFLARED_STATE_DIR: ctx.stateDirA,
      // Slow enough for the progress notification to be seen, fast enough not to matter.
      FAKE_CLOUDFLARED_URL_DELAY_MS: '1500',
      FAKE_CLOUDFLARED_REGISTER_DELAY_MS: '1500',
      MCP_TUNNEL_E2E_ORIGIN_PORT: String(ctx.origin.port),
      MCP_TUNNEL_E2E_TOOL_RESULTS: ctx.toolResults,
    }, { 'mcpTunnel.defaultPort': ctx.origin.port });
  }
  if (!ctx.pageA) ctx.pageA = await openWorkbenchFor(ctx, ctx.serverA);
  return { server: ctx.serverA, page: ctx.pageA };
}

// ------------------------------------------------------------------------------------------------
// Scenarios
// ------------------------------------------------------------------------------------------------

/** What the fake cloudflared of `pid` recorded (its public port and URL), once it has. */
async function fakeState(ctx: Ctx, pid: number): Promise<{ publicPort: number; url?: string }> {
  const file = path.join(ctx.stateDirA, `${pid}.json`);
  return waitUntil(() => {
    const s = fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as { publicPort?: number; url?: string }) : undefined;
    return s?.publicPort ? { ...s, publicPort: s.publicPort } : undefined;
  }, `fake cloudflared state file ${file}`);
}

async function scenarioUserPath(ctx: Ctx): Promise<string[]> {
  const notes: string[] = [];
  const { page, server: vscodeServer } = await serverA(ctx);

  // Stopped: status bar item and the welcome view.
  check(STOPPED.test(await statusText(page)), `status bar shows the stopped item, got "${await statusText(page)}"`);
  const sidebar = await openTunnelView(page);
  const welcome = sidebar.locator('.welcome-view-content').filter({ hasText: 'No tunnel is running' }).first();
  await welcome.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await welcome.locator('.monaco-button', { hasText: /^Start Tunnel$/ }).first().waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await widenSidebar(page, 560);
  await page.locator('#workbench\\.parts\\.statusbar .statusbar-item').filter({ hasText: /Activating Extensions/ }).first()
    .waitFor({ state: 'hidden', timeout: 20_000 }).catch(() => undefined);
  await shot(page, 'e2e-01-stopped');

  // Start from the palette: progress notification (best effort: it may be quick), then active.
  await runCommand(page, 'MCP Tunnel: Start Tunnel');
  const progress = toast(page, /Starting a tunnel|Looking for cloudflared|Asking Cloudflare|connecting to the edge/);
  const seen = await Promise.race([
    progress.waitFor({ state: 'visible', timeout: 20_000 }).then(() => true, () => false),
    waitForStatus(page, ACTIVE, 'active').then(() => false),
  ]);
  if (seen) {
    await waitStable(progress, 1000);
    await shot(page, 'e2e-02-starting');
    notes.push(`progress: "${await toastMessage(progress).catch(() => '?')}"`);
  } else {
    notes.push('progress notification not caught (start was too quick)');
  }
  const active = await waitForStatus(page, ACTIVE, 'public host · uptime', 60_000);
  check(/· <1m$/.test(active), `status bar uptime "<1m", got "${active}"`);

  // Tree rows.
  const rows = await waitUntil(async () => {
    const r = await treeRows(sidebar);
    return /^Active · /.test(r.get('Tunnel') ?? '') && r.has('Uptime') && r.has('cloudflared') ? r : undefined;
  }, 'tree rows of the active tunnel');
  const url = rows.get('Public URL') ?? '';
  const maskedMcpUrl = rows.get('MCP URL') ?? '';
  check(/^https:\/\/[a-z0-9-]+\.trycloudflare\.com$/.test(url), `Public URL row, got "${url}"`);
  // Secret mode is the default: the row hides the share secret; Copy MCP URL has it.
  check(maskedMcpUrl === `${url}/••••••/mcp`, `the share's MCP URL row = URL + hidden secret + /mcp, got "${maskedMcpUrl}"`);
  check(rows.get('Access') === 'Secret link required', `Access row, got "${rows.get('Access')}"`);
  check(rows.get('Local target') === `http://localhost:${ctx.origin.port}/mcp`, `Local target row, got "${rows.get('Local target')}"`);
  const pid = Number(rows.get('PID'));
  check(Number.isInteger(pid) && pid > 0 && alive(pid), `PID row is a live process, got "${rows.get('PID')}"`);
  check(/^<1m$/.test(rows.get('Uptime') ?? ''), `Uptime row, got "${rows.get('Uptime')}"`);
  check(/^\d{4}\.\d+\.\d+\s+\S*cloudflared$/.test(rows.get('cloudflared') ?? ''), `cloudflared row (version + path), got "${rows.get('cloudflared')}"`);
  check(statusShowsHost(active, url), `status bar shows the host of ${url} and "· <1m", got "${active}"`);
  const activeToast = toast(page, 'Tunnel active');
  if (await activeToast.waitFor({ state: 'visible', timeout: 15_000 }).then(() => true, () => false)) {
    await waitStable(activeToast);
    notes.push(`notification: "${await toastMessage(activeToast)}"`);
  } else {
    notes.push('no "Tunnel active" notification seen');
  }
  await progress.waitFor({ state: 'hidden', timeout: 15_000 }).catch(() => notes.push('the progress notification is still shown after the start'));
  // The check from the internet side: this origin answers JSON, but not MCP, and the row says so.
  const internet = await waitUntil(async () => {
    const d = (await treeRows(sidebar)).get('Internet') ?? '';
    return /^(checking|not checked)/.test(d) || d === '' ? undefined : d;
  }, 'the Internet row to show the check', 30_000);
  check(/^Not an MCP endpoint: .* but not with a JSON-RPC answer to initialize/.test(internet), `Internet row names the cause, got "${internet}"`);
  await shot(page, 'e2e-03-active-view');
  notes.push(`tunnel ${url} (pid ${pid}); status bar "${active}"`);

  // Tooltip.
  await statusItem(page).hover();
  const hover = page.locator('.monaco-hover, .workbench-hover').filter({ hasText: 'Public MCP URL' }).first();
  await hover.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  const hoverText = await hover.innerText();
  check(hoverText.includes(`Public MCP URL: ${maskedMcpUrl}`), `tooltip names the MCP URL (secret hidden), got:\n${hoverText}`);
  check(/Access: secret link required/.test(hoverText), `tooltip names the access mode, got:\n${hoverText}`);
  check(hoverText.includes(`Local: http://localhost:${ctx.origin.port}/mcp`), 'tooltip names the local target');
  await shot(page, 'e2e-04-tooltip');
  await page.mouse.move(700, 300);
  await hover.waitFor({ state: 'hidden', timeout: UI_TIMEOUT }).catch(() => undefined);

  // Click → actions quick pick.
  await statusItem(page).click();
  const quick = page.locator('.quick-input-widget');
  await quick.locator('.quick-input-list .monaco-list-row').first().waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  const quickText = await quick.innerText();
  for (const a of ['Copy MCP URL', 'Copy MCP Client Config', 'Show QR Code', 'Rotate Share Secret', 'Stop Tunnel', 'Show Log']) check(quickText.includes(a), `quick pick offers "${a}", got:\n${quickText}`);
  check(quickText.includes('MCP Tunnel — active'), 'quick pick title names the state');
  await shot(page, 'e2e-05-actions');
  await page.keyboard.press('Escape');
  await quick.waitFor({ state: 'hidden', timeout: UI_TIMEOUT });

  // Copy MCP URL → clipboard.
  await runCommand(page, 'MCP Tunnel: Copy MCP URL');
  await page.locator('#workbench\\.parts\\.statusbar .statusbar-item').filter({ hasText: 'Copied MCP URL' }).first().waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  const readClipboard = () => page.evaluate<string>('navigator.clipboard.readText()').catch((err: unknown) => `(clipboard not readable: ${String(err)})`);
  const mcpUrl = await readClipboard();
  const secret = new RegExp(`^${url.replace(/\./g, '\\.')}/([A-Za-z0-9_-]{43})/mcp$`).exec(mcpUrl)?.[1];
  check(secret, `clipboard holds the MCP URL with the share secret that the tree hides (${maskedMcpUrl}), got "${mcpUrl}"`);
  await shot(page, 'e2e-06-copied');
  notes.push('clipboard = MCP URL with the share secret (hidden in the tree)');

  // Copy MCP Client Config… → VS Code (mcp.json): the secret as a header, the plain MCP URL.
  await clearNotifications(page);
  await runCommandOpeningPick(page, 'MCP Tunnel: Copy MCP Client Config…');
  await page.locator('.quick-input-widget .quick-input-list .monaco-list-row').filter({ hasText: 'Claude Code' }).first().waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await shot(page, 'e2e-06b-client-configs');
  await pickQuickItem(page, 'VS Code (mcp.json)');
  await page.locator('#workbench\\.parts\\.statusbar .statusbar-item').filter({ hasText: 'Copied the VS Code (mcp.json) config' }).first().waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  const configText = await readClipboard();
  let config: unknown;
  try {
    config = JSON.parse(configText);
  } catch {
    config = undefined;
  }
  const server = (config as { servers?: Record<string, { type?: string; url?: string; headers?: Record<string, string> }> } | undefined)?.servers?.['tunneled-mcp'];
  check(server?.type === 'http' && server.url === `${url}/mcp` && server.headers?.['Authorization'] === `Bearer ${secret}`, `mcp.json snippet with the secret as a bearer header, got:\n${configText}`);
  notes.push('client config (VS Code mcp.json) carries the secret as a header');

  // A real request through the fake's public side reaches the origin.
  const state = await fakeState(ctx, pid);
  check(state.url === url, `the fake's URL ${state.url} is the tree's ${url}`);
  const before = ctx.origin.requests.length;
  const refused = await httpGet(state.publicPort, '/mcp?from=e2e-no-secret');
  check(refused.status === 401, `a public request without the share secret is refused with 401, got ${refused.status} ${refused.body.slice(0, 200)}`);
  check(ctx.origin.requests.length === before, 'the refused request never reached the origin');
  const res = await httpGet(state.publicPort, `/${secret}/mcp?from=e2e`);
  check(res.status === 200 && res.body.includes('"origin":"e2e"'), `public request with the secret answered by the origin, got ${res.status} ${res.body.slice(0, 200)}`);
  const reached = ctx.origin.requests.slice(before).find((r) => r.url === '/mcp?from=e2e');
  check(reached, 'the origin saw the request, the secret prefix stripped');
  notes.push(`public request without the secret → 401 (origin untouched); with it → origin (Host ${reached.host})`);

  // Show QR Code: a webview with the MCP URL as a QR code.
  await clearNotifications(page);
  await runCommand(page, 'MCP Tunnel: Show QR Code');
  const qrTab = page.locator('.tabs-container .tab').filter({ hasText: 'MCP Tunnel: QR Code' }).first();
  await qrTab.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  // The webview's document lives two iframes down (VS Code's host frame, then the content frame).
  const qrImg = page.frameLocator('iframe.webview.ready').frameLocator('iframe#active-frame').locator('img[alt^="QR code of"]').first();
  await qrImg.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  const alt = await qrImg.getAttribute('alt');
  check(alt === `QR code of ${mcpUrl}`, `the QR code encodes the MCP URL with its secret, alt "${alt}"`);
  // No DOM lib in this tsconfig: the element is typed by the two fields read.
  const qrSize = await qrImg.evaluate((el) => {
    const img = el as unknown as { naturalWidth: number; complete: boolean };
    return { w: img.naturalWidth, complete: img.complete };
  });
  check(qrSize.complete && qrSize.w > 0, `the QR image decoded (${JSON.stringify(qrSize)})`);
  await shot(page, 'e2e-06c-qr');
  notes.push('QR webview shows the MCP URL');
  await runCommand(page, 'View: Close Editor');
  await qrTab.waitFor({ state: 'hidden', timeout: UI_TIMEOUT });

  // Rotate Share Secret: the old secret stops working at once; Copy MCP URL has the new one.
  await runCommand(page, 'MCP Tunnel: Rotate Share Secret');
  await toast(page, 'Share secret rotated').waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  check((await httpGet(state.publicPort, `/${secret}/mcp`)).status === 401, 'the old secret is refused after the rotation');
  await clearNotifications(page);
  await runCommand(page, 'MCP Tunnel: Copy MCP URL');
  const rotated = await waitUntil(async () => {
    const c = await readClipboard();
    return c !== mcpUrl && c.startsWith(`${url}/`) ? c : undefined;
  }, 'the rotated MCP URL on the clipboard');
  check((await httpGet(state.publicPort, new URL(rotated).pathname)).status === 200, 'the new secret works');
  notes.push('rotate: old secret 401, new secret 200');

  // Share Local Server…: a second server on the same tunnel, with its own secret.
  const second = await startOrigin();
  ctx.cleanups.push(() => second.close());
  await runCommandOpeningPick(page, 'MCP Tunnel: Share Local Server…');
  const shareInput = page.locator('.quick-input-widget');
  await shareInput.locator('.quick-input-title').filter({ hasText: 'Share Local Server (1/4)' }).waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await page.locator('.quick-input-widget .quick-input-box input').fill(String(second.port));
  await page.keyboard.press('Enter');
  for (const step of ['(2/4)', '(3/4)']) {
    await shareInput.locator('.quick-input-title').filter({ hasText: step }).waitFor({ state: 'visible', timeout: UI_TIMEOUT });
    await page.keyboard.press('Enter'); // localhost, /mcp
  }
  await shareInput.locator('.quick-input-title').filter({ hasText: '(4/4)' }).waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await pickQuickItem(page, /Secret link/);
  const twoBar = await waitForStatus(page, /· 2 shares · /, 'two shares in the status bar');
  const secondName = `localhost:${second.port}/mcp`;
  const shareRows = await waitUntil(async () => {
    const r = await treeRows(sidebar);
    return /· 2 shares$/.test(r.get('Tunnel') ?? '') && r.has(secondName) ? r : undefined;
  }, 'both shares under the tunnel node');
  check(/^secret · 0 requests · 0 errors$/.test(shareRows.get(secondName) ?? ''), `the new share's node, got "${shareRows.get(secondName)}"`);
  check(shareRows.get('MCP URL')?.includes('/••••••/mcp') === true, `a share's MCP URL row hides its secret, got "${shareRows.get('MCP URL')}"`);
  check(Number(shareRows.get('PID')) === pid, 'the second share runs on the same cloudflared');
  await clearNotifications(page);
  await shot(page, 'e2e-06d-two-shares');
  // Its own MCP URL (picked among the two), its own secret: it reaches the second server only.
  await runCommandOpeningPick(page, 'MCP Tunnel: Copy MCP URL of Share');
  await pickQuickItem(page, secondName);
  const secondUrl = await waitUntil(async () => {
    const c = await readClipboard();
    return c !== rotated && c.startsWith(`${url}/`) ? c : undefined;
  }, "the second share's MCP URL on the clipboard");
  const beforeSecond = second.requests.length;
  check((await httpGet(state.publicPort, new URL(secondUrl).pathname)).status === 200, "the second share's URL works");
  check(second.requests.length === beforeSecond + 1, 'and reached the second server');
  check((await httpGet(state.publicPort, new URL(rotated).pathname)).status === 200, 'the first share still works');
  // Stop Share: the second one goes, the tunnel (and the first) stays.
  await runCommandOpeningPick(page, 'MCP Tunnel: Stop Share');
  await pickQuickItem(page, secondName);
  await waitForStatus(page, /^[^·]+ · (<1m|\d+m)$/, 'one share left in the status bar');
  check((await httpGet(state.publicPort, new URL(secondUrl).pathname)).status === 401, "the stopped share's URL is refused");
  check((await httpGet(state.publicPort, new URL(rotated).pathname)).status === 200, 'the first share goes on');
  notes.push(`Share Local Server…: "${twoBar}", both under the tunnel node, its own secret; Stop Share leaves the first`);

  // Share MCP Server…: a stdio server from .vscode/mcp.json, through the bridge, beside the first share.
  await runCommandOpeningPick(page, 'MCP Tunnel: Share MCP Server…');
  await pickQuickItem(page, 'everything');
  const stdioRows = await waitUntil(async () => {
    const r = await treeRows(sidebar);
    return /· 2 shares$/.test(r.get('Tunnel') ?? '') && /^stdio · secret · /.test(r.get('everything') ?? '') && /tools · 0 sessions/.test(r.get('Runs') ?? '') && /^Reachable from the internet · \d+ ms/.test(r.get('Internet') ?? '') ? r : undefined;
  }, 'the stdio share under the tunnel node, checked from the internet side', 60_000);
  check(/^1\d tools · 0 sessions · .*server-everything/.test(stdioRows.get('Runs') ?? ''), `the stdio share's Runs row, got "${stdioRows.get('Runs')}"`);
  await clearNotifications(page);
  await shot(page, 'e2e-06e-stdio-share');
  notes.push(`Share MCP Server…: everything from .vscode/mcp.json, "${stdioRows.get('Runs')}", Internet "${stdioRows.get('Internet')}"`);

  // VS Code's own MCP client, given the stdio share's client config (the user's mcp.json; the URL's
  // public host played by the fake's public port), lists the server's tools through the tunnel.
  await runCommandOpeningPick(page, 'MCP Tunnel: Copy MCP Client Config of Share…');
  await pickQuickItem(page, 'everything');
  await pickQuickItem(page, 'VS Code (mcp.json)');
  const shareConfig = await waitUntil(async () => {
    const c = await readClipboard();
    return c !== configText && c.includes('"servers"') ? c : undefined;
  }, "the stdio share's client config on the clipboard");
  const [entryName, entry] = Object.entries((JSON.parse(shareConfig) as { servers: Record<string, { url: string; headers?: Record<string, string> }> }).servers)[0] ?? [];
  check(entryName && entry?.headers?.['Authorization']?.startsWith('Bearer '), `the share's config carries its secret as a header, got:\n${shareConfig}`);
  const userMcpJson = path.join(vscodeServer.dirs.userData, 'User', 'mcp.json');
  fs.writeFileSync(userMcpJson, JSON.stringify({ servers: { [entryName ?? 'tunneled']: { ...entry, url: entry?.url.replace(/^https:\/\/[^/]+/, `http://127.0.0.1:${state.publicPort}`) } } }, null, 2));
  const started = await waitUntil(async () => {
    const line = await invokeViaHelper(ctx, page, 'MCP Tunnel E2E: Start MCP Servers');
    return line.ok && (line.text ?? '').split(',').filter((n) => n.endsWith('_echo')).length >= 2 ? line : undefined;
  }, "VS Code's MCP client to list the tunneled server's tools beside the workspace's own", 60_000);
  const sessionRows = await waitUntil(async () => {
    const r = await treeRows(sidebar);
    return /1 session\b/.test(r.get('Runs') ?? '') ? r : undefined;
  }, "VS Code's MCP session on the stdio share", 30_000);
  await clearNotifications(page);
  await runCommandOpeningPick(page, 'MCP: List Servers');
  const tunneledRow = page.locator('.quick-input-widget .quick-input-list .monaco-list-row').filter({ has: page.locator('.label-name', { hasText: entryName ?? 'tunneled' }) }).first();
  await tunneledRow.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  const rowText = (await tunneledRow.innerText()).split('\n').join(' ');
  check(/Running/i.test(rowText), `VS Code lists the tunneled server as running, got "${rowText}"`);
  await shot(page, 'e2e-06f-vscode-mcp-client');
  await page.keyboard.press('Escape');
  // The user's mcp.json goes back as it was (VS Code drops the server) before the tunnel stops.
  fs.rmSync(userMcpJson, { force: true });
  notes.push(`VS Code's MCP client through the tunnel: "${rowText}", ${(started.text ?? '').split(',').filter((n) => n.endsWith('_echo')).join(', ')}; share "${sessionRows.get('Runs')}"`);

  // The Inspector: a remote client ("claude-ai 1.2") calls two tools on the stdio share; its page
  // shows both calls with the client's name; a row opens its request.
  await clearNotifications(page);
  await runCommandOpeningPick(page, 'MCP Tunnel: Copy MCP URL of Share');
  await pickQuickItem(page, 'everything');
  const everythingUrl = await waitUntil(async () => {
    const c = await readClipboard();
    return c.startsWith(`${url}/`) && c !== rotated && c !== secondUrl ? c : undefined;
  }, "the stdio share's MCP URL on the clipboard");
  const everythingSecret = new URL(everythingUrl).pathname.split('/')[1] ?? '';
  const viaFake = (): URL => new URL(`http://127.0.0.1:${state.publicPort}${new URL(everythingUrl).pathname}`);
  await runCommandOpeningPick(page, 'MCP Tunnel: Open Inspector');
  await pickQuickItem(page, 'everything');
  const inspectorTab = page.locator('.tabs-container .tab').filter({ hasText: 'Inspector: everything' }).first();
  await inspectorTab.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  const inspector = page.frameLocator('iframe.webview.ready').last().frameLocator('iframe#active-frame');
  await inspector.locator('#title').filter({ hasText: 'Inspector: everything' }).waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  const remote = new Client({ name: 'claude-ai', version: '1.2' });
  await remote.connect(new StreamableHTTPClientTransport(viaFake()));
  await remote.callTool({ name: 'echo', arguments: { message: 'hello from afar' } });
  await remote.callTool({ name: 'get-sum', arguments: { a: 2, b: 3 } });
  await remote.close();
  const callRows = await waitUntil(async () => {
    const all = await inspector.locator('#calls tbody tr').allInnerTexts();
    const mine = all.filter((t) => /claude-ai 1\.2/.test(t));
    return mine.some((t) => /tools\/call\s+echo\b/.test(t)) && mine.some((t) => /tools\/call\s+get-sum\b/.test(t)) ? mine : undefined;
  }, 'both calls in the Inspector, with the client name');
  check(callRows.every((t) => /\bUS\b/.test(t)), `each call shows the country cloudflared reported, got:\n${callRows.join('\n')}`);
  await inspector.locator('#calls tbody tr').filter({ hasText: 'get-sum' }).first().click();
  await inspector.locator('#req').filter({ hasText: '"get-sum"' }).waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await inspector.locator('#res').filter({ hasText: 'The sum of 2 and 3 is 5' }).waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  check(!(await inspector.locator('body').innerText()).includes(everythingSecret), 'the share secret is nowhere on the Inspector page');
  await inspector.locator('#filter').fill('echo');
  await waitUntil(async () => {
    const shown = await inspector.locator('#calls tbody tr').allInnerTexts();
    return shown.length > 0 && shown.every((t) => /echo/.test(t)) ? true : undefined;
  }, 'the filter to keep only the echo calls');
  await inspector.locator('#filter').fill('');
  await clearNotifications(page);
  await shot(page, 'e2e-06g-inspector');
  notes.push(`Inspector: ${callRows.length} calls by claude-ai 1.2 (echo, get-sum), request/response on click, filter works, no secret on the page`);

  // Choose Shared Tools… → Read-only tools only: the remote client no longer sees a write tool.
  await runCommandOpeningPick(page, 'MCP Tunnel: Choose Shared Tools…');
  await pickQuickItem(page, 'everything');
  const preset = page.locator('.quick-input-widget .quick-input-list .monaco-list-row').filter({ hasText: 'Read-only tools only' }).first();
  await preset.waitFor({ state: 'visible', timeout: 60_000 });
  // In a multi-select pick a click on the row ticks its box.
  await preset.click();
  await shot(page, 'e2e-06h-tools-pick');
  await page.keyboard.press('Enter');
  const roRows = await waitUntil(async () => {
    const r = await treeRows(sidebar);
    return r.get('Tools') === 'read-only tools only' ? r : undefined;
  }, 'the Tools row of the read-only share');
  const listing = new Client({ name: 'claude-ai', version: '1.2' });
  await listing.connect(new StreamableHTTPClientTransport(viaFake()));
  const roTools = (await listing.listTools()).tools.map((t) => t.name);
  const refusedWrite = await listing.callTool({ name: 'toggle-simulated-logging', arguments: {} }).then(() => 'called', (err: Error) => err.message);
  await listing.close();
  check(roTools.includes('echo') && !roTools.includes('toggle-simulated-logging'), `a read-only share hides a write tool, listed: ${roTools.join(', ')}`);
  check(/not shared: this share is read-only/.test(refusedWrite), `a write tool's call is refused by the tunnel, got "${refusedWrite}"`);
  await waitUntil(async () => ((await inspector.locator('#calls tbody tr').allInnerTexts()).some((t) => /toggle-simulated-logging/.test(t) && /error -32602/.test(t)) ? true : undefined), 'the refused call in the Inspector');
  await clearNotifications(page);
  await shot(page, 'e2e-06h-read-only');
  notes.push(`read-only: Tools row "${roRows.get('Tools')}", ${roTools.length} tools listed, the write call refused and shown as error -32602`);
  await runCommand(page, 'View: Close Editor');
  await inspectorTab.waitFor({ state: 'hidden', timeout: UI_TIMEOUT });

  // Stop.
  await runCommand(page, 'MCP Tunnel: Stop Tunnel');
  await waitForStatus(page, STOPPED, 'stopped item after Stop');
  await waitUntil(() => !alive(pid), `cloudflared pid ${pid} to exit`, 20_000);
  await sidebar.locator('.welcome-view-content').filter({ hasText: 'No tunnel is running' }).first().waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await shot(page, 'e2e-07-stopped-again');

  // Start Tunnel… with access "Open" for this one tunnel: the status bar and the view warn.
  await runCommandOpeningPick(page, 'MCP Tunnel: Start Tunnel…');
  const quickInput = page.locator('.quick-input-widget');
  for (const step of ['(1/4)', '(2/4)', '(3/4)']) {
    await quickInput.locator('.quick-input-title').filter({ hasText: step }).waitFor({ state: 'visible', timeout: UI_TIMEOUT });
    await page.keyboard.press('Enter'); // keep the default port, host, path
  }
  await quickInput.locator('.quick-input-title').filter({ hasText: '(4/4)' }).waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await shot(page, 'e2e-08-start-with-access');
  await pickQuickItem(page, /^\s*Open$/);
  const openBar = await waitForStatus(page, /^\S+ · open · <1m$/, 'the open tunnel in the status bar', 60_000);
  const openRows = await waitUntil(async () => {
    const r = await treeRows(sidebar);
    return /^Active · /.test(r.get('Tunnel') ?? '') && r.has('Access') ? r : undefined;
  }, 'tree rows of the open tunnel');
  check(openRows.get('Access') === 'Open: anyone with the URL', `Access row warns, got "${openRows.get('Access')}"`);
  const openUrl = openRows.get('Public URL') ?? '';
  check(openRows.get('MCP URL') === `${openUrl}/mcp`, `open mode: the plain MCP URL, got "${openRows.get('MCP URL')}"`);
  const openBg = await statusItem(page).evaluate((el) => (globalThis as unknown as { getComputedStyle(e: unknown): { backgroundColor: string } }).getComputedStyle(el).backgroundColor);
  check(openBg !== 'rgba(0, 0, 0, 0)' && openBg !== 'transparent', `the open tunnel's status bar item has a warning background, got ${openBg}`);
  const openPid = Number(openRows.get('PID'));
  const openState = await fakeState(ctx, openPid);
  check((await httpGet(openState.publicPort, '/mcp?from=e2e-open')).status === 200, 'open mode: a request without any secret reaches the origin');
  await clearNotifications(page);
  await shot(page, 'e2e-09-open-warning');
  notes.push(`open mode via Start Tunnel…: status bar "${openBar}" (background ${openBg}), Access row warns, plain URL works`);
  await runCommand(page, 'MCP Tunnel: Stop Tunnel');
  await waitForStatus(page, STOPPED, 'stopped after the open tunnel');
  await waitUntil(() => !alive(openPid), `cloudflared pid ${openPid} to exit`, 20_000);
  return notes;
}

/** Run records (`run-<id>.json`) anywhere under `dir`: a stopped tunnel leaves none. */
function runRecordsUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, depth: number): void => {
    if (depth > 6) return;
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p, depth + 1);
      else if (/^run-[0-9a-f]{12}\.json$/.test(e.name)) out.push(p);
    }
  };
  if (fs.existsSync(dir)) walk(dir, 0);
  return out;
}

/** Share Local Server… through the palette: port, then the default host and path, then the access. */
async function shareLocalServer(page: Page, port: number): Promise<void> {
  await runCommandOpeningPick(page, 'MCP Tunnel: Share Local Server…');
  const input = page.locator('.quick-input-widget');
  await input.locator('.quick-input-title').filter({ hasText: 'Share Local Server (1/4)' }).waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await page.locator('.quick-input-widget .quick-input-box input').fill(String(port));
  await page.keyboard.press('Enter');
  for (const step of ['(2/4)', '(3/4)']) {
    await input.locator('.quick-input-title').filter({ hasText: step }).waitFor({ state: 'visible', timeout: UI_TIMEOUT });
    await page.keyboard.press('Enter'); // localhost, /mcp
  }
  await input.locator('.quick-input-title').filter({ hasText: '(4/4)' }).waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await pickQuickItem(page, /Secret link/);
}

/** Copy MCP URL of Share, picking `name`; waits until the clipboard holds a URL other than `not`. */
async function copyShareUrl(page: Page, name: string, not: string[]): Promise<string> {
  // Emptied first: an earlier scenario's MCP URL (another tunnel's secret, same shape) must not pass
  // for this copy when the command has not written yet.
  await page.evaluate('navigator.clipboard.writeText("")');
  await runCommandOpeningPick(page, 'MCP Tunnel: Copy MCP URL of Share');
  await pickQuickItem(page, name);
  return waitUntil(async () => {
    const c = await page.evaluate<string>('navigator.clipboard.readText()').catch(() => '');
    return /^https:\/\/[^/]+\/[A-Za-z0-9_-]{43}\/mcp$/.test(c) && !not.includes(c) ? c : undefined;
  }, `the MCP URL of ${name} on the clipboard`);
}

/**
 * Two origins shared at once from a stopped tunnel: both under the tunnel node (screenshot), each
 * reachable only with its own secret (path or bearer), rotate one (the other still works), stop
 * one, Stop Tunnel: cloudflared gone, the public port dead, no run record left.
 */
async function scenarioTwoShares(ctx: Ctx): Promise<string[]> {
  const notes: string[] = [];
  const { page, server: vscodeServer } = await serverA(ctx);
  const sidebar = await openTunnelView(page);
  await waitForStatus(page, STOPPED, 'a stopped tunnel to begin with');
  const a = await startOrigin();
  const b = await startOrigin();
  ctx.cleanups.push(() => a.close(), () => b.close());
  const nameA = `localhost:${a.port}/mcp`;
  const nameB = `localhost:${b.port}/mcp`;

  await shareLocalServer(page, a.port);
  await waitForStatus(page, ACTIVE, 'the first share starts the tunnel', 60_000);
  await shareLocalServer(page, b.port);
  const bar = await waitForStatus(page, /· 2 shares · /, 'two shares in the status bar');
  await widenSidebar(page, 620);
  const rows = await waitUntil(async () => {
    const r = await treeRows(sidebar);
    return /^Active · .* · 2 shares$/.test(r.get('Tunnel') ?? '') && r.has(nameA) && r.has(nameB) && r.has('PID') ? r : undefined;
  }, 'the tunnel node with both shares under it', 60_000);
  check(/^secret · 0 requests · 0 errors$/.test(rows.get(nameB) ?? ''), `the second share's node, got "${rows.get(nameB)}"`);
  const pid = Number(rows.get('PID'));
  check(Number.isInteger(pid) && alive(pid), `one live cloudflared, got PID "${rows.get('PID')}"`);
  await clearNotifications(page);
  await page.mouse.move(5, 5);
  await shot(page, 'e2e-40-two-shares-tree');

  const state = await fakeState(ctx, pid);
  const urlA = await copyShareUrl(page, nameA, []);
  const urlB = await copyShareUrl(page, nameB, [urlA]);
  const pathA = new URL(urlA).pathname;
  const pathB = new URL(urlB).pathname;
  const secretB = pathB.split('/')[1] ?? '';
  // Which origin a request reached, by a marker of its own (the reachability check also calls
  // the origins, so counting requests would not tell).
  let marks = 0;
  const reached = async (p: string, headers: Record<string, string> = {}): Promise<[number, number, number]> => {
    const mark = `e2e-two-shares-${++marks}`;
    const { status } = await httpGet(state.publicPort, `${p}?mark=${mark}`, headers);
    const seen = (o: Origin): number => o.requests.filter((r) => r.url.includes(mark)).length;
    return [status, seen(a), seen(b)];
  };
  const checkReached = (got: [number, number, number], want: string, what: string): void =>
    check(JSON.stringify(got) === want, `${what}: [status, requests at A, at B] = ${JSON.stringify(got)}, want ${want}`);
  checkReached(await reached(pathA), '[200,1,0]', "A's secret reaches A only");
  checkReached(await reached(pathB), '[200,0,1]', "B's secret reaches B only");
  checkReached(await reached('/mcp', { authorization: `Bearer ${secretB}` }), '[200,0,1]', "B's secret as a bearer header reaches B");
  checkReached(await reached('/mcp'), '[401,0,0]', 'no secret: 401, no origin touched');
  checkReached(await reached(`/${'x'.repeat(43)}/mcp`), '[401,0,0]', 'a wrong secret: 401, no origin touched');

  // Rotate B alone: its old URL is refused, its new one works, A is untouched.
  await runCommandOpeningPick(page, 'MCP Tunnel: Rotate Secret of Share');
  await pickQuickItem(page, nameB);
  await waitUntil(async () => (await httpGet(state.publicPort, pathB)).status === 401 || undefined, "B's old secret to be refused");
  checkReached(await reached(pathA), '[200,1,0]', 'A still works after B rotated');
  const urlB2 = await copyShareUrl(page, nameB, [urlA, urlB]);
  checkReached(await reached(new URL(urlB2).pathname), '[200,0,1]', "B's new secret works");

  // Stop A alone: A is refused, B goes on, the tunnel too.
  await runCommandOpeningPick(page, 'MCP Tunnel: Stop Share');
  await pickQuickItem(page, nameA);
  await waitForStatus(page, ACTIVE, 'one share left in the status bar');
  checkReached(await reached(pathA), '[401,0,0]', "the stopped share's URL is refused");
  checkReached(await reached(new URL(urlB2).pathname), '[200,0,1]', 'B goes on');
  check(alive(pid), 'the same cloudflared runs on');

  // Stop Tunnel: cloudflared gone, nothing answers on its public port, no run record left.
  const roots = [vscodeServer.dirs.userData, vscodeServer.dirs.serverData];
  const records = (): string[] => roots.flatMap((r) => runRecordsUnder(r));
  check(records().length === 1, `the live run has its run record (so its absence later means something), found ${records().join(', ') || 'none'}`);
  await runCommand(page, 'MCP Tunnel: Stop Tunnel');
  await waitForStatus(page, STOPPED, 'stopped after Stop Tunnel');
  await waitUntil(() => !alive(pid), `cloudflared pid ${pid} to exit`, 20_000);
  const dead = await httpGet(state.publicPort, new URL(urlB2).pathname).then((r) => `answered ${r.status}`, () => 'refused');
  check(dead === 'refused', `the public port is closed after Stop Tunnel, got ${dead}`);
  const left = await waitUntil(() => (records().length === 0 ? [] : undefined), 'no run record left', 10_000).catch(() => records());
  check(left.length === 0, `no run record is left, found ${left.join(', ')}`);
  notes.push(`two shares ("${bar}"): each only with its own secret; rotate B (A works), stop A (B works); Stop Tunnel: pid ${pid} gone, port closed, no run record`);
  return notes;
}

interface ToolLine {
  tool: string;
  ok: boolean;
  text?: string;
  error?: string;
}

function toolLines(file: string): ToolLine[] {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as ToolLine);
}

/** Run a helper command and wait for the line it appends; `whileWaiting` handles dialogs in between. */
async function invokeViaHelper(ctx: Ctx, page: Page, title: string, whileWaiting?: (before: number) => Promise<void>): Promise<ToolLine> {
  const before = toolLines(ctx.toolResults).length;
  await runCommand(page, title);
  if (whileWaiting) await whileWaiting(before);
  const line = await waitUntil(() => toolLines(ctx.toolResults)[before], `a result of "${title}"`, 60_000);
  return line;
}

async function scenarioMcpClient(ctx: Ctx): Promise<string[]> {
  const notes: string[] = [];
  const { page, server } = await serverA(ctx);
  await settle(page);
  if (!STOPPED.test(await statusText(page))) {
    await runCommand(page, 'MCP Tunnel: Stop Tunnel');
    await waitForStatus(page, STOPPED, 'stopped before the MCP scenario');
  }
  await clearNotifications(page);
  const sidebar = await openTunnelView(page);
  await widenSidebar(page, 560);

  // MCP: List Servers → MCP Tunnel → Start Server.
  log(`${since()} tunnel view open`);
  await runCommandOpeningPick(page, 'MCP: List Servers');
  const serverRow = page.locator('.quick-input-widget .quick-input-list .monaco-list-row').filter({ has: page.locator('.label-name', { hasText: /^MCP Tunnel$/ }) }).first();
  await serverRow.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  notes.push(`listed: "${(await serverRow.innerText()).split('\n').join(' ')}"`);
  await shot(page, 'e2e-31-mcp-list-servers');
  await serverRow.click();
  await pickQuickItem(page, /^(Start Server|Restart Server)$/);
  const panel = page.locator('#workbench\\.parts\\.panel');
  const discovered = async (): Promise<string | undefined> => {
    if ((await outputChannelName(page)) !== 'MCP: MCP Tunnel') return undefined;
    return /Discovered\s(\d+)\stools?/.exec(await panel.innerText().catch(() => ''))?.[0].replace(/\s+/g, " ");
  };
  let found = await waitUntil(discovered, 'the "MCP: MCP Tunnel" output with "Discovered N tools"', 30_000).catch(() => undefined);
  if (!found) {
    // The output did not come up by itself: open it from the server's menu.
    await settle(page);
    await runCommandOpeningPick(page, 'MCP: List Servers');
    await pickQuickItem(page, 'MCP Tunnel');
    await pickQuickItem(page, 'Show Output');
    found = await waitUntil(discovered, 'the "MCP: MCP Tunnel" output with "Discovered N tools"', 60_000);
  }
  const nTools = Number(/\d+/.exec(found)?.[0]);
  check(nTools >= 3, `at least 3 tools discovered, got "${found}"`);
  await shot(page, 'e2e-32-mcp-tools-discovered');
  notes.push(found);

  // start_tunnel through vscode.lm.invokeTool: VS Code's confirmation, then our consent modal.
  log(`${since()} tools discovered`);
  const local = `http://localhost:${ctx.origin.port}/mcp`;
  let confirmTitle = '';
  const started = await invokeViaHelper(ctx, page, 'MCP Tunnel E2E: Invoke Tool', async () => {
    const confirm = dialog(page, /Start tunnel/i);
    await confirm.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
    confirmTitle = (await confirm.innerText()).split('\n').find((l) => /Start tunnel/i.test(l)) ?? '';
    await shot(page, 'e2e-33-tool-confirmation');
    const pressed = await clickDialogButton(confirm, /^(Yes|Allow|Continue|Run)$/);
    notes.push(`VS Code confirmation "${confirmTitle.trim()}" → ${pressed}`);
    const consent = dialog(page, `An agent wants to make ${local} reachable through a public tunnel.`);
    await consent.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
    await shot(page, 'e2e-34-agent-consent');
    await clickDialogButton(consent, /^Allow$/);
  });
  check(started.ok, `start_tunnel call succeeded: ${started.error ?? ''}`);
  check(/start_tunnel$/.test(started.tool), `tool name ends with start_tunnel: ${started.tool}`);
  const startOut = JSON.parse(started.text ?? '{}') as { status?: string; url?: string; mcp_url?: string; pid?: number };
  check(startOut.status === 'active' && startOut.url && new RegExp(`^${startOut.url}/[A-Za-z0-9_-]{43}/mcp$`).test(startOut.mcp_url ?? ''), `start_tunnel result active with URLs (the MCP URL with its share secret): ${started.text}`);
  notes.push(`${started.tool} → ${startOut.status} ${startOut.url}`);
  const bar = await waitForStatus(page, ACTIVE, 'public host after start_tunnel');
  check(statusShowsHost(bar, startOut.url), `status bar shows the agent's tunnel ${startOut.url} and "· <1m", got "${bar}"`);
  const rows = await waitUntil(async () => {
    const r = await treeRows(sidebar);
    return /^Active · /.test(r.get('Tunnel') ?? '') ? r : undefined;
  }, 'tree rows of the agent-started tunnel');
  check(rows.get('Public URL') === startOut.url, `tree Public URL = start_tunnel url, got ${rows.get('Public URL')}`);
  await shot(page, 'e2e-35-agent-active');

  // get_tunnel_status: read-only, so no confirmation.
  log(`${since()} start_tunnel done`);
  let dialogSeen = false;
  const status = await invokeViaHelper(ctx, page, 'MCP Tunnel E2E: Get Tunnel Status Tool', async (before) => {
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && toolLines(ctx.toolResults).length === before) {
      if (await page.locator('.monaco-dialog-box').isVisible().catch(() => false)) {
        dialogSeen = true;
        await shot(page, 'e2e-35b-unexpected-confirmation');
        await clickDialogButton(page.locator('.monaco-dialog-box').first(), /^(Yes|Allow|Continue|Run)$/);
      }
      await sleep(200);
    }
  });
  check(!dialogSeen, 'get_tunnel_status (readOnlyHint) ran without a confirmation dialog');
  check(status.ok, `get_tunnel_status call succeeded: ${status.error ?? ''}`);
  const st = JSON.parse(status.text ?? '{}') as { status?: string; active?: boolean; url?: string; mcp_url?: string; pid?: number };
  check(st.status === 'active' && st.active === true, `get_tunnel_status reports active: ${status.text}`);
  check(st.url === startOut.url && st.mcp_url === startOut.mcp_url && st.pid === startOut.pid, `get_tunnel_status URL/pid = start_tunnel's: ${status.text}`);
  await statusItem(page).hover();
  const hover = page.locator('.monaco-hover, .workbench-hover').filter({ hasText: 'Public MCP URL' }).first();
  await hover.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  check((await hover.innerText()).includes(`Public MCP URL: ${st.mcp_url?.replace(/\/[A-Za-z0-9_-]{43}\//, '/••••••/')}`), 'status bar tooltip shows the same MCP URL (secret hidden)');
  await page.mouse.move(700, 300);
  notes.push(`get_tunnel_status → ${st.status}, same URL as tree and tooltip, no confirmation`);

  // stop_tunnel: confirmation, then stopped.
  log(`${since()} get_tunnel_status done`);
  const stopped = await invokeViaHelper(ctx, page, 'MCP Tunnel E2E: Stop Tunnel Tool', async () => {
    const confirm = dialog(page, /Stop tunnel/i);
    await confirm.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
    await clickDialogButton(confirm, /^(Yes|Allow|Continue|Run)$/);
  });
  check(stopped.ok && /"status":"stopped"/.test(stopped.text ?? ''), `stop_tunnel → stopped: ${stopped.text ?? stopped.error}`);
  await waitForStatus(page, STOPPED, 'stopped after stop_tunnel');
  if (startOut.pid) await waitUntil(() => !alive(startOut.pid!), `cloudflared pid ${startOut.pid} to exit`, 20_000);
  await shot(page, 'e2e-36-agent-stopped');
  notes.push('stop_tunnel → status bar stopped, cloudflared gone');
  const exthost = readExtHostLog(server);
  if (/\[error\].*mcp-tunnel/i.test(exthost)) notes.push('note: errors mentioning mcp-tunnel in remoteexthost.log');
  return notes;
}

async function scenarioMissing(ctx: Ctx): Promise<string[]> {
  const notes: string[] = [];
  // PATH without the fake (and without any directory that has a cloudflared).
  const dirs = [path.dirname(NODE24), ...(process.env.PATH ?? '').split(path.delimiter)].filter((d) => d && !fs.existsSync(path.join(d, 'cloudflared')));
  const known = ['/opt/homebrew/bin', '/usr/local/bin', '/usr/bin', '/home/linuxbrew/.linuxbrew/bin'].map((d) => path.join(d, 'cloudflared')).filter((f) => fs.existsSync(f));
  check(known.length === 0, `no real cloudflared may be installed for this scenario, found ${known.join(', ')}`);
  // Free the first server's share of two cores before starting another.
  if (ctx.pageA) await ctx.pageA.close().catch(() => undefined);
  ctx.pageA = undefined;
  if (ctx.serverA) await ctx.serverA.stop();
  ctx.serverA = undefined;
  ctx.serverB = await startServerWith(ctx, 'b', { PATH: dirs.join(path.delimiter) }, {});
  const page = await openWorkbenchFor(ctx, ctx.serverB);

  const sidebar = await openTunnelView(page);
  const welcome = sidebar.locator('.welcome-view-content').filter({ hasText: 'could not find it' }).first();
  await welcome.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  for (const b of ['Install cloudflared…', 'Locate cloudflared…']) {
    await welcome.locator('.monaco-button', { hasText: b }).first().waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  }
  const welcomeText = await welcome.innerText();
  check(/brew install cloudflared/.test(welcomeText) && /winget install/.test(welcomeText), 'install guidance for macOS and Windows');
  await widenSidebar(page, 560);
  await shot(page, 'e2e-21-cloudflared-missing');
  notes.push('welcome: install guidance, Install / Locate buttons');

  await runCommand(page, 'MCP Tunnel: Start Tunnel');
  const error = toast(page, /cloudflared is not installed/);
  await error.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  const errorText = await error.innerText();
  for (const b of ['Install cloudflared', 'Locate cloudflared…']) check(errorText.includes(b), `error notification offers "${b}", got:\n${errorText}`);
  check(/mcpTunnel\.cloudflaredPath/.test(errorText), 'error names the cloudflaredPath setting');
  // code-server's window is remote: the machine settings live in the Remote settings.
  check(/Remote settings/.test(errorText) && errorText.includes('Open Remote Settings'), `a remote window says where cloudflaredPath goes, got:\n${errorText}`);
  const bar = await waitForStatus(page, /Tunnel failed/, 'failed item');
  // The start's progress notification closes (VS Code keeps it up a moment); then the error stands alone.
  await toast(page, /Starting a tunnel|Looking for cloudflared/).waitFor({ state: 'hidden', timeout: 15_000 }).catch(() => notes.push('the progress notification is still shown next to the error'));
  await waitStable(error);
  await shot(page, 'e2e-22-cloudflared-missing-error');
  notes.push(`error: "${await toastMessage(error)}"; status bar "${bar}"`);
  // The view keeps the install guidance after the failed start.
  const afterText = await sidebar.innerText();
  notes.push(/could not find it/.test(afterText) ? 'view still shows the install guidance' : `view after the failed start: ${afterText.replace(/\s+/g, ' ').slice(0, 160)}`);
  return notes;
}

/**
 * A local server playing GitHub's release API for cloudflared (MCP_TUNNEL_TEST_RELEASE_BASE): one
 * release whose linux-amd64 asset is a launcher of the fake cloudflared, with its SHA-256 in the
 * release body as Cloudflare writes it, served slowly enough for the progress notification to show.
 */
async function startReleaseHost(version: string): Promise<{ base: string; downloads: () => number; close: () => Promise<void> }> {
  const launcher = `#!/bin/sh\nFAKE_CLOUDFLARED_VERSION=${version} exec "${NODE24}" "${path.join(REPO_ROOT, 'out', 'fake-cloudflared.js')}" "$@"\n`;
  const asset = Buffer.concat([Buffer.from(launcher), Buffer.alloc(3_000_000, 0x23)]);
  const name = 'cloudflared-linux-amd64';
  const digest = (await import('node:crypto')).createHash('sha256').update(asset).digest('hex');
  let downloads = 0;
  const server = http.createServer((req, res) => {
    if (req.url === '/repos/cloudflare/cloudflared/releases/latest') {
      const port = (server.address() as AddressInfo).port;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
        tag_name: version,
        body: `Notes\n \n### SHA256 Checksums:\n\`\`\`\n${name}: ${digest}\n\`\`\``,
        assets: [{ name, size: asset.length, browser_download_url: `http://127.0.0.1:${port}/download/${name}` }],
      }));
      return;
    }
    if (req.url === `/download/${name}`) {
      downloads++;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': asset.length });
      let off = 0;
      const next = (): void => {
        if (res.destroyed) return;
        res.write(asset.subarray(off, (off += 100_000)));
        if (off >= asset.length) res.end();
        else setTimeout(next, 120);
      };
      next();
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    downloads: () => downloads,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

/** The walkthrough, and Install cloudflared from its first step against the local release host. */
async function scenarioInstall(ctx: Ctx): Promise<string[]> {
  const notes: string[] = [];
  const dirs = [path.dirname(NODE24), ...(process.env.PATH ?? '').split(path.delimiter)].filter((d) => d && !fs.existsSync(path.join(d, 'cloudflared')));
  const release = await startReleaseHost('2026.9.0');
  ctx.cleanups.push(() => release.close());
  // Free the other servers' share of two cores first.
  for (const p of ctx.browser?.context.pages() ?? []) await p.close().catch(() => undefined);
  ctx.pageA = undefined;
  if (ctx.serverA) await ctx.serverA.stop();
  ctx.serverA = undefined;
  if (ctx.serverB) await ctx.serverB.stop();
  ctx.serverB = undefined;
  const edgePort = await freePort();
  const server = await startServerWith(ctx, 'c', {
    PATH: dirs.join(path.delimiter),
    MCP_TUNNEL_TEST_RELEASE_BASE: release.base,
    FAKE_CLOUDFLARED_STATE_DIR: ctx.stateDirA,
    FAKE_CLOUDFLARED_PUBLIC_PORT: String(edgePort),
    MCP_TUNNEL_DOCTOR_CONNECT_TO: `*=http://127.0.0.1:${edgePort}`,
  }, { 'mcpTunnel.defaultPort': ctx.origin.port });
  const page = await openWorkbenchFor(ctx, server);

  await runCommandOpeningPick(page, 'Welcome: Open Walkthrough...');
  await pickQuickItem(page, /Get Started with MCP Tunnel/);
  const walkthrough = page.locator('.gettingStartedContainer').first();
  await walkthrough.locator('.getting-started-category .category-title, h2').filter({ hasText: 'Get Started with MCP Tunnel' }).first().waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  const step = (title: string): Locator => walkthrough.locator('.getting-started-step').filter({ has: page.locator('.step-title', { hasText: title }) }).first();
  const titles = await walkthrough.locator('.getting-started-step .step-title').allInnerTexts();
  for (const t of ['Install cloudflared', 'Start your MCP server', 'Start a tunnel', 'Connect a client', 'Share safely']) check(titles.some((x) => x.includes(t)), `the walkthrough has the step "${t}", got: ${titles.join(' | ')}`);
  const isDone = async (title: string): Promise<boolean> => /\bcomplete\b/.test((await step(title).getAttribute('class')) ?? '') || (await step(title).locator('.codicon-getting-started-step-checked, .codicon-pass-filled').count()) > 0;
  check(!(await isDone('Install cloudflared')), 'the install step is open while cloudflared is missing');
  await step('Install cloudflared').click();
  const install = step('Install cloudflared').locator('.monaco-button, a').filter({ hasText: /^Install cloudflared$/ }).first();
  await install.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  await sleep(500);
  await shot(page, 'e2e-31-walkthrough');
  notes.push(`walkthrough: ${titles.length} steps`);

  await install.click();
  const progress = toast(page, /Installing cloudflared/);
  await progress.waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  const mb = await waitUntil(async () => {
    const t = await progress.innerText().catch(() => '');
    return /\d+\.\d of 3\.0 MB/.test(t) && !/0\.0 of/.test(t) ? t : undefined;
  }, 'the progress notification to show MB');
  await shot(page, 'e2e-32-install-progress');
  notes.push(`progress: "${mb.replace(/\s+/g, ' ').trim()}"`);
  const done = toast(page, /installed cloudflared 2026\.9\.0 \(checksum verified\)/);
  await done.waitFor({ state: 'visible', timeout: 60_000 });
  check(release.downloads() === 1, `one download, got ${release.downloads()}`);
  await waitUntil(() => isDone('Install cloudflared'), 'the walkthrough step "Install cloudflared" to be checked');
  await waitStable(done);
  await shot(page, 'e2e-33-installed');
  notes.push(`done: "${await toastMessage(done)}"; the walkthrough step is checked`);

  // It is used: the view finds it, and a tunnel starts on it (the fake, speaking the installed version).
  await clearNotifications(page);
  const sidebar = await openTunnelView(page);
  await sidebar.locator('.welcome-view-content').filter({ hasText: 'No tunnel is running' }).first().waitFor({ state: 'visible', timeout: UI_TIMEOUT });
  check(!/could not find it/.test(await sidebar.innerText()), 'the view no longer asks for cloudflared');
  await runCommand(page, 'MCP Tunnel: Start Tunnel');
  await waitForStatus(page, ACTIVE, 'the tunnel on the installed cloudflared', 60_000);
  const rows = await waitUntil(async () => {
    const r = await treeRows(sidebar).catch(() => new Map<string, string>());
    return r.get('cloudflared') ? r : undefined;
  }, 'the cloudflared row');
  const cfRow = rows.get('cloudflared') ?? '';
  check(/2026\.9\.0/.test(cfRow) && /globalStorage/.test(cfRow), `the tunnel runs the managed copy, row: "${cfRow}"`);
  await waitStable(sidebar);
  await shot(page, 'e2e-34-running-on-managed');
  await runCommand(page, 'MCP Tunnel: Stop Tunnel');
  await waitForStatus(page, STOPPED, 'stopped');
  notes.push(`tunnel on the managed copy: cloudflared row "${cfRow}"`);
  return notes;
}

// ------------------------------------------------------------------------------------------------
// Main
// ------------------------------------------------------------------------------------------------

interface Result {
  id: string;
  name: string;
  ok: boolean;
  ms: number;
  notes: string[];
  error?: string;
}

async function main(): Promise<number> {
  const t0 = Date.now();
  const argv = process.argv.slice(2);
  const arg = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const only = arg('--only')?.split(',').map((s) => s.trim());
  const updateDocs = argv.includes('--update-docs');

  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mcp-tunnel-e2e-build-'));
  const ctx: Ctx = {
    origin: await startOrigin(),
    vsix: '',
    helperVsix: '',
    stateDirA: path.join(work, 'fake-cloudflared-state'),
    toolResults: path.join(work, 'tool-results.jsonl'),
    cleanups: [],
  };
  fs.mkdirSync(ctx.stateDirA, { recursive: true });
  const cleanup = async (): Promise<void> => {
    for (const c of ctx.cleanups.reverse()) await Promise.resolve(c()).catch((e: unknown) => log(`cleanup: ${String(e)}`));
    ctx.cleanups = [];
    await ctx.origin.close().catch(() => undefined);
    // Any fake cloudflared still running (it records itself in the state dir) is ours: end it by PID.
    for (const f of fs.existsSync(ctx.stateDirA) ? fs.readdirSync(ctx.stateDirA) : []) {
      const pid = Number(path.basename(f, '.json'));
      if (pid > 0 && alive(pid)) {
        log(`leftover fake cloudflared ${pid}: killing`);
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    if (process.env.E2E_KEEP !== '1') fs.rmSync(work, { recursive: true, force: true, maxRetries: 3 });
  };

  // Hard limit for the whole run: exiting runs codeServer's exit hook (SIGKILL of every server and
  // its marked descendants); Playwright kills the browser it launched when this process exits.
  const watchdog = setTimeout(() => {
    console.error(`[e2e] WATCHDOG: the run exceeded ${TIMEOUT_MS / 1000}s; killing everything`);
    void cleanup().finally(() => {
      console.log('browser-e2e: 0 passed, 1 failed (watchdog)');
      process.exit(124);
    });
    setTimeout(() => process.exit(124), 15_000).unref();
  }, TIMEOUT_MS);
  watchdog.unref();

  const results: Result[] = [];
  try {
    const vsixArg = arg('--vsix');
    if (vsixArg) {
      ctx.vsix = path.resolve(vsixArg);
    } else {
      const tb = Date.now();
      ctx.vsix = buildVsix(work);
      log(`built ${path.basename(ctx.vsix)} in ${((Date.now() - tb) / 1000).toFixed(1)}s`);
    }
    ctx.helperVsix = await buildHelperVsix(work);
    log(`origin on 127.0.0.1:${ctx.origin.port}; fake cloudflared state in ${ctx.stateDirA}`);

    const scenarios: [string, string, (c: Ctx) => Promise<string[]>][] = [
      ['1', 'user path (palette, status bar, view, tooltip, actions, clipboard, traffic, stop)', scenarioUserPath],
      ['3', "VS Code's MCP client (List Servers, tools, invokeTool, consent)", scenarioMcpClient],
      ['4', 'two origins shared at once (own secrets, rotate one, stop one, Stop Tunnel)', scenarioTwoShares],
      ['2', 'cloudflared missing (welcome guidance, error notification)', scenarioMissing],
      ['install', 'the walkthrough, and Install cloudflared against a local release host', scenarioInstall],
    ];
    for (const [id, name, fn] of scenarios) {
      if (only && !only.includes(id)) continue;
      const ts = Date.now();
      scenarioT0 = ts;
      log(`--- scenario ${id}: ${name}`);
      try {
        const notes = await fn(ctx);
        results.push({ id, name, ok: true, ms: Date.now() - ts, notes });
      } catch (err) {
        const e = err instanceof Error ? (err.stack ?? err.message) : String(err);
        const page = id === '2' || id === 'install' ? ctx.browser?.context.pages().at(-1) : ctx.pageA;
        if (page) await shot(page, `e2e-fail-scenario-${id}`).catch(() => undefined);
        results.push({ id, name, ok: false, ms: Date.now() - ts, notes: [], error: e });
      }
      const r = results.at(-1)!;
      console.log(`${r.ok ? 'PASS' : 'FAIL'} scenario ${id}: ${name} (${(r.ms / 1000).toFixed(1)}s)`);
      for (const n of r.notes) console.log(`       ${n}`);
      if (r.error) console.log(`       ${r.error.split('\n').slice(0, 8).join('\n       ')}`);
    }
  } catch (err) {
    console.error(`[e2e] ERROR: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    results.push({ id: 'setup', name: 'setup', ok: false, ms: Date.now() - t0, notes: [], error: String(err) });
  } finally {
    const runIds = [ctx.serverA?.runId, ctx.serverB?.runId].filter((x): x is string => !!x);
    await cleanup();
    const left = runIds.flatMap((id) => markedPids(id));
    if (left.length) {
      console.error(`[e2e] leftover processes after cleanup: ${left.join(' ')}`);
      results.push({ id: 'cleanup', name: 'cleanup', ok: false, ms: 0, notes: [], error: `leftover ${left.join(' ')}` });
    }
    clearTimeout(watchdog);
  }

  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed;
  if (updateDocs && failed === 0) {
    fs.mkdirSync(DOCS_SCREENSHOTS, { recursive: true });
    for (const [from, to] of Object.entries(DOCS_PICKS)) {
      const src = path.join(RESULTS_DIR, `${from}.png`);
      if (fs.existsSync(src)) fs.copyFileSync(src, path.join(DOCS_SCREENSHOTS, to));
    }
    log(`copied ${Object.keys(DOCS_PICKS).length} screenshots to ${path.relative(REPO_ROOT, DOCS_SCREENSHOTS)}/`);
  }
  log(`total ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  console.log(`browser-e2e: ${passed} passed, ${failed} failed`);
  return failed === 0 && passed > 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    console.log('browser-e2e: 0 passed, 1 failed');
    process.exit(1);
  },
);

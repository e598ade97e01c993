// Runs the extension-host mocha suite (out/test/suite/index.js) inside a real VS Code: the VS Code
// server bundled in code-server, with a headless Debian Chromium as its window, through the
// smoke-test payload route (extensionDevelopmentPath + extensionTestsPath as vscode-remote URIs).
// The suite's output and exit code come back through window.codeAutomationLog/codeAutomationExit.
//
//   node --import tsx test/e2e/runExtensionTests.ts
// Env: E2E_TIMEOUT_MS (default 300000), E2E_VERBOSE=1 (server + browser console), E2E_KEEP=1 (keep
// temp dirs), MCP_TUNNEL_E2E_GREP (mocha grep), E2E_WORKSPACE (folder to open; temp dir otherwise).
// Prerequisites (npm run test:vscode does all three): scripts/e2e-setup.sh, node esbuild.mjs,
// node --import tsx test/e2e/buildSuite.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { format } from 'node:util';
import {
  REPO_ROOT, launchBrowser, makeRigDirs, markedPids, readExtHostLog, screenshot, startVsCodeServer, workbenchUrl,
  type BrowserSession, type VsCodeServer,
} from './codeServer';

interface Summary {
  passed: number;
  failed: number;
  pending: number;
  failures: { title: string; error: string }[];
}

const TIMEOUT_MS = Number(process.env.E2E_TIMEOUT_MS ?? 300_000);
const VERBOSE = process.env.E2E_VERBOSE === '1';
const testsEntry = path.join(REPO_ROOT, 'out', 'test', 'suite', 'index.js');
/** Workbench chatter that comes through codeAutomationLog too: kept in the log file, not printed (unless E2E_VERBOSE=1). */
const NOISE = /^(Resolving connection token|Resolved connection token|Creating a socket|\[reconnection-grace-time\]|Ignoring fetching additional builtin extensions|Updating additional builtin extensions cache|\[AgentHost|\[AccountPolicyGate\]|\[Service Worker\]|Canceled: Canceled|Creation of workbench contribution)|ENOTFOUND/;


/** What a hostile workspace sets: cloud metadata as the target, an attacker's hostname for the URL. */
const HOSTILE_WORKSPACE_SETTINGS = {
  'mcpTunnel.defaultHost': '169.254.169.254',
  'mcpTunnel.defaultPort': 80,
  'mcpTunnel.defaultPath': '/latest/meta-data/',
  'mcpTunnel.allowedHosts': ['169.254.169.254'],
  'mcpTunnel.mcp.allowedHosts': ['169.254.169.254'],
  'mcpTunnel.tunnelMode': 'named',
  'mcpTunnel.namedTunnel.hostname': 'attacker.example',
  'mcpTunnel.access': 'open',
  'mcpTunnel.hostHeader': 'public',
  'mcpTunnel.protocol': 'quic',
  'mcpTunnel.logLevel': 'debug',
  'mcpTunnel.autoRestart': false,
  'mcpTunnel.mcp.confirmStart': false,
  'mcpTunnel.mcp.allowStdioShares': true,
  'mcpTunnel.cloudflaredPath': '/tmp/not-cloudflared',
  'mcpTunnel.startTimeout': 77,
};
/** What the run is doing now and the suite's last line, for the timeout messages. */
const progress = { step: 'checking the build', lastLine: '' };

async function main(): Promise<number> {
  const t0 = Date.now();
  // Last resort if something hangs outside the suite's own timeout (start, navigation, cleanup):
  // exiting runs codeServer's exit hook, which SIGKILLs every process marked with the run id.
  setTimeout(() => {
    console.error(`[e2e] WATCHDOG: no result after ${(TIMEOUT_MS + 120_000) / 1000}s in step: ${progress.step}; the suite's last line: ${progress.lastLine || '(none)'}; killing everything`);
    process.exit(124);
  }, TIMEOUT_MS + 120_000).unref();
  const elapsed = (): string => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
  for (const f of [testsEntry, path.join(REPO_ROOT, 'dist', 'extension.js')]) {
    if (!fs.existsSync(f)) {
      console.error(`[e2e] missing ${path.relative(REPO_ROOT, f)}: run node esbuild.mjs && node --import tsx test/e2e/buildSuite.ts`);
      return 2;
    }
  }

  let server: VsCodeServer | undefined;
  let browser: BrowserSession | undefined;
  let timer: NodeJS.Timeout | undefined;
  let code = 1;
  let summary: Summary | undefined;
  const automationLog: string[] = []; // everything codeAutomationLog received
  const browserConsole: string[] = []; // the page's console
  try {
    const resultsFile = path.join(REPO_ROOT, 'test-results', 'vscode-suite-results.json');
    fs.mkdirSync(path.dirname(resultsFile), { recursive: true });
    fs.rmSync(resultsFile, { force: true });
    const dirs = makeRigDirs();
    progress.step = 'starting the VS Code server';
    server = await startVsCodeServer({
      dirs,
      // Reaches the extension host and what it spawns. Anything else the suite needs can be set in the
      // runner's own environment: the server inherits it (HOME/XDG_* aside, which point into the rig).
      env: {
        MCP_TUNNEL_E2E_RESULTS: resultsFile,
        // the fake cloudflared (test/fixtures/fake-cloudflared/) writes <dir>/<pid>.json there, for the suite to read.
        FAKE_CLOUDFLARED_STATE_DIR: process.env.FAKE_CLOUDFLARED_STATE_DIR ?? path.join(dirs.root, 'fake-cloudflared-state'),
      },
    });
    const workspace = process.env.E2E_WORKSPACE ?? path.join(server.dirs.root, 'workspace');
    fs.mkdirSync(workspace, { recursive: true });
    // A cloned repository's settings that try to redirect the tunnel (the suite checks they are
    // ignored, and every other test runs with them present). startTimeout is window-scoped: its
    // value proves the file was read.
    fs.mkdirSync(path.join(workspace, '.vscode'), { recursive: true });
    fs.writeFileSync(path.join(workspace, '.vscode', 'settings.json'), JSON.stringify(HOSTILE_WORKSPACE_SETTINGS, null, 2));
    // A stdio server the suite shares with Share MCP Server… (real server-everything from node_modules).
    const everything = path.join(REPO_ROOT, 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js');
    fs.writeFileSync(path.join(workspace, '.vscode', 'mcp.json'), `{\n  // a comment, as users write them\n  "servers": { "everything": { "type": "stdio", "command": ${JSON.stringify(process.execPath)}, "args": [${JSON.stringify(everything)}, "stdio"] } }\n}\n`);

    progress.step = 'launching the browser';
    browser = await launchBrowser({ profileDir: server.dirs.browserProfile, server });
    const { page } = browser;
    page.on('console', (m) => {
      browserConsole.push(`[${m.type()}] ${m.text()}`);
      if (VERBOSE) console.log(`[browser:${m.type()}] ${m.text()}`);
    });
    page.on('pageerror', (e) => browserConsole.push(`[pageerror] ${e.stack ?? e.message}`));

    // Both hooks must exist before the workbench loads: it looks for them at start.
    let resolveExit!: (c: number) => void;
    const exited = new Promise<number>((r) => (resolveExit = r));
    await page.exposeFunction('codeAutomationLog', (type: string, args: unknown[]) => {
      const line = format(...(Array.isArray(args) ? args : [args]));
      automationLog.push(`[${type}] ${line}`);
      if (line.trim()) progress.lastLine = line.trim().slice(0, 300);
      if (!VERBOSE && NOISE.test(line)) return;
      if (type === 'error') console.error(line);
      else console.log(line);
    });
    await page.exposeFunction('codeAutomationExit', (exitCode: number) => resolveExit(Number(exitCode)));

    const url = workbenchUrl(server, { folder: workspace, extensionDevelopmentPath: REPO_ROOT, extensionTestsPath: testsEntry });
    console.log(`[e2e] opening ${decodeURIComponent(url)}`);
    progress.step = 'opening the workbench';
    await page.goto(url, { waitUntil: 'domcontentloaded' });
    progress.step = 'running the extension-host suite';

    const proc = server.proc;
    const serverDied = new Promise<number>((r) => proc.once('exit', (c, s) => r(-1000 - (c ?? (s ? 1 : 0)))));
    const timedOut = new Promise<number>((r) => (timer = setTimeout(() => r(-1), TIMEOUT_MS)));
    code = await Promise.race([exited, serverDied, timedOut]);

    if (code === -1) {
      console.error(`[e2e] TIMEOUT: the suite did not finish within ${TIMEOUT_MS / 1000}s; its last line: ${progress.lastLine || '(none)'}`);
      await screenshot(page, 'vscode-suite-timeout').catch(() => undefined);
      code = 124;
    } else if (code <= -1000) {
      console.error(`[e2e] the VS Code server exited during the suite:\n${fs.readFileSync(server.serverLog, 'utf8').slice(-4000)}`);
      code = 1;
    } else if (code !== 0) {
      await screenshot(page, 'vscode-suite-failure').catch(() => undefined);
    }
    if (fs.existsSync(resultsFile)) summary = JSON.parse(fs.readFileSync(resultsFile, 'utf8')) as Summary;
    const exthost = readExtHostLog(server);
    fs.writeFileSync(path.join(REPO_ROOT, 'test-results', 'vscode-suite-remoteexthost.log'), exthost);
    if (code !== 0) {
      const notable = exthost.split('\n').filter((l) => /\[error\]|mcp-tunnel/i.test(l)).slice(-30);
      console.error(`[e2e] remote extension host log: test-results/vscode-suite-remoteexthost.log${notable.length ? `; its errors and mcp-tunnel lines:\n${notable.join('\n')}` : ''}`);
    }
  } catch (err) {
    console.error(`[e2e] ERROR: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    code = 1;
  } finally {
    progress.step = 'stopping the VS Code server and the browser';
    if (timer) clearTimeout(timer);
    fs.mkdirSync(path.join(REPO_ROOT, 'test-results'), { recursive: true });
    fs.writeFileSync(path.join(REPO_ROOT, 'test-results', 'vscode-suite-automation.log'), automationLog.join('\n') + '\n');
    fs.writeFileSync(path.join(REPO_ROOT, 'test-results', 'vscode-suite-browser-console.log'), browserConsole.join('\n') + '\n');
    await browser?.close();
    const runId = server?.runId;
    await server?.stop();
    if (runId && markedPids(runId).length) {
      console.error('[e2e] leftover processes after stop');
      code = code || 1;
    }
  }

  if (summary) {
    for (const f of summary.failures) console.error(`[e2e] FAILED: ${f.title}\n${f.error}`);
    console.log(`[e2e] extension-host suite finished in ${elapsed()}, exit code ${code}`);
    console.log(`vscode-suite: ${summary.passed} passed, ${summary.failed} failed${summary.pending ? `, ${summary.pending} skipped` : ''}`);
    if (code === 0 && summary.failed > 0) code = 1;
    if (code === 0 && summary.passed === 0) {
      console.error('[e2e] no test passed (no tests found?)');
      code = 1;
    }
  } else {
    console.log(`[e2e] extension-host suite finished in ${elapsed()} without a result summary, exit code ${code}`);
    if (code === 0) code = 1;
  }
  return code;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);

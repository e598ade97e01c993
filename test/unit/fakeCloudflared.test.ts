/**
 * Tests of the fake cloudflared fixture (test/fixtures/fake-cloudflared/, built to out/fake-cloudflared.js), spawned as a real
 * process through its shell shim: output lines, exit codes, metrics endpoints, signals, proxying,
 * and that no process is left behind. Facts checked here come from
 * shared/reference/cloudflared.md and its transcripts of a real cloudflared.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { sleep } from '../support/wait';

const SHIM = path.resolve(__dirname, '../fixtures/cloudflared');
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-cloudflared-test-'));
const EMPTY_CONFIG = path.join(TMP, 'empty-config.yml');
const EMPTY_HOME = path.join(TMP, 'home-empty');
const STATE_DIR = path.join(TMP, 'state');
fs.writeFileSync(EMPTY_CONFIG, '{}\n');
fs.mkdirSync(EMPTY_HOME);

const TIME = String.raw`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z`;
const LOG_LINE = new RegExp(`^(${TIME}) (DBG|INF|WRN|ERR|FTL) ?(.*)$`);
const BORDER_92 = `+${'-'.repeat(92)}+`;
const HEADLINE = '|  Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):  |';

// ------------------------------------------------------------------------------------------------
// Harness
// ------------------------------------------------------------------------------------------------

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface RunState {
  pid: number;
  publicPort: number;
  url: string | null;
  hostname?: string;
  metricsAddress: string | null;
  urlPrintedAt: number;
  registeredAt?: number;
}

function stripAnsi(s: string): string {
   
  return s.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
}

/** The message part (with fields) of a console log line, or null for a bare / foreign line. */
function msg(line: string | undefined): string | null {
  if (line === undefined) return null;
  const m = LOG_LINE.exec(stripAnsi(line));
  return m ? (m[3] ?? '') : null;
}

function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    // Like the extension: no TUNNEL_* / NO_AUTOUPDATE leaking in, and no stray fixture settings.
    if (k.includes('TUNNEL_') || k === 'NO_AUTOUPDATE' || k.startsWith('FAKE_CLOUDFLARED_')) continue;
    env[k] = v;
  }
  return {
    ...env,
    HOME: EMPTY_HOME, // a developer's ~/.cloudflared/config.yml must not hijack these runs
    FAKE_CLOUDFLARED_NODE: process.execPath,
    FAKE_CLOUDFLARED_STATE_DIR: STATE_DIR,
    ...extra,
  };
}

const live = new Set<FakeRun>();
/** Servers a failed test may have left open; closed in after() so the file can exit. */
const openServers = new Set<{ close(): Promise<void> }>();

class FakeRun {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly lines: string[] = [];
  stdout = '';
  exitInfo: Exit | null = null;
  readonly exited: Promise<Exit>;
  private partial = '';
  private readonly waiters = new Set<() => void>();

  constructor(args: string[], env: Record<string, string> = {}) {
    this.child = spawn(SHIM, args, { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    if (this.child.pid === undefined) throw new Error('spawn of the fake cloudflared failed');
    this.pid = this.child.pid;
    live.add(this);
    const out = this.child.stdout;
    const err = this.child.stderr;
    assert.ok(out && err);
    out.setEncoding('utf8');
    err.setEncoding('utf8');
    out.on('data', (chunk: string) => {
      this.stdout += chunk;
    });
    err.on('data', (chunk: string) => this.onStderr(chunk));
    this.exited = new Promise<Exit>((resolve) => {
      this.child.on('close', (code, signal) => {
        if (this.partial) this.lines.push(this.partial);
        this.partial = '';
        this.exitInfo = { code, signal };
        live.delete(this);
        for (const w of [...this.waiters]) w();
        resolve(this.exitInfo);
      });
    });
  }

  private onStderr(chunk: string): void {
    let start = 0;
    let nl = chunk.indexOf('\n', start);
    while (nl >= 0) {
      this.lines.push(this.partial + chunk.slice(start, nl));
      this.partial = '';
      start = nl + 1;
      nl = chunk.indexOf('\n', start);
    }
    this.partial += chunk.slice(start);
    for (const w of [...this.waiters]) w();
  }

  /** Resolves with the first stderr line (ANSI stripped) matching `re`, counting from line `from`. */
  waitFor(re: RegExp, timeoutMs = 20_000, from = 0): Promise<string> {
    return new Promise((resolve, reject) => {
      let next = from;
      const check = (): boolean => {
        for (; next < this.lines.length; next++) {
          const line = this.lines[next] ?? '';
          const clean = line.length > 100_000 ? line : stripAnsi(line);
          if (re.test(clean)) {
            resolve(clean);
            return true;
          }
        }
        return false;
      };
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      const waiter = (): void => {
        if (check()) done();
        else if (this.exitInfo) {
          done();
          reject(new Error(`process exited (${JSON.stringify(this.exitInfo)}) before ${String(re)}:\n${this.tail()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out waiting for ${String(re)}:\n${this.tail()}`));
      }, timeoutMs);
      this.waiters.add(waiter);
      waiter();
    });
  }

  /** Waits for `count` lines matching `re`. */
  async waitForCount(re: RegExp, count: number, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.clean().filter((l) => re.test(l)).length < count) {
      if (this.exitInfo) throw new Error(`exited before ${count}x ${String(re)}:\n${this.tail()}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${count}x ${String(re)}:\n${this.tail()}`);
      await sleep(20);
    }
  }

  clean(): string[] {
    return this.lines.map((l) => (l.length > 100_000 ? l : stripAnsi(l)));
  }

  messages(): string[] {
    return this.clean()
      .map((l) => msg(l))
      .filter((m): m is string => m !== null);
  }

  indexOf(re: RegExp): number {
    return this.clean().findIndex((l) => re.test(l));
  }

  tail(n = 15): string {
    return this.clean()
      .slice(-n)
      .map((l) => (l.length > 300 ? `${l.slice(0, 300)}...(${l.length} chars)` : l))
      .join('\n');
  }

  kill(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  async state(pred: (s: RunState) => boolean = () => true, timeoutMs = 15_000): Promise<RunState> {
    const file = path.join(STATE_DIR, `${this.pid}.json`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const s = JSON.parse(fs.readFileSync(file, 'utf8')) as RunState;
        if (pred(s)) return s;
      } catch {
        // not written yet
      }
      if (Date.now() > deadline) throw new Error(`no matching state file ${file}:\n${this.tail()}`);
      await sleep(20);
    }
  }

  /** Waits for the exit and checks that nothing with this PID is left. */
  async finished(): Promise<Exit> {
    const exit = await this.exited;
    assertGone(this.pid);
    return exit;
  }
}

function assertGone(pid: number): void {
  assert.throws(
    () => process.kill(pid, 0),
    (err: NodeJS.ErrnoException) => err.code === 'ESRCH',
    `process ${pid} is still alive`,
  );
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function quickArgs(originPort: number, ...extra: string[]): string[] {
  return [
    'tunnel',
    '--no-autoupdate',
    '--metrics',
    '127.0.0.1:0',
    '--config',
    EMPTY_CONFIG,
    '--url',
    `http://127.0.0.1:${originPort}`,
    ...extra,
  ];
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(url: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

interface Origin {
  port: number;
  seen: SeenRequest[];
  sseEndedAt: number;
  close(): Promise<void>;
}

/** A tiny origin: `/` says hello, `/sse` streams 6 events 100 ms apart, `/hang` never answers. */
async function startOrigin(): Promise<Origin> {
  const origin: Origin = { port: 0, seen: [], sseEndedAt: 0, close: () => Promise.resolve() };
  const server = http.createServer((req, res) => {
    origin.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    if (req.url === '/sse') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      let n = 0;
      const tick = (): void => {
        res.write(`data: ${n}\n\n`);
        n++;
        if (n === 6) {
          origin.sseEndedAt = Date.now();
          res.end();
          return;
        }
        setTimeout(tick, 100);
      };
      tick();
      return;
    }
    if (req.url === '/hang') return; // answered by nobody; the socket closes when the test ends
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`hello from origin ${req.url ?? ''}`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin.port = (server.address() as net.AddressInfo).port;
  origin.close = () =>
    new Promise<void>((resolve) => {
      openServers.delete(origin);
      server.closeAllConnections();
      server.close(() => resolve());
    });
  openServers.add(origin);
  return origin;
}

/** A port nothing listens on. */
/**
 * A port nothing listens on. Not a freshly closed ephemeral port: with other test files binding
 * ephemeral ports in parallel, one of them may take it (a 404 instead of "connection refused").
 * Port 9 (discard) is what the real transcripts used; nothing on a test machine serves it.
 */
function deadPort(): Promise<number> {
  return Promise.resolve(9);
}

/** Starts a quick tunnel and waits for its registration; returns the run and its state. */
async function connected(args: string[], env: Record<string, string> = {}): Promise<{ run: FakeRun; state: RunState }> {
  const run = new FakeRun(args, env);
  await run.waitFor(/Registered tunnel connection/);
  const state = await run.state((s) => s.metricsAddress !== null);
  return { run, state };
}

after(async () => {
  for (const run of live) run.kill('SIGKILL');
  await Promise.all([...openServers].map((s) => s.close()));
  fs.rmSync(TMP, { recursive: true, force: true });
});

// ------------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------------

void describe('fake cloudflared', { concurrency: 4 }, () => {
  void test('prints its version for --version, -v, -V, version and version --short', async () => {
    for (const args of [['--version'], ['-v'], ['-V'], ['version']]) {
      const run = new FakeRun(args);
      const exit = await run.finished();
      assert.deepEqual(exit, { code: 0, signal: null });
      assert.equal(run.stdout, 'cloudflared version 2026.8.2 (built 2026-08-20-10:54 UTC)\n');
      assert.deepEqual(run.lines, []);
    }
    const short = new FakeRun(['version', '--short']);
    assert.equal((await short.finished()).code, 0);
    assert.equal(short.stdout, '2026.8.2\n');

    const old = new FakeRun(['--version'], { FAKE_CLOUDFLARED_VERSION: '2023.7.3' });
    assert.equal((await old.finished()).code, 0);
    assert.equal(old.stdout, 'cloudflared version 2023.7.3 (built 2023-07-25-1210 UTC)\n');
  });

  void test('flags unknown to the version print Incorrect Usage on stdout and exit 0', async () => {
    const origin = await deadPort();
    const run = new FakeRun(quickArgs(origin, '--output', 'json'), { FAKE_CLOUDFLARED_VERSION: '2023.7.3' });
    assert.deepEqual(await run.finished(), { code: 0, signal: null });
    assert.ok(run.stdout.startsWith('Incorrect Usage. flag provided but not defined: -output\n\nNAME:\n   cloudflared tunnel - '), run.stdout);
    assert.deepEqual(run.lines, [], 'nothing on stderr');

    const pre = new FakeRun(quickArgs(origin, '--no-prechecks'), { FAKE_CLOUDFLARED_VERSION: '2026.4.0' });
    assert.equal((await pre.finished()).code, 0);
    assert.match(pre.stdout, /^Incorrect Usage\. flag provided but not defined: -no-prechecks\n\n/);

    const sub = new FakeRun(['tunnel', 'run', '--metrics', '127.0.0.1:0']);
    assert.equal((await sub.finished()).code, 0);
    assert.match(sub.stdout, /^Incorrect Usage: flag provided but not defined: -metrics\n\nNAME:\n {3}cloudflared tunnel run - /);
  });

  void test('`tunnel` without --url explains itself and exits 1', async () => {
    const run = new FakeRun(['tunnel', '--no-autoupdate']);
    assert.deepEqual(await run.finished(), { code: 1, signal: null });
    assert.equal(run.lines[0], 'You did not specify any valid additional argument to the cloudflared tunnel command.');
    assert.equal(run.stdout, '');
  });

  void test('quick tunnel: §2 lines, exact URL box, metrics endpoints, proxying, state file', async () => {
    const origin = await startOrigin();
    const run = new FakeRun(quickArgs(origin.port, '--http-host-header', 'mcp.example.test'), {
      FAKE_CLOUDFLARED_REGISTER_DELAY_MS: '1000', // room to see /ready answer 503 first
    });
    const metricsLine = await run.waitFor(/INF Starting metrics server on \S+\/metrics$/);
    const metricsAddress = /Starting metrics server on (\S+)\/metrics/.exec(metricsLine)?.[1] ?? '';
    const notYet = await request(`http://${metricsAddress}/ready`);
    await run.waitFor(/INF Registered tunnel connection /);
    const ready = await request(`http://${metricsAddress}/ready`);
    const state = await run.state((s) => s.metricsAddress !== null);

    // Every line is a console log line on stderr.
    for (const line of run.lines) assert.match(line, LOG_LINE);
    const msgs = run.messages();
    const headline = msgs.indexOf(HEADLINE);
    assert.ok(headline > 0, 'banner present');
    assert.equal(msgs[headline - 1], BORDER_92);
    const urlLine = msgs[headline + 1] ?? '';
    assert.equal(msgs[headline + 2], BORDER_92);
    const url = /^\|  (https:\/\/[a-z]+-[a-z]+-[a-z]+-[a-z]+\.trycloudflare\.com) +\|$/.exec(urlLine)?.[1];
    assert.ok(url, urlLine);
    assert.equal(urlLine.length, BORDER_92.length);

    // The >= 2026.5.0 pre-checks box comes first and holds a decoy URL.
    const precheck = msgs.findIndex((m) => m.includes('CONNECTIVITY PRE-CHECKS'));
    const decoy = msgs.findIndex((m) => m.includes('https://api.trycloudflare.com'));
    assert.ok(precheck > 0 && decoy > precheck && decoy < headline, 'pre-checks box before the URL box');

    // §2 order.
    const order = [
      /^Thank you for trying Cloudflare Tunnel\./,
      /^Requesting new quick Tunnel on trycloudflare\.com\.\.\.$/,
      /^\|  Your quick Tunnel has been created!/,
      /^Version 2026\.8\.2 \(Checksum [0-9a-f]{64}\)$/,
      /^GOOS: \w+, GOVersion: go1\.24\.4, GoArch: \w+$/,
      /^Settings: map\[.*ha-connections:1 http-host-header:mcp\.example\.test metrics:127\.0\.0\.1:0 no-autoupdate:true protocol:quic url:http:\/\/127\.0\.0\.1:\d+\]$/,
      /^Generated Connector ID: [0-9a-f-]{36}$/,
      /^Initial protocol quic$/,
      /^Starting metrics server on 127\.0\.0\.1:\d+\/metrics$/,
      /^Registered tunnel connection connIndex=0 connection=[0-9a-f-]{36} event=0 ip=198\.41\.200\.13 location=lax01 protocol=quic$/,
    ].map((re) => msgs.findIndex((m) => re.test(m)));
    for (const [i, at] of order.entries()) assert.ok(at >= 0 && (i === 0 || at > (order[i - 1] ?? Infinity)), `order at ${i}: ${order.join(',')}`);
    assert.equal(msgs.filter((m) => m.startsWith('Cannot determine default configuration path')).length, 0, '--config given');
    const connectorId = /Generated Connector ID: (\S+)/.exec(msgs.join('\n'))?.[1];

    // /ready: 503 before the registration, 200 after.
    assert.equal(notYet.status, 503);
    assert.equal(notYet.headers['content-type'], 'text/plain; charset=utf-8');
    assert.deepEqual(JSON.parse(notYet.body), { status: 503, readyConnections: 0, connectorId });
    assert.equal(ready.status, 200);
    assert.equal(ready.body, JSON.stringify({ status: 200, readyConnections: 1, connectorId }));

    const qt = await request(`http://${metricsAddress}/quicktunnel`);
    assert.equal(qt.body, JSON.stringify({ hostname: url.replace('https://', '') }));
    assert.equal(qt.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal((await request(`http://${metricsAddress}/healthcheck`)).body, 'OK\n');
    const cfg = JSON.parse((await request(`http://${metricsAddress}/config`)).body) as {
      version: number;
      config: { ingress: Array<{ service: string }> };
    };
    assert.equal(cfg.version, -1);
    assert.equal(cfg.config.ingress[0]?.service, `http://127.0.0.1:${origin.port}`);

    // State file for the harness.
    assert.equal(state.pid, run.pid);
    assert.equal(state.url, url);
    assert.equal(state.metricsAddress, metricsAddress);
    assert.ok(state.urlPrintedAt > Date.now() - 10_000 && state.urlPrintedAt <= Date.now());

    // A request through the fake edge reaches the origin with the --http-host-header Host.
    const reply = await request(`http://127.0.0.1:${state.publicPort}/some/path?x=1`);
    assert.equal(reply.status, 200);
    assert.equal(reply.body, 'hello from origin /some/path?x=1');
    assert.equal(origin.seen.length, 1);
    assert.equal(origin.seen[0]?.url, '/some/path?x=1');
    assert.equal(origin.seen[0]?.headers.host, 'mcp.example.test');
    assert.equal(origin.seen[0]?.headers['x-forwarded-proto'], 'https');

    const m = await request(`http://${metricsAddress}/metrics`);
    assert.equal(m.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    for (const expected of [
      '# HELP cloudflared_tunnel_total_requests Amount of requests proxied through all the tunnels',
      '# TYPE cloudflared_tunnel_total_requests counter',
      'cloudflared_tunnel_total_requests 1',
      'cloudflared_tunnel_request_errors 0',
      'cloudflared_tunnel_concurrent_requests_per_tunnel 0',
      'cloudflared_tunnel_response_by_code{status_code="200"} 1',
      'cloudflared_tunnel_ha_connections 1',
      'cloudflared_tunnel_server_locations{connection_id="0",edge_location="lax01"} 1',
      'build_info{goversion="go1.24.4",revision="2026-08-20-10:54 UTC",type="",version="2026.8.2"} 1',
      '# TYPE process_start_time_seconds gauge',
    ]) {
      assert.ok(m.body.split('\n').includes(expected), `metrics line: ${expected}`);
    }

    run.kill('SIGTERM');
    assert.deepEqual(await run.finished(), { code: 0, signal: null });
    const end = run.messages().slice(-6);
    assert.deepEqual(end, [
      'Initiating graceful shutdown due to signal terminated ...',
      'Unregistered tunnel connection connIndex=0 event=0 ip=198.41.200.13',
      'Connection terminated connIndex=0',
      'no more connections active and exiting',
      'Tunnel server stopped',
      'Metrics server stopped',
    ]);
    assert.ok(!fs.existsSync(path.join(STATE_DIR, `${run.pid}.json`)), 'state file removed');
    await origin.close();
  });

  void test('--output json: one JSON object per stderr line; SIGINT says "interrupt"', async () => {
    const origin = await startOrigin();
    const { run } = await connected(quickArgs(origin.port, '--output', 'json'));
    const records = run.lines.map((l) => JSON.parse(l) as Record<string, string | number | boolean | undefined>);
    for (const r of records) {
      assert.equal(typeof r.level, 'string');
      assert.match(String(r.time), new RegExp(`^${TIME}$`));
    }
    const texts = records.map((r) => String(r.message ?? ''));
    assert.ok(texts.includes(HEADLINE));
    const reg = records.find((r) => r.message === 'Registered tunnel connection');
    assert.equal(reg?.connIndex, 0);
    assert.equal(reg?.location, 'lax01');
    run.kill('SIGINT');
    assert.equal((await run.finished()).code, 0);
    assert.ok(run.lines.some((l) => (JSON.parse(l) as { message?: string }).message === 'Initiating graceful shutdown due to signal interrupt ...'));
    await origin.close();
  });

  void test('SSE is streamed unbuffered and a graceful shutdown waits for it', async () => {
    const origin = await startOrigin();
    const { run, state } = await connected(quickArgs(origin.port));
    const chunks: Array<{ at: number; text: string }> = [];
    const done = new Promise<void>((resolve, reject) => {
      http
        .get(`http://127.0.0.1:${state.publicPort}/sse`, { agent: false }, (res) => {
          assert.equal(res.headers['content-type'], 'text/event-stream');
          res.setEncoding('utf8');
          res.on('data', (text: string) => chunks.push({ at: Date.now(), text }));
          res.on('end', resolve);
          res.on('error', reject);
        })
        .on('error', reject);
    });
    while (chunks.length === 0) await sleep(5);
    run.kill('SIGTERM');
    await done;
    const exit = await run.finished();
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok((chunks[0]?.at ?? Infinity) < origin.sseEndedAt - 250, 'first event arrived long before the stream ended');
    assert.equal(chunks.map((c) => c.text).join(''), [0, 1, 2, 3, 4, 5].map((n) => `data: ${n}\n\n`).join(''));
    // Without --http-host-header the origin sees the public hostname.
    assert.equal(origin.seen[0]?.headers.host, state.hostname);
    const msgs = run.messages();
    assert.ok(msgs.indexOf('Initiating graceful shutdown due to signal terminated ...') < msgs.indexOf('Tunnel server stopped'));
    await origin.close();
  });

  void test('--grace-period caps the wait for in-flight requests', async () => {
    const origin = await startOrigin();
    const { run, state } = await connected(quickArgs(origin.port, '--grace-period', '300ms'));
    const pending = request(`http://127.0.0.1:${state.publicPort}/hang`).then(
      () => 'answered',
      () => 'dropped',
    );
    while (origin.seen.length === 0) await sleep(5);
    const t0 = Date.now();
    run.kill('SIGTERM');
    assert.deepEqual(await run.finished(), { code: 0, signal: null });
    const took = Date.now() - t0;
    assert.ok(took >= 250 && took < 3000, `took ${took} ms`);
    assert.equal(await pending, 'dropped');
    assert.ok(
      run.messages().some((m) => /^ error="Incoming request ended abruptly: context canceled" connIndex=0 event=1 ingressRule=0 originService=http:\/\/127\.0\.0\.1:\d+$/.test(m)),
      run.tail(),
    );
    assert.match(run.lines.at(-1) ?? '', /INF Metrics server stopped$/);
    await origin.close();
  });

  void test('a second signal during the grace period kills the process by that signal', async () => {
    const origin = await startOrigin();
    const { run, state } = await connected(quickArgs(origin.port));
    void request(`http://127.0.0.1:${state.publicPort}/hang`).catch(() => undefined);
    while (origin.seen.length === 0) await sleep(5);
    run.kill('SIGTERM');
    await run.waitFor(/INF Unregistered tunnel connection/);
    const count = run.lines.length;
    run.kill('SIGINT');
    assert.deepEqual(await run.finished(), { code: null, signal: 'SIGINT' });
    assert.equal(run.lines.length, count, 'no line after the second signal');
    assert.ok(!fs.existsSync(path.join(STATE_DIR, `${run.pid}.json`)));
    await origin.close();
  });

  void test('slow-start: SIGTERM before the banner kills silently (no handler yet)', async () => {
    const run = new FakeRun(quickArgs(await deadPort()), { FAKE_CLOUDFLARED_SCENARIO: 'slow-start' });
    await run.waitFor(/Requesting new quick Tunnel/);
    await sleep(100);
    const count = run.lines.length;
    run.kill('SIGTERM');
    assert.deepEqual(await run.finished(), { code: null, signal: 'SIGTERM' });
    assert.equal(run.lines.length, count);
    assert.equal(run.lines.length, 2);
  });

  void test('service-timeout: bare error after the timeout, exit 1; SIGTERM meanwhile kills silently', async () => {
    const port = await deadPort();
    const run = new FakeRun(quickArgs(port), {
      FAKE_CLOUDFLARED_SCENARIO: 'service-timeout',
      FAKE_CLOUDFLARED_SERVICE_TIMEOUT_MS: '200',
    });
    assert.deepEqual(await run.finished(), { code: 1, signal: null });
    assert.equal(
      run.lines.at(-1),
      'failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel": context deadline exceeded (Client.Timeout exceeded while awaiting headers)',
    );
    const killed = new FakeRun(quickArgs(port), { FAKE_CLOUDFLARED_SCENARIO: 'service-timeout' });
    await killed.waitFor(/Requesting new quick Tunnel/);
    killed.kill('SIGTERM');
    assert.deepEqual(await killed.finished(), { code: null, signal: 'SIGTERM' });
  });

  void test('no-network: two intro lines, then the bare error, exit 1', async () => {
    const run = new FakeRun(quickArgs(await deadPort()), { FAKE_CLOUDFLARED_SCENARIO: 'no-network' });
    assert.deepEqual(await run.finished(), { code: 1, signal: null });
    assert.equal(run.lines.length, 3);
    assert.match(msg(run.lines[0]) ?? '', /^Thank you for trying Cloudflare Tunnel/);
    assert.equal(msg(run.lines[1]), 'Requesting new quick Tunnel on trycloudflare.com...');
    assert.equal(
      run.lines[2],
      'failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel": dial tcp: lookup api.trycloudflare.com on 127.0.0.53:53: no such host',
    );
  });

  void test('rate-limited: ERR with the HTML body, then the bare unmarshal error, exit 1', async () => {
    const run = new FakeRun(quickArgs(await deadPort()), { FAKE_CLOUDFLARED_SCENARIO: 'rate-limited' });
    assert.deepEqual(await run.finished(), { code: 1, signal: null });
    const text = run.lines.join('\n');
    assert.match(text, new RegExp(`${TIME} ERR Error unmarshaling QuickTunnel response: <html>`));
    assert.match(text, /error="invalid character '<' looking for beginning of value" status_code="429 Too Many Requests"/);
    assert.equal(run.lines.at(-1), "failed to unmarshal quick Tunnel: invalid character '<' looking for beginning of value");
  });

  void test('quic-blocked: dial failures and retries, never ready, then exit 1', async () => {
    const run = new FakeRun(quickArgs(await deadPort()), {
      FAKE_CLOUDFLARED_SCENARIO: 'quic-blocked',
      FAKE_CLOUDFLARED_RETRY_MS: '60',
    });
    const line = await run.waitFor(/Starting metrics server on/);
    const addr = /on (\S+)\/metrics/.exec(line)?.[1] ?? '';
    assert.equal((await request(`http://${addr}/ready`)).status, 503);
    assert.deepEqual(await run.finished(), { code: 1, signal: null });
    const msgs = run.messages();
    const err = 'failed to dial to edge with quic: timeout: no recent network activity';
    assert.equal(
      msgs.filter((m) => m === `Failed to dial a quic connection error="${err}" connIndex=0 event=0 ip=198.41.192.7`).length,
      6,
    );
    assert.deepEqual(
      msgs.filter((m) => m.startsWith('Retrying connection')),
      [2, 4, 8, 16, 32].map((s) => `Retrying connection in up to ${s}s connIndex=0 event=0 ip=198.41.192.7`),
    );
    assert.ok(msgs.includes(`Initiating shutdown error="${err}"`));
    assert.ok(!msgs.some((m) => m.startsWith('Registered tunnel connection')));
    assert.equal(run.lines.at(-1), err);
  });

  void test('quic-blocked with --protocol http2: UDP is blocked, TCP is not: it registers over http2', async () => {
    const run = new FakeRun([...quickArgs(await deadPort()), '--protocol', 'http2'], { FAKE_CLOUDFLARED_SCENARIO: 'quic-blocked' });
    const line = await run.waitFor(/Registered tunnel connection/);
    assert.match(line, /protocol=http2/);
    run.kill('SIGTERM');
    await run.finished();
  });

  void test('flap: lost / retry / registered again at another location; /ready follows', async () => {
    const origin = await startOrigin();
    const run = new FakeRun(quickArgs(origin.port, '--protocol', 'http2'), {
      FAKE_CLOUDFLARED_SCENARIO: 'flap',
      FAKE_CLOUDFLARED_FLAP_MS: '150',
      FAKE_CLOUDFLARED_FLAP_COUNT: '2',
    });
    await run.waitForCount(/INF Registered tunnel connection/, 3);
    const { metricsAddress } = await run.state((s) => s.metricsAddress !== null);
    const reg = run.messages().filter((m) => m.startsWith('Registered tunnel connection'));
    assert.deepEqual(
      reg.map((m) => /location=(\w+)/.exec(m)?.[1]),
      ['lax01', 'sjc05', 'lax01'],
    );
    const msgs = run.messages();
    const lost = msgs.indexOf('Lost connection with the edge connIndex=0');
    assert.ok(lost > 0);
    assert.equal(msgs[lost + 1], 'Serve tunnel error error="connection with edge closed" connIndex=0 event=0 ip=198.41.200.13');
    assert.equal(msgs[lost + 2], 'Retrying connection in up to 1s connIndex=0 event=0 ip=198.41.200.13');
    assert.match(msgs[lost + 3] ?? '', /^Tunnel connection curve preferences: /);
    assert.match(msgs[lost + 4] ?? '', /^Registered tunnel connection .*location=sjc05 protocol=http2$/);
    assert.equal((await request(`http://${metricsAddress}/ready`)).status, 200);
    const metrics = (await request(`http://${metricsAddress}/metrics`)).body;
    assert.ok(metrics.includes('cloudflared_tunnel_server_locations{connection_id="0",edge_location="sjc05"} 0'));
    assert.ok(metrics.includes('cloudflared_tunnel_server_locations{connection_id="0",edge_location="lax01"} 1'));
    run.kill('SIGTERM');
    assert.equal((await run.finished()).code, 0);
    // http2 shutdown as in transcripts 13-15 and 18.
    assert.ok(run.messages().includes('Retrying connection in up to 1s connIndex=0 event=0 ip=198.41.200.13'));
    await origin.close();
  });

  void test('config.yml in $HOME hijacks --url; --config <{} file> does not', async () => {
    const origin = await startOrigin();
    const home = path.join(TMP, 'home-with-config');
    fs.mkdirSync(path.join(home, '.cloudflared'), { recursive: true });
    fs.writeFileSync(
      path.join(home, '.cloudflared', 'config.yml'),
      [
        'tunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef',
        'credentials-file: /nonexistent/6ff42ae2-765d-4adf-8112-31c55c1551ef.json',
        'ingress:',
        '  - hostname: app.example.com',
        `    service: http://127.0.0.1:${origin.port}`,
        '  - service: http_status:404',
        '',
      ].join('\n'),
    );
    const noConfigFlag = quickArgs(origin.port).filter((a, i, all) => a !== '--config' && all[i - 1] !== '--config');
    const [hijacked, isolated] = await Promise.all([
      connected(noConfigFlag, { HOME: home }),
      connected(quickArgs(origin.port), { HOME: home }),
    ]);

    const r1 = await request(`http://127.0.0.1:${hijacked.state.publicPort}/`);
    assert.equal(r1.status, 404);
    assert.equal(origin.seen.length, 0, 'the catch-all rule answered, not the origin');
    const hm = hijacked.run.messages();
    assert.ok(!hm.some((m) => m.startsWith('Cannot determine default configuration path')));
    assert.ok(hm.some((m) => /^Settings: map\[cred-file:\S+ credentials-file:\S+ ha-connections:1 /.test(m)), hm.join('\n'));
    const metrics = (await request(`http://${hijacked.state.metricsAddress}/metrics`)).body;
    assert.ok(metrics.includes('cloudflared_tunnel_response_by_code{status_code="404"} 1'));

    const r2 = await request(`http://127.0.0.1:${isolated.state.publicPort}/`);
    assert.equal(r2.status, 200);
    assert.equal(origin.seen.length, 1);

    hijacked.run.kill('SIGTERM');
    isolated.run.kill('SIGTERM');
    assert.equal((await hijacked.run.finished()).code, 0);
    assert.equal((await isolated.run.finished()).code, 0);
    await origin.close();
  });

  void test('--config /dev/null logs that it was empty; a missing --config file is ignored like the real one', async () => {
    const port = await deadPort();
    const missing = path.join(TMP, 'does-not-exist.yml');
    const args = (config: string): string[] => quickArgs(port).map((a) => (a === EMPTY_CONFIG ? config : a));
    const runs = [new FakeRun(args(missing))];
    if (process.platform !== 'win32') runs.push(new FakeRun(args('/dev/null')));
    for (const run of runs) await run.waitFor(/INF Registered tunnel connection/);
    for (const run of runs) run.kill('SIGTERM');
    for (const run of runs) assert.equal((await run.finished()).code, 0);
    const [missingRun, devNull] = runs;
    assert.ok(missingRun);
    assert.ok(missingRun.messages().some((m) => m.startsWith('Cannot determine default configuration path. No file [config.yml config.yaml]')));
    if (devNull) {
      assert.equal(msg(devNull.lines[0]), 'Configuration file /dev/null was empty');
      assert.match(devNull.lines[0] ?? '', /ERR Configuration file/);
      assert.ok(devNull.messages().some((m) => m.startsWith('Cannot determine default configuration path')));
    }
  });

  void test('ignore-sigterm: only SIGKILL ends it', async () => {
    const { run } = await connected(quickArgs(await deadPort()), { FAKE_CLOUDFLARED_SCENARIO: 'ignore-sigterm' });
    const count = run.lines.length;
    run.kill('SIGTERM');
    run.kill('SIGINT');
    await sleep(300);
    assert.ok(isAlive(run.pid));
    assert.equal(run.lines.length, count, 'no shutdown lines');
    run.kill('SIGKILL');
    assert.deepEqual(await run.finished(), { code: null, signal: 'SIGKILL' });
  });

  void test('hang-on-sigterm: logs the graceful shutdown but never exits', async () => {
    const { run } = await connected(quickArgs(await deadPort()), { FAKE_CLOUDFLARED_SCENARIO: 'hang-on-sigterm' });
    run.kill('SIGTERM');
    await run.waitFor(/INF Unregistered tunnel connection connIndex=0/);
    run.kill('SIGTERM');
    await sleep(300);
    assert.ok(isAlive(run.pid));
    assert.ok(!run.messages().includes('Tunnel server stopped'));
    run.kill('SIGKILL');
    assert.deepEqual(await run.finished(), { code: null, signal: 'SIGKILL' });
  });

  void test('update: "has been updated", then exit 11', async () => {
    const run = new FakeRun(quickArgs(await deadPort()), { FAKE_CLOUDFLARED_SCENARIO: 'update' });
    assert.deepEqual(await run.finished(), { code: 11, signal: null });
    const msgs = run.messages();
    assert.ok(msgs.includes('cloudflared has been updated version=2026.9.0'));
    assert.ok(msgs.includes('Initiating shutdown error="cloudflared has been updated to version 2026.9.0"'));
    assert.equal(run.lines.at(-1), 'cloudflared has been updated to version 2026.9.0');
  });

  void test('garbage: binary noise, colours and a 10 MiB line, the URL box still intact', async () => {
    const { run, state } = await connected(quickArgs(await deadPort()), { FAKE_CLOUDFLARED_SCENARIO: 'garbage' });
    assert.ok(run.lines.some((l) => l.length >= 10 * 1024 * 1024), 'the huge line');
    assert.ok(run.lines.some((l) => l.includes('\x1b[')), 'ANSI colours');
    const msgs = run.messages();
    const headline = msgs.indexOf(HEADLINE);
    assert.ok(headline > 0);
    assert.equal(msgs[headline - 1], BORDER_92);
    assert.equal(msgs[headline + 1], `|  ${state.url ?? ''}${' '.repeat(88 - (state.url ?? '').length)}  |`);
    assert.equal(msgs[headline + 2], BORDER_92);
    // The raw (coloured) lines still carry the box text verbatim.
    assert.ok(run.lines.some((l) => l.endsWith(`|  ${state.url ?? ''}${' '.repeat(88 - (state.url ?? '').length)}  |`)));
    run.kill('SIGTERM');
    assert.equal((await run.finished()).code, 0);
  });

  void test('exit-after-url: box, then the edge-discovery failure, exit 1', async () => {
    const run = new FakeRun(quickArgs(await deadPort()), { FAKE_CLOUDFLARED_SCENARIO: 'exit-after-url' });
    assert.deepEqual(await run.finished(), { code: 1, signal: null });
    assert.ok(run.messages().includes(HEADLINE));
    assert.equal(
      run.lines.at(-1),
      'Could not lookup srv records on _v2-origintunneld._tcp.argotunnel.com: lookup _v2-origintunneld._tcp.argotunnel.com on 127.0.0.53:53: no such host',
    );
  });

  void test('crash-after: runs, then ERR Initiating shutdown and exit 1', async () => {
    const run = new FakeRun(quickArgs(await deadPort()), {
      FAKE_CLOUDFLARED_SCENARIO: 'crash-after',
      FAKE_CLOUDFLARED_CRASH_AFTER_MS: '400',
    });
    assert.deepEqual(await run.finished(), { code: 1, signal: null });
    const msgs = run.messages();
    assert.ok(msgs.some((m) => m.startsWith('Registered tunnel connection')));
    assert.ok(run.lines.some((l) => / ERR Initiating shutdown error=/.test(l)));
  });

  void test('origin down: 502, request_errors, and the ERR lines of the version', async () => {
    const port = await deadPort();
    const [now, old] = await Promise.all([
      connected(quickArgs(port)),
      connected(quickArgs(port, '--protocol', 'http2'), { FAKE_CLOUDFLARED_VERSION: '2023.7.3' }),
    ]);
    for (const { state } of [now, old]) {
      const r = await request(`http://127.0.0.1:${state.publicPort}/x`);
      assert.equal(r.status, 502);
      const metrics = (await request(`http://${state.metricsAddress}/metrics`)).body.split('\n');
      assert.ok(metrics.includes('cloudflared_tunnel_request_errors 1'));
      assert.ok(metrics.includes('cloudflared_tunnel_total_requests 1'));
    }
    const reach = `Unable to reach the origin service. The service may be down or it may not be responding to traffic from cloudflared: dial tcp 127.0.0.1:${port}: connect: connection refused`;
    assert.ok(
      now.run.messages().includes(` error="${reach}" connIndex=0 event=1 ingressRule=0 originService=http://127.0.0.1:${port}`),
      now.run.tail(),
    );
    // 2023.7.3 as in transcript 18.
    const om = old.run.messages();
    assert.ok(om.some((m) => new RegExp(`^ error="${reach.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}" cfRay=[0-9a-f]{16}-LAX event=1 originService=http://127\\.0\\.0\\.1:${port}$`).test(m)), old.run.tail());
    assert.ok(om.includes(`failed to serve incoming request error="Failed to proxy HTTP: ${reach}"`));
    assert.ok(om.includes('Version 2023.7.3'));
    assert.ok(!om.some((m) => m.includes('CONNECTIVITY PRE-CHECKS')));
    assert.ok(old.run.lines.some((l) => /ERR update check failed error="Get \\"https:\/\/update\.argotunnel\.com/.test(l)));
    now.run.kill('SIGTERM');
    old.run.kill('SIGTERM');
    assert.equal((await now.run.finished()).code, 0);
    assert.equal((await old.run.finished()).code, 0);
  });

  void test('metrics port in use: ERR + bare line, exit 1', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const closeBlocker = { close: () => new Promise<void>((resolve) => blocker.close(() => resolve())) };
    openServers.add(closeBlocker);
    const port = (blocker.address() as net.AddressInfo).port;
    const args = quickArgs(await deadPort()).map((a) => (a === '127.0.0.1:0' ? `127.0.0.1:${port}` : a));
    const run = new FakeRun(args);
    assert.deepEqual(await run.finished(), { code: 1, signal: null });
    assert.ok(
      run.messages().includes(`Error opening metrics server listener error="listen tcp 127.0.0.1:${port}: bind: address already in use"`),
      run.tail(),
    );
    assert.equal(run.lines.at(-1), `Error opening metrics server listener: listen tcp 127.0.0.1:${port}: bind: address already in use`);
    openServers.delete(closeBlocker);
    await closeBlocker.close();
  });

  void test('pre-checks: --no-prechecks hides them; FAKE_CLOUDFLARED_PRECHECKS=after-register moves them', async () => {
    const port = await deadPort();
    const [none, late] = await Promise.all([
      connected(quickArgs(port, '--no-prechecks')),
      connected(quickArgs(port), { FAKE_CLOUDFLARED_PRECHECKS: 'after-register' }),
    ]);
    assert.ok(!none.run.messages().some((m) => m.includes('CONNECTIVITY PRE-CHECKS')));
    await late.run.waitFor(/INF precheck complete hard_fail=false /);
    assert.ok(late.run.indexOf(/CONNECTIVITY PRE-CHECKS/) > late.run.indexOf(/Registered tunnel connection/));
    none.run.kill('SIGTERM');
    late.run.kill('SIGTERM');
    assert.equal((await none.run.finished()).code, 0);
    assert.equal((await late.run.finished()).code, 0);
  });

  void test('tunnel run: no token is a usage error (255); a token runs a named tunnel', async () => {
    const missing = new FakeRun(['tunnel', '--no-autoupdate', 'run']);
    assert.deepEqual(await missing.finished(), { code: 255, signal: null });
    assert.deepEqual(missing.lines, [
      '"cloudflared tunnel run" requires the ID or name of the tunnel to run as the last command line argument or in the configuration file.',
      "See 'cloudflared tunnel run --help'.",
    ]);
    const bad = new FakeRun(['tunnel', '--no-autoupdate', 'run', '--token', 'not-a-token']);
    assert.equal((await bad.finished()).code, 255);
    assert.equal(bad.lines[0], 'Provided Tunnel token is not valid.');

    const origin = await startOrigin();
    const tunnelId = '2f1b3c4d-5e6f-4a1b-8c9d-0e1f2a3b4c5d';
    const token = Buffer.from(JSON.stringify({ a: 'acct', t: tunnelId, s: 'c2VjcmV0' })).toString('base64');
    const run = new FakeRun(
      ['tunnel', '--no-autoupdate', '--metrics', '127.0.0.1:0', 'run', '--url', `http://127.0.0.1:${origin.port}`],
      { TUNNEL_TOKEN: token, FAKE_CLOUDFLARED_HOSTNAME: 'mcp.example.org' },
    );
    await run.waitForCount(/INF Registered tunnel connection/, 4);
    const state = await run.state((s) => s.metricsAddress !== null);
    const msgs = run.messages();
    assert.equal(msgs[0], `Starting tunnel tunnelID=${tunnelId}`);
    assert.ok(!msgs.some((m) => m.startsWith('Cannot determine default configuration path')));
    assert.ok(!msgs.some((m) => m.includes(token)), 'the token is never logged');
    assert.equal((await request(`http://${state.metricsAddress}/quicktunnel`)).body, '{"hostname":""}');
    const ready = JSON.parse((await request(`http://${state.metricsAddress}/ready`)).body) as { readyConnections: number };
    assert.equal(ready.readyConnections, 4);
    const r = await request(`http://127.0.0.1:${state.publicPort}/mcp`);
    assert.equal(r.status, 200);
    assert.equal(origin.seen[0]?.headers.host, 'mcp.example.org');
    run.kill('SIGTERM');
    assert.equal((await run.finished()).code, 0);
    await origin.close();
  });
});

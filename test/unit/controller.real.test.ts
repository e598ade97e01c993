// file-timeout: 120 s (the controller against real fake-cloudflared processes, ~26 s alone; test/support/runUnit.ts)
/**
 * The controller against the fake cloudflared executable: real processes, real signals, real
 * sockets. Every test checks that no process is left behind.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { findCloudflared } from '../../src/core/cloudflared/locate';
import { PROTOCOL_MEMORY_FILE } from '../../src/core/cloudflared/protocolMemory';
import { REDACTED_SECRET, TunnelController, type TunnelControllerOptions } from '../../src/core/tunnelController';
import type { TunnelState } from '../../src/core/model/tunnelState';
import { get, startStrictOrigin, type Origin } from '../support/origins';
import { fakeRunOptions } from '../support/fakeRuns';
import { FAKE_CLOUDFLARED, publicPath, readFakeState, waitFor, waitGone } from '../support/proc';

let origin: Origin;
let work: string;
const controllers: TunnelController[] = [];
const pids: number[] = [];

function make(scenario: string, extraEnv: Record<string, string> = {}, opts: Partial<TunnelControllerOptions> = {}) {
  const base = fakeRunOptions(work, controllers.length, { FAKE_CLOUDFLARED_SCENARIO: scenario, ...extraEnv });
  const home = base.baseEnv?.['HOME'] ?? '';
  const c = new TunnelController({ ...base, metricsIntervalMs: 200, ...opts });
  controllers.push(c);
  // Metrics are polled only while watched: these tests watch, as a visible view does (unless told not to).
  if (!extraEnv['NO_WATCH']) c.watchMetrics();
  const states: TunnelState[] = [];
  c.onDidChangeState((s) => {
    states.push(s);
    if ('pid' in s && s.pid && !pids.includes(s.pid)) pids.push(s.pid);
  });
  return { c, states, seq: () => states.map((s) => s.status), home };
}

const target = () => ({ host: 'localhost', port: origin.port, path: '/mcp' });

describe('TunnelController + fake cloudflared (real processes)', { concurrency: false }, () => {
  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'mcpt-real-'));
    origin = await startStrictOrigin();
  });
  afterEach(async () => {
    // What a quic-blocked start remembers must not change the next test's protocol.
    rmSync(path.join(work, 'state', PROTOCOL_MEMORY_FILE), { force: true });
    await Promise.all(controllers.splice(0).map((c) => c.shutdown(3000)));
    for (const pid of pids.splice(0)) assert.ok(await waitGone(pid, 3000), `cloudflared PID ${pid} is gone`);
  });
  after(async () => {
    await origin.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('Share for…: a share stops by itself when its time is up (the others go on), an idle one after its idle time counted from its last request; the last one ends the tunnel', async () => {
    const { c } = make('ok');
    const stops: string[] = [];
    c.onDidStopShareByItself((e) => stops.push(e.message));
    const first = await c.start(target(), { lifetime: { idleMs: 1500 } });
    assert.equal(first.status, 'active');
    const second = await startStrictOrigin();
    try {
      await c.start({ host: 'localhost', port: second.port, path: '/mcp' }, { lifetime: { afterMs: 1000 } });
      const [a, b] = c.listShares();
      assert.equal(b?.stop_reason, 'time');
      assert.equal(a?.stop_reason, 'idle');
      assert.equal(a?.idle_stop_minutes, 0);
      const fake = readFakeState(work, 'pid' in first ? (first.pid ?? 0) : 0);
      assert.ok(fake && a?.mcp_url);
      // Requests keep the idle share alive past its idle time.
      const until = Date.now() + 2200;
      while (Date.now() < until) {
        assert.equal((await get(fake.publicPort, publicPath(a.mcp_url))).status, 200);
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.deepEqual(c.listShares().map((x) => x.id), [a.id], 'the timed share stopped, the busy idle one goes on');
      assert.match(stops[0] ?? '', /stopped by itself: its time was up/);
      await waitFor(() => (c.state.status === 'stopped' ? true : undefined), 5000, 'the idle share to stop, and with it the tunnel');
      assert.match(stops[1] ?? '', /stopped by itself: no request for 2 s/);
    } finally {
      await second.close();
    }
  });

  it("the inspector takes Cf-* headers as Cloudflare's word only on cloudflared's own connections: a local process sending them straight to the gate is named as such", { skip: process.platform !== 'linux' ? 'tells the peer process from /proc' : false }, async () => {
    const { c } = make('ok');
    const s = await c.start(target());
    assert.equal(s.status, 'active');
    const pid = 'pid' in s ? (s.pid ?? 0) : 0;
    const fake = readFakeState(work, pid);
    const mcpUrl = c.snapshot().mcp_url;
    assert.ok(fake && mcpUrl);
    assert.equal((await get(fake.publicPort, publicPath(mcpUrl))).status, 200);
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const gatePort = Number(new URL(argv[argv.indexOf('--url') + 1] ?? '').port);
    assert.ok(gatePort > 0, argv.join(' '));
    assert.equal((await get(gatePort, publicPath(mcpUrl), { 'cf-connecting-ip': '198.51.100.66', 'cf-ipcountry': 'XX' })).status, 200, 'the secret lets it in all the same');
    const calls = await waitFor(() => (c.activity().length >= 2 ? c.activity() : undefined), 5000, 'both requests recorded');
    const [viaTunnel, local] = calls;
    assert.equal(viaTunnel?.from_tunnel, true);
    assert.equal(viaTunnel?.country, 'US', 'as the fake cloudflared reports it');
    assert.equal(local?.from_tunnel, false);
    assert.equal(local?.country, null, 'a claim from a local process is not kept');
    assert.equal(local?.remote_ip, null);
  });

  it('ok: active; traffic through the public port reaches a Host-checking origin; metrics count it; stop leaves nothing', async () => {
    const { c, seq } = make('ok');
    const s = await c.start(target());
    assert.equal(s.status, 'active', JSON.stringify(s));
    assert.deepEqual(seq(), ['starting', 'starting', 'connecting', 'connecting', 'active']);
    const snap = c.snapshot();
    assert.match(snap.url ?? '', /^https:\/\/[a-z]+(-[a-z]+){3}\.trycloudflare\.com$/);
    // Secret mode is the default: the MCP URL carries the share secret.
    assert.equal(snap.access, 'secret');
    assert.match(snap.mcp_url ?? '', new RegExp(`^${snap.url}/[A-Za-z0-9_-]{43}/mcp$`));
    const fake = await waitFor(() => readFakeState(work, snap.pid!), 3000, 'fake state file');
    assert.equal(fake.url, snap.url);
    const res = await get(fake.publicPort, publicPath(snap.mcp_url));
    assert.equal(res.status, 200, res.body);
    assert.equal(origin.hosts.at(-1), `localhost:${origin.port}`, 'the origin sees its own host:port, not the public host');
    // cloudflared counts a request when it arrives and its status when the response is done: a
    // poll in between sees the total without the code, so wait for the code.
    const m = await waitFor(() => (c.metrics?.responsesByCode['200'] ? c.metrics : undefined), 3000, 'metrics with the 200');
    assert.equal(m.responsesByCode['200'], 1);
    assert.equal(m.readyConnections, 1);
    assert.deepEqual(m.edgeLocations, ['lax01']);
    const pid = snap.pid!;
    await c.stop();
    assert.equal(c.state.status, 'stopped');
    assert.equal(c.metrics, undefined);
    assert.ok(await waitGone(pid, 1000));
  });

  it('host header "public": the origin sees the public hostname (and a strict origin refuses it)', async () => {
    const { c } = make('ok', {}, { hostHeader: 'public' });
    const s = await c.start(target());
    assert.equal(s.status, 'active');
    const fake = await waitFor(() => readFakeState(work, c.snapshot().pid!), 3000, 'fake state');
    const res = await get(fake.publicPort, `${c.state.status === 'active' ? c.state.sharePath : ''}/`);
    assert.equal(res.status, 403);
    assert.equal(`https://${origin.hosts.at(-1)}`, c.snapshot().url);
  });

  it('a config.yml in $HOME does not hijack the tunnel', async () => {
    const { c, home } = make('ok');
    mkdirSync(path.join(home, '.cloudflared'), { recursive: true });
    writeFileSync(path.join(home, '.cloudflared', 'config.yml'), 'ingress:\n  - hostname: example.com\n    service: http://127.0.0.1:9\n  - service: http_status:404\n');
    const s = await c.start(target());
    assert.equal(s.status, 'active');
    const fake = await waitFor(() => readFakeState(work, c.snapshot().pid!), 3000, 'fake state');
    const res = await get(fake.publicPort, publicPath(c.snapshot().mcp_url));
    assert.equal(res.status, 200, 'the request reached the origin instead of the config.yml catch-all 404');
  });

  it('an old cloudflared (2023.7.3) runs without --output json', async () => {
    // Its own path: versions are cached per binary path and modification time.
    const old = path.join(work, 'cloudflared-2023.7.3');
    writeFileSync(old, `#!/bin/sh\nFAKE_CLOUDFLARED_VERSION=2023.7.3 exec '${FAKE_CLOUDFLARED}' "$@"\n`, { mode: 0o755 });
    const { c } = make('ok', {}, { findCloudflared: () => findCloudflared({ explicitPath: old }) });
    const s = await c.start(target());
    assert.equal(s.status, 'active', JSON.stringify(s));
    assert.equal(c.cloudflared?.version, '2023.7.3');
  });

  const failures: [string, Record<string, string>, string, RegExp][] = [
    ['no-network', {}, 'no-network', /could not reach Cloudflare's quick-tunnel service/],
    ['rate-limited', {}, 'service-unavailable', /rate limiting/],
    ['service-timeout', { FAKE_CLOUDFLARED_SERVICE_TIMEOUT_MS: '300' }, 'service-unavailable', /did not give a tunnel/],
    ['quic-blocked', { FAKE_CLOUDFLARED_RETRY_MS: '100' }, 'edge-unreachable', /http2/],
    // The fake's exit-after-url dies as transcript 16 does: edge discovery (DNS SRV) fails after the URL.
    ['exit-after-url', {}, 'edge-unreachable', /could not connect to Cloudflare's edge/],
  ];
  for (const [scenario, env, code, message] of failures) {
    it(`${scenario}: failed (${code}) with a message that says what to do`, async () => {
      const { c, seq } = make(scenario, env);
      const s = await c.start(target());
      assert.equal(s.status, 'failed', JSON.stringify(s));
      if (s.status !== 'failed') return;
      assert.equal(s.error.code, code, s.error.message);
      assert.match(s.error.message, message);
      assert.equal(seq().at(-1), 'failed');
      assert.ok(s.error.lastLines.length > 0);
    });
  }

  it('slow-start: no URL before the timeout → killed, failed with timeout', async () => {
    const { c } = make('slow-start', {}, { startTimeoutMs: 700 });
    const s = await c.start(target());
    assert.equal(s.status === 'failed' && s.error.code, 'timeout');
  });

  it('slow-start: stop during start → stopped (cloudflared dies silently on SIGTERM)', async () => {
    const { c, seq } = make('slow-start');
    const started = c.start(target());
    await waitFor(() => (c.state.status === 'starting' && c.state.pid ? true : undefined), 3000, 'pid');
    await c.stop();
    assert.equal((await started).status, 'stopped');
    assert.deepEqual(seq().slice(-2), ['stopping', 'stopped']);
  });

  it('flap: reconnecting and back to active, uptime kept', async () => {
    const { c, seq } = make('flap', { FAKE_CLOUDFLARED_FLAP_MS: '150', FAKE_CLOUDFLARED_FLAP_COUNT: '2' });
    assert.equal((await c.start(target())).status, 'active');
    const connectedAt = c.snapshot().connected_at;
    await waitFor(() => (seq().filter((x) => x === 'reconnecting').length >= 2 && c.state.status === 'active' ? true : undefined), 4000, 'two flaps');
    assert.equal(c.snapshot().connected_at, connectedAt);
  });

  it('update: cloudflared replaced itself and exited 11 → failed (updated), says to start again', async () => {
    const { c } = make('update', {}, { autoRestart: false });
    await c.start(target());
    const s = await waitFor(() => (c.state.status === 'failed' ? c.state : undefined), 3000, 'failure');
    assert.equal(s.error.code, 'updated');
    assert.equal(s.error.exitCode, 11);
    assert.match(s.error.message, /Start the tunnel again/);
  });

  it('crash while live: `restarting` (the default policy) with the exit code', async () => {
    const { c } = make('crash-after', { FAKE_CLOUDFLARED_CRASH_AFTER_MS: '300' });
    assert.equal((await c.start(target())).status, 'active');
    const s = await waitFor(() => (c.state.status === 'restarting' ? c.state : undefined), 3000, 'the restart to be scheduled');
    assert.equal(s.error.exitCode, 1);
    assert.match(s.error.message, /while the tunnel was live/);
  });

  it('quic-blocked is remembered: the first start fails saying the next uses HTTP/2; the next starts with --protocol http2 and works (the tree says why); a QUIC connection forgets it', async () => {
    const memory = path.join(work, 'state', PROTOCOL_MEMORY_FILE);
    const first = make('quic-blocked', { FAKE_CLOUDFLARED_RETRY_MS: '100' });
    const s1 = await first.c.start(target());
    assert.equal(s1.status, 'failed');
    assert.match(s1.status === 'failed' ? s1.error.message : '', /start again and MCP Tunnel uses HTTP\/2/);
    assert.ok(existsSync(memory), 'remembered');
    const second = make('quic-blocked');
    const s2 = await second.c.start(target());
    assert.equal(s2.status, 'active', JSON.stringify(s2));
    assert.equal(s2.status === 'active' ? s2.connections[0]?.protocol : undefined, 'http2');
    assert.match(second.c.protocolNote() ?? '', /^HTTP\/2: QUIC failed on this network/);
    await second.c.stop();
    const third = make('ok');
    const s3 = await third.c.start(target());
    assert.equal(s3.status, 'active');
    // The memory said HTTP/2, so this start did not try QUIC: still remembered until a QUIC start works.
    assert.ok(existsSync(memory));
    await third.c.stop();
    rmSync(memory);
    const fourth = make('ok');
    await fourth.c.start(target());
    assert.equal(fourth.c.protocolNote(), undefined);
    await fourth.c.stop();
    // Remembered again, then a start that uses QUIC (set explicitly) and connects: forgotten.
    writeFileSync(memory, JSON.stringify({ quicBlockedAt: Date.now() }));
    const quicWorked = make('ok', {}, { protocol: 'quic' });
    assert.equal((await quicWorked.c.start(target())).status, 'active');
    await waitFor(() => (!existsSync(memory) ? true : undefined), 3000, 'the memory to be forgotten after a QUIC connection');
  });

  it('ignore-sigterm: stop still ends it (SIGKILL after the grace period)', async () => {
    const { c } = make('ignore-sigterm', {}, { stopGraceMs: 300 });
    assert.equal((await c.start(target())).status, 'active');
    const pid = c.snapshot().pid!;
    await c.stop();
    assert.equal(c.state.status, 'stopped');
    assert.ok(await waitGone(pid, 1000));
  });

  it('garbage output (binary noise, a 10 MB line): still active with the right URL', async () => {
    const { c } = make('garbage', { FAKE_CLOUDFLARED_GARBAGE_BYTES: String(10 * 1024 * 1024) });
    const s = await c.start(target());
    assert.equal(s.status, 'active');
    const fake = await waitFor(() => readFakeState(work, c.snapshot().pid!), 3000, 'fake state');
    assert.equal(c.snapshot().url, fake.url);
  });

  it('cloudflared missing: not-found with the install link', async () => {
    const { c } = make('ok', {}, { findCloudflared: () => findCloudflared({ explicitPath: path.join(work, 'nope', 'cloudflared'), settingName: 'mcpTunnel.cloudflaredPath' }) });
    const s = await c.start(target());
    assert.equal(s.status === 'failed' && s.error.code, 'not-found');
    assert.match(s.status === 'failed' ? s.error.message : '', /mcpTunnel\.cloudflaredPath/);
  });

  it('metrics are read only while watched: none without a watcher, polls while one watches, none after it leaves', async () => {
    const { c } = make('ok', { NO_WATCH: '1' });
    // Read through a call: TypeScript would keep the narrowing of the first assertion.
    const metrics = () => c.metrics;
    assert.equal((await c.start(target())).status, 'active');
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(metrics(), undefined, 'nobody watches: nothing was read (the interval is 200 ms)');
    const watch = c.watchMetrics();
    const first = await waitFor(() => metrics(), 3000, 'metrics once watched');
    await waitFor(() => (metrics()?.readAt !== first.readAt ? true : undefined), 3000, 'a second poll');
    watch.dispose();
    await new Promise((r) => setTimeout(r, 300)); // a poll in flight may still land
    const last = metrics()?.readAt;
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(metrics()?.readAt, last, 'no poll after the last watcher left');
    // A reader that does not watch can still ask for one read.
    await c.refreshMetrics();
    assert.notEqual(metrics()?.readAt, last);
  });

  it('not cloudflared: a file that is some other program', async () => {
    const other = path.join(work, 'not-cloudflared');
    writeFileSync(other, '#!/bin/sh\necho hello\n', { mode: 0o755 });
    const { c } = make('ok', {}, { findCloudflared: () => findCloudflared({ explicitPath: other }) });
    const s = await c.start(target());
    assert.equal(s.status === 'failed' && s.error.code, 'not-cloudflared');
  });

  it('not executable', async () => {
    const f = path.join(work, 'cloudflared-noexec');
    writeFileSync(f, '#!/bin/sh\n', { mode: 0o644 });
    const { c } = make('ok', {}, { findCloudflared: () => findCloudflared({ explicitPath: f }) });
    const s = await c.start(target());
    assert.equal(s.status === 'failed' && s.error.code, 'not-executable');
    assert.match(s.status === 'failed' ? s.error.message : '', /chmod \+x/);
  });

  it('access "secret" (default): the gate refuses requests without the share secret before the origin; the MCP URL carries it; rotate revokes; no log line has it', async () => {
    // Debug level: cloudflared then logs every request's URL (secret path included) and headers.
    const { c } = make('ok', {}, { logLevel: 'debug' });
    const logs: string[] = [];
    c.onDidLog((e) => logs.push(e.message));
    const s = await c.start(target());
    assert.equal(s.status, 'active', JSON.stringify(s));
    const snap = c.snapshot();
    assert.equal(snap.access, 'secret');
    const sharePath = s.status === 'active' ? s.sharePath : undefined;
    assert.match(sharePath ?? '', /^\/[A-Za-z0-9_-]{40,}$/);
    assert.equal(snap.mcp_url, `${snap.url}${sharePath}/mcp`);
    const fake = await waitFor(() => readFakeState(work, snap.pid!), 3000, 'fake state');
    const before = origin.hosts.length;
    assert.equal((await get(fake.publicPort, '/mcp')).status, 401);
    assert.equal(origin.hosts.length, before, 'a refused request never reaches the origin');
    const ok = await get(fake.publicPort, `${sharePath}/mcp`);
    assert.equal(ok.status, 200, ok.body);
    assert.equal(origin.hosts.at(-1), `localhost:${origin.port}`, 'the origin sees its own host behind the gate');
    assert.equal((await get(fake.publicPort, '/mcp', { authorization: `Bearer ${sharePath!.slice(1)}` })).status, 200);
    const next = c.rotateSecret();
    assert.ok(next && next !== sharePath);
    assert.equal(c.snapshot().mcp_url, `${snap.url}${next}/mcp`);
    assert.equal((await get(fake.publicPort, `${sharePath}/mcp`)).status, 401);
    assert.equal((await get(fake.publicPort, `${next}/mcp`)).status, 200);
    await c.stop();
    assert.equal(c.rotateSecret(), undefined);
    assert.ok(logs.length > 5, 'the run logged');
    const requestLines = logs.filter((l) => /^CF-RAY: \S+ GET https:\/\/\S+ HTTP\/1\.1$/.test(l));
    assert.ok(requestLines.some((l) => l.includes(`/${REDACTED_SECRET}/mcp`)), `cloudflared's debug request lines show the secret redacted:\n${requestLines.join('\n')}`);
    for (const secret of [sharePath!.slice(1), next.slice(1)]) assert.ok(!logs.some((l) => l.includes(secret)), 'no log line carries a share secret');
  });

  it('access "open" (controller option): the plain MCP URL; cloudflared points at a pass-through gate, never straight at the origin', async () => {
    const { c } = make('ok', {}, { access: 'open' });
    assert.equal((await c.start(target())).status, 'active');
    assert.equal(c.snapshot().access, 'open');
    assert.equal(c.snapshot().mcp_url, `${c.snapshot().url}/mcp`);
    assert.deepEqual(c.accessStats, { passed: 0, rejected: 0 });
    const cmdline = readFileSync(`/proc/${c.snapshot().pid}/cmdline`, 'utf8').split('\0');
    // A dead host must mean a dead origin for cloudflared: its --url is the gate, in open mode too.
    assert.match(cmdline[cmdline.indexOf('--url') + 1] ?? '', /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(cmdline[cmdline.indexOf('--url') + 1], `http://localhost:${origin.port}`);
    const fake = await waitFor(() => readFakeState(work, c.snapshot().pid!), 3000, 'fake state');
    assert.equal((await get(fake.publicPort, '/mcp')).status, 200);
    assert.equal(c.accessStats?.passed, 1, 'the request went through the gate');
    assert.equal(c.rotateSecret(), undefined, 'nothing to rotate in open mode');
  });

  it('access per start: the mode of the target wins over the option; a live tunnel in one mode refuses a start in the other', async () => {
    const { c } = make('ok', {}, { access: 'secret' });
    const s = await c.start({ ...target(), access: 'open' });
    assert.equal(s.status, 'active', JSON.stringify(s));
    assert.equal(c.snapshot().access, 'open');
    // Same target without a mode: the live one. With the other mode: busy, naming both modes.
    assert.equal((await c.start(target())).status, 'active');
    await assert.rejects(c.start({ ...target(), access: 'secret' }), /already running in open mode.*in secret mode/);
    // A restart keeps the run's mode; a restart with a new target may change it.
    assert.equal((await c.restart()).status, 'active');
    assert.equal(c.snapshot().access, 'open');
    assert.equal((await c.restart({ ...target(), access: 'secret' })).status, 'active');
    assert.equal(c.snapshot().access, 'secret');
    const stats = c.accessStats;
    assert.deepEqual(stats, { passed: 0, rejected: 0 });
    const fake = await waitFor(() => readFakeState(work, c.snapshot().pid!), 3000, 'fake state');
    assert.equal((await get(fake.publicPort, '/mcp')).status, 401);
    assert.equal((await get(fake.publicPort, publicPath(c.snapshot().mcp_url))).status, 200);
    assert.deepEqual(c.accessStats, { passed: 1, rejected: 1 });
  });

  it('named tunnel: `tunnel run` with the token in the environment, never in argv, logs or state', async () => {
    const token = Buffer.from(JSON.stringify({ a: 'acct0123456789', t: '6ff42ae2-765d-4adf-8112-31c55c1551ef', s: 'c2VjcmV0LXNlY3JldC1zZWNyZXQ=' })).toString('base64');
    const { c, states } = make('ok', {}, { named: { hostname: 'mcp.example.com', token: () => Promise.resolve(token) } });
    const logs: string[] = [];
    c.onDidLog((e) => logs.push(e.message));
    const s = await c.start(target());
    assert.equal(s.status, 'active', JSON.stringify(s));
    const snap = c.snapshot();
    assert.equal(snap.url, 'https://mcp.example.com');
    assert.match(snap.mcp_url ?? '', /^https:\/\/mcp\.example\.com\/[A-Za-z0-9_-]{43}\/mcp$/);
    const cmdline = readFileSync(`/proc/${snap.pid}/cmdline`, 'utf8').split('\0');
    assert.ok(cmdline.includes('run'), cmdline.join(' '));
    assert.ok(!cmdline.some((a) => a.includes(token) || a.includes('acct0123456789')), 'token not in argv');
    const environ = readFileSync(`/proc/${snap.pid}/environ`, 'utf8');
    assert.ok(environ.includes(`TUNNEL_TOKEN=${token}`), 'token passed through the environment');
    assert.ok(!logs.some((l) => l.includes(token)), 'token not in logs');
    assert.ok(!JSON.stringify(states).includes(token) && !JSON.stringify(snap).includes(token), 'token not in state');
    const fake = await waitFor(() => readFakeState(work, snap.pid!), 3000, 'fake state');
    assert.equal((await get(fake.publicPort, publicPath(snap.mcp_url))).status, 200);
  });

  it('a share secret store: the stored secret is used across starts (a stable MCP URL for a named tunnel); rotation stores the new one; a malformed one is replaced', async () => {
    let stored: string | undefined = 'x'.repeat(10); // malformed: too short
    const writes: string[] = [];
    const keys = new Set<string>();
    const store = {
      get: (key: string) => (keys.add(key), Promise.resolve(stored)),
      set: (key: string, v: string) => (keys.add(key), (stored = v), writes.push(v), Promise.resolve()),
    };
    const token = Buffer.from(JSON.stringify({ a: 'acct', t: '6ff42ae2-765d-4adf-8112-31c55c1551ef', s: 'c2VjcmV0' })).toString('base64');
    const { c } = make('ok', {}, { named: { hostname: 'mcp.example.com', token: () => Promise.resolve(token) }, shareSecretStore: store });
    assert.equal((await c.start(target())).status, 'active');
    const first = c.snapshot().mcp_url;
    assert.equal(writes.length, 1, 'the malformed secret was replaced and stored');
    assert.equal(first, `https://mcp.example.com/${stored}/mcp`);
    await c.stop();
    assert.equal((await c.start(target())).status, 'active');
    assert.equal(c.snapshot().mcp_url, first, 'the same MCP URL after a stop and a start');
    const fake = await waitFor(() => readFakeState(work, c.snapshot().pid!), 3000, 'fake state');
    assert.equal((await get(fake.publicPort, publicPath(first))).status, 200);
    const next = c.rotateSecret();
    await waitFor(() => (writes.length === 2 ? true : undefined), 2000, 'the rotated secret stored');
    assert.equal(`/${stored}`, next);
    assert.equal((await get(fake.publicPort, publicPath(first))).status, 401);
    assert.equal((await c.restart()).status, 'active');
    assert.equal(c.snapshot().mcp_url, `https://mcp.example.com${next}/mcp`, 'the rotated secret survives a restart');
    assert.deepEqual([...keys].sort(), [`links|localhost:${origin.port}/mcp`, `localhost:${origin.port}/mcp`], 'kept under the share\'s target (its links beside it)');
  });

  it('a named tunnel keeps its links across stops and starts (the store): each link URL works again, an expired one is dropped, a revoked one stays revoked', async () => {
    const saved = new Map<string, string>();
    const store = { get: (k: string) => Promise.resolve(saved.get(k)), set: (k: string, v: string) => (saved.set(k, v), Promise.resolve()) };
    const token = Buffer.from(JSON.stringify({ a: 'acct', t: '6ff42ae2-765d-4adf-8112-31c55c1551ef', s: 'c2VjcmV0' })).toString('base64');
    const { c } = make('ok', {}, { named: { hostname: 'mcp.example.com', token: () => Promise.resolve(token) }, shareSecretStore: store });
    assert.equal((await c.start(target())).status, 'active');
    const shareId = c.listShares()[0]?.id ?? '';
    const alice = c.createLink(shareId, { label: 'Alice' });
    const bob = c.createLink(shareId, { label: 'Bob', expiresInMs: 1500 });
    const carol = c.createLink(shareId, { label: 'Carol' });
    assert.ok(alice?.mcp_url && bob?.mcp_url && carol?.mcp_url);
    assert.ok(c.revokeLink(shareId, carol.id));
    await waitFor(() => (JSON.parse(saved.get(`links|localhost:${origin.port}/mcp`) ?? '[]') as unknown[]).length === 2 || undefined, 2000, 'the links stored');
    await c.stop();
    await new Promise((r) => setTimeout(r, 1600)); // Bob's link expires while the tunnel is down
    assert.equal((await c.start(target())).status, 'active');
    const links = c.listShares()[0]?.links ?? [];
    assert.deepEqual(links.map((l) => l.label), ['Alice'], 'Alice back, Bob expired, Carol revoked');
    assert.equal(links[0]?.mcp_url, alice.mcp_url, 'the same link URL');
    const fake = await waitFor(() => readFakeState(work, c.snapshot().pid!), 3000, 'fake state');
    assert.equal((await get(fake.publicPort, publicPath(alice.mcp_url))).status, 200, "Alice's link works after the restart");
    assert.equal((await get(fake.publicPort, publicPath(carol.mcp_url))).status, 401);
    assert.equal((await get(fake.publicPort, publicPath(bob.mcp_url))).status, 401);
    // A store with garbage in it loses the links, not the share.
    saved.set(`links|localhost:${origin.port}/mcp`, '{not json');
    await c.stop();
    assert.equal((await c.start(target())).status, 'active');
    assert.deepEqual(c.listShares()[0]?.links, []);
  });

  it('without a store every start makes a new share secret', async () => {
    const { c } = make('ok');
    assert.equal((await c.start(target())).status, 'active');
    const first = c.state.status === 'active' ? c.state.sharePath : undefined;
    await c.stop();
    assert.equal((await c.start(target())).status, 'active');
    assert.ok(first && c.state.status === 'active' && c.state.sharePath && c.state.sharePath !== first);
  });

  it('named tunnel without a token: failed (no-token) naming the fix, no process', async () => {
    const { c } = make('ok', {}, { named: { hostname: 'mcp.example.com', token: () => Promise.resolve(undefined) } });
    const s = await c.start(target());
    assert.equal(s.status === 'failed' && s.error.code, 'no-token');
    assert.match(s.status === 'failed' ? s.error.message : '', /Set Tunnel Token/);
  });

  it('orphans: a run recorded by a dead owner is verified by its command line and ended', async () => {
    const { c } = make('ok');
    assert.equal((await c.start(target())).status, 'active');
    const pid = c.snapshot().pid!;
    // Pretend the owner died: rewrite the record with a dead owner PID.
    const { readdirSync } = await import('node:fs');
    const stateDir = path.join(work, 'state');
    const file = readdirSync(stateDir).find((f) => f.startsWith('run-'))!;
    const rec = JSON.parse(readFileSync(path.join(stateDir, file), 'utf8')) as { ownerPid: number };
    rec.ownerPid = 2 ** 22 + 12345; // beyond pid_max's default range: not alive
    writeFileSync(path.join(stateDir, file), JSON.stringify(rec));
    const other = make('ok').c;
    const reaped = await other.reapOrphans();
    assert.deepEqual(reaped.map((r) => [r.pid, r.outcome]), [[pid, 'ended']]);
    assert.ok(await waitGone(pid, 1000));
  });
});

/** The controller's state machine with an injected fake process: exact state sequences, faked timers. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { CloudflaredError } from '../../src/core/cloudflared/locate';
import { TunnelController, type TunnelControllerOptions } from '../../src/core/tunnelController';
import { TunnelBusyError, type TunnelState } from '../../src/core/model/tunnelState';
import { fakeSpawner, flush, type FakeProcess } from '../support/fakeProcess';

const TARGET = { host: 'localhost', port: 8002, path: '/mcp' };
let stateDir: string;

/** Every fake process of the test: ended afterwards, so each run's gate (a real server) closes. */
const allProcs: FakeProcess[][] = [];

function make(opts: Partial<TunnelControllerOptions> = {}, configure?: (p: FakeProcess) => void) {
  const { spawn, procs } = fakeSpawner(configure);
  allProcs.push(procs);
  const c = new TunnelController({
    findCloudflared: () => Promise.resolve({ path: '/opt/cloudflared', version: '2026.8.2' }),
    stateDir,
    spawn,
    metricsIntervalMs: 0,
    startTimeoutMs: 10_000,
    stopGraceMs: 2_000,
    baseEnv: { PATH: '/usr/bin', TUNNEL_NAME: 'hijack', TUNNEL_TOKEN: 'x', NO_AUTOUPDATE: 'false', HOME: '/home/u' },
    // The process supervision under test; the gate (the default) has its own tests with real processes.
    access: 'open',
    ...opts,
  });
  const states: TunnelState[] = [];
  c.onDidChangeState((s) => states.push(s));
  return { c, procs, states, seq: () => states.map((s) => s.status) };
}

/** Wait (with real immediates) until the controller has spawned its nth process. */
async function spawned(procs: FakeProcess[], n = 1): Promise<FakeProcess> {
  for (let i = 0; i < 5000 && procs.length < n; i++) await flush(1);
  const p = procs[n - 1];
  assert.ok(p, 'process was spawned');
  return p;
}

describe('TunnelController (fake process)', () => {
  beforeEach(() => {
    stateDir = mkdtempSync(path.join(tmpdir(), 'mcpt-ctl-'));
    mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_800_000_000_000 });
  });
  afterEach(async () => {
    mock.timers.reset();
    for (const p of allProcs.splice(0).flat()) p.exit(0);
    await flush(20);
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('goes starting → connecting → active, with the documented argv and a cleaned env', async () => {
    const { c, procs, seq, states } = make();
    const started = c.start(TARGET);
    const p = await spawned(procs);
    assert.deepEqual(p.args.slice(0, 3), ['tunnel', '--no-autoupdate', '--config']);
    assert.match(p.args[3] ?? '', /config-[0-9a-f]+\.yml$/);
    // --url is the gate (in open mode too: a dead host must mean a dead origin); the gate sets the origin's Host.
    assert.deepEqual(p.args.slice(4, -1), ['--metrics', '127.0.0.1:0', '--grace-period', '2s', '--output', 'json', '--url']);
    assert.match(p.args.at(-1) ?? '', /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(p.env['TUNNEL_NAME'], undefined);
    assert.equal(p.env['TUNNEL_TOKEN'], undefined);
    assert.equal(p.env['NO_AUTOUPDATE'], undefined);
    assert.equal(p.env['HOME'], '/home/u');
    p.banner();
    await flush();
    assert.equal(c.state.status, 'connecting');
    mock.timers.tick(1500);
    p.register();
    const s = await started;
    assert.equal(s.status, 'active');
    assert.deepEqual(seq(), ['starting', 'starting', 'connecting', 'active']);
    const second = states[1];
    assert.equal(second?.status === 'starting' && second.pid, p.pid);
    const snap = c.snapshot();
    assert.equal(snap.url, 'https://seasonal-example-words-here.trycloudflare.com');
    assert.equal(snap.mcp_url, 'https://seasonal-example-words-here.trycloudflare.com/mcp');
    assert.equal(snap.local_url, 'http://localhost:8002');
    assert.deepEqual(snap.edge_locations, ['lax01']);
    mock.timers.tick(61_000);
    assert.equal(c.snapshot().uptime_seconds, 61, 'uptime counts from the registration, not the spawn');
  });

  it('passes no --output json to versions before 2025.6.1; no host header (the gate sets it); the protocol', async () => {
    const { c, procs } = make({ findCloudflared: () => Promise.resolve({ path: '/x/cloudflared', version: '2023.7.3' }), hostHeader: 'public', protocol: 'http2' });
    void c.start(TARGET);
    const p = await spawned(procs);
    assert.ok(!p.args.includes('--output'));
    assert.ok(!p.args.includes('--http-host-header'));
    assert.deepEqual(p.args.slice(-4, -1), ['--protocol', 'http2', '--url']);
    assert.match(p.args.at(-1) ?? '', /^http:\/\/127\.0\.0\.1:\d+$/);
    p.exit(1);
    await flush();
  });

  it('stop: SIGTERM, stopping, then stopped when the process exits; idempotent', async () => {
    const { c, procs, seq } = make({}, (p) => (p.onSignal = () => setTimeout(() => p.exit(0), 300)));
    const started = c.start(TARGET);
    const p = await spawned(procs);
    p.banner();
    p.register();
    await started;
    const s1 = c.stop();
    const s2 = c.stop();
    assert.equal(s1, s2, 'stop returns the in-flight promise');
    assert.deepEqual(p.signals, ['SIGTERM']);
    assert.equal(c.state.status, 'stopping');
    mock.timers.tick(300);
    await s1;
    assert.deepEqual(seq().slice(-2), ['stopping', 'stopped']);
    await c.stop();
    assert.equal(c.state.status, 'stopped');
  });

  it('SIGKILL one second after the grace period when cloudflared ignores SIGTERM', async () => {
    const { c, procs } = make({}, (p) => (p.onSignal = (sig) => sig === 'SIGKILL' && p.exit(null, 'SIGKILL')));
    const started = c.start(TARGET);
    const p = await spawned(procs);
    p.banner();
    p.register();
    await started;
    const stopped = c.stop();
    await flush();
    mock.timers.tick(2999);
    assert.deepEqual(p.signals, ['SIGTERM']);
    mock.timers.tick(1);
    assert.deepEqual(p.signals, ['SIGTERM', 'SIGKILL']);
    await stopped;
    assert.equal(c.state.status, 'stopped');
  });

  it('no URL before the timeout: kills and fails with a timeout cause', async () => {
    const { c, procs, seq } = make();
    const started = c.start(TARGET);
    const p = await spawned(procs);
    p.log('Requesting new quick Tunnel on trycloudflare.com...');
    await flush();
    mock.timers.tick(10_000);
    const s = await started;
    assert.equal(s.status, 'failed');
    assert.equal(s.status === 'failed' && s.error.code, 'timeout');
    assert.match(s.status === 'failed' ? s.error.message : '', /no tunnel URL within 10 s/);
    assert.deepEqual(p.signals, ['SIGTERM']);
    assert.deepEqual(seq(), ['starting', 'starting', 'failed']);
  });

  it('URL but no edge connection by the timeout: resolves as connecting and keeps the process', async () => {
    const { c, procs } = make();
    const started = c.start(TARGET);
    const p = await spawned(procs);
    p.banner();
    await flush();
    mock.timers.tick(10_000);
    const s = await started;
    assert.equal(s.status, 'connecting');
    assert.deepEqual(p.signals, []);
    p.register();
    await flush();
    assert.equal(c.state.status, 'active');
    await Promise.all([c.stop(), flush()]);
  });

  it('exit before the URL: failed with the bare fatal line classified (no network)', async () => {
    const { c, procs } = make();
    const started = c.start(TARGET);
    const p = await spawned(procs);
    p.log('Requesting new quick Tunnel on trycloudflare.com...');
    p.raw('failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel": dial tcp: lookup api.trycloudflare.com on 127.0.0.53:53: no such host\n');
    p.exit(1);
    const s = await started;
    assert.equal(s.status, 'failed');
    if (s.status !== 'failed') return;
    assert.equal(s.error.code, 'no-network');
    assert.equal(s.error.exitCode, 1);
    assert.match(s.error.message, /could not reach Cloudflare's quick-tunnel service/);
    assert.ok(s.error.lastLines.some((l) => l.startsWith('failed to request quick Tunnel')));
    assert.equal(c.snapshot().url, null, 'an error line holding api.trycloudflare.com is never the URL');
    assert.equal(c.lastError?.code, 'no-network');
  });

  it('"Incorrect Usage" on stdout with exit 0 is a failure, not a stop', async () => {
    const { c, procs } = make();
    const started = c.start(TARGET);
    const p = await spawned(procs);
    p.raw('Incorrect Usage. flag provided but not defined: -output\n\nNAME:\n   cloudflared tunnel\n', 'stdout');
    p.exit(0);
    const s = await started;
    assert.equal(s.status === 'failed' && s.error.code, 'incorrect-usage');
  });

  it('exit 11 after an auto-update is reported as such', async () => {
    const { c, procs } = make();
    const started = c.start(TARGET);
    const p = await spawned(procs);
    p.banner();
    p.exit(11);
    const s = await started;
    assert.equal(s.status === 'failed' && s.error.code, 'updated');
  });

  it('spawn error (ENOENT) without a pid: failed not-found, start settles', async () => {
    const { c } = make({
      spawn: () => {
        const { spawn } = fakeSpawner();
        const p = spawn('/nope', [], { env: {} }) as FakeProcess;
        Object.defineProperty(p, 'pid', { value: undefined });
        setImmediate(() => p.emit('error', Object.assign(new Error('spawn /nope ENOENT'), { code: 'ENOENT' })));
        return p;
      },
    });
    const s = await c.start(TARGET);
    assert.equal(s.status === 'failed' && s.error.code, 'not-found');
    assert.match(s.status === 'failed' ? s.error.message : '', /Install it/);
  });

  it('cloudflared not found: the finder’s message names the fix', async () => {
    const { c, seq } = make({ findCloudflared: () => Promise.reject(new CloudflaredError('not-found', 'cloudflared is not installed. Install it or set X.')) });
    const s = await c.start(TARGET);
    assert.equal(s.status === 'failed' && s.error.message, 'cloudflared is not installed. Install it or set X.');
    assert.deepEqual(seq(), ['starting', 'failed']);
  });

  it('start is idempotent for the same target; another target is another share on the same process; the other mode is refused', async () => {
    const { c, procs } = make();
    const a = c.start(TARGET);
    const b = c.start({ ...TARGET });
    assert.equal(a, b);
    await assert.rejects(c.start({ ...TARGET, access: 'secret' }), TunnelBusyError);
    const other = c.start({ ...TARGET, port: 9000 });
    const p = await spawned(procs);
    p.banner();
    p.register();
    await a;
    assert.equal((await other).status, 'active', 'the second share settles with the tunnel');
    assert.equal((await c.start(TARGET)).status, 'active');
    assert.equal(procs.length, 1, 'never two processes');
    assert.deepEqual(c.listShares().map((x) => x.local_url), ['http://localhost:8002', 'http://localhost:9000']);
    await Promise.all([c.stop(), flush()]);
  });

  it('stop while starting (silent death on SIGTERM before the banner): stopped, and start settles', async () => {
    const { c, procs, seq } = make();
    const started = c.start(TARGET);
    const p = await spawned(procs);
    p.log('Requesting new quick Tunnel on trycloudflare.com...');
    await flush();
    await c.stop();
    assert.equal((await started).status, 'stopped');
    assert.deepEqual(seq(), ['starting', 'starting', 'stopping', 'stopped']);
  });

  it('stop before the binary is found: no process is ever spawned', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { c, procs } = make({ findCloudflared: () => gate.then(() => ({ path: '/x', version: '2026.8.2' })) });
    const started = c.start(TARGET);
    const stopped = c.stop();
    release();
    await stopped;
    assert.equal((await started).status, 'stopped');
    assert.equal(procs.length, 0);
  });

  it('start while stopping waits for the exit, then starts again', async () => {
    const { c, procs, seq } = make({}, (p) => (p.onSignal = () => setTimeout(() => p.exit(0), 100)));
    const s1 = c.start(TARGET);
    const p1 = await spawned(procs);
    p1.banner();
    p1.register();
    await s1;
    const stopping = c.stop();
    const s2 = c.start(TARGET);
    mock.timers.tick(100);
    await stopping;
    const p2 = await spawned(procs, 2);
    assert.ok(p1.exited);
    p2.banner('https://other-words-here-now.trycloudflare.com');
    p2.register();
    const s = await s2;
    assert.equal(s.status, 'active');
    assert.deepEqual(seq(), ['starting', 'starting', 'connecting', 'active', 'stopping', 'stopped', 'starting', 'starting', 'connecting', 'active']);
    await Promise.all([c.stop(), (async () => { await flush(); mock.timers.tick(100); })()]);
  });

  it('edge lost → reconnecting → active again, uptime kept from the first registration', async () => {
    const { c, procs, seq } = make();
    const started = c.start(TARGET);
    const p = await spawned(procs);
    p.banner();
    p.register(0, 'lax01');
    await started;
    const connectedAt = c.snapshot().connected_at;
    mock.timers.tick(5000);
    p.log('Lost connection with the edge connIndex=0');
    p.log('Retrying connection in up to 1s connIndex=0 event=0 ip=198.41.200.13');
    await flush();
    assert.equal(c.state.status, 'reconnecting');
    p.register(0, 'sjc05');
    await flush();
    assert.equal(c.state.status, 'active');
    assert.equal(c.snapshot().connected_at, connectedAt);
    assert.deepEqual(c.snapshot().edge_locations, ['sjc05']);
    assert.equal(c.snapshot().uptime_seconds, 5);
    assert.deepEqual(seq(), ['starting', 'starting', 'connecting', 'active', 'reconnecting', 'active']);
    await Promise.all([c.stop(), flush()]);
  });

  it('an unexpected exit while active: `restarting` (the default policy restarts it) with the exit code and last lines', async () => {
    const { c, procs } = make();
    const started = c.start(TARGET);
    const p = await spawned(procs);
    p.banner();
    p.register();
    await started;
    p.log('Serve tunnel error error="connection reset"', 'ERR');
    p.exit(1);
    await flush();
    const s = c.state;
    assert.equal(s.status, 'restarting');
    if (s.status !== 'restarting') return;
    assert.equal(s.error.exitCode, 1);
    assert.match(s.error.message, /while the tunnel was live/);
    assert.equal(c.snapshot().last_error?.message, s.error.message);
    await c.stop();
    assert.equal(c.state.status, 'stopped', 'a stop cancels the restart');
  });

  it('a dial error that a registration followed is not the cause: dial error → registered → unrelated ERR → exit 1 is "exited", not "use HTTP/2"', async () => {
    const { c, procs } = make({ autoRestart: false });
    const started = c.start(TARGET);
    const p = await spawned(procs);
    p.banner();
    // QUIC fails once, then cloudflared falls back and registers: the network is fine.
    p.log('Failed to dial a quic connection error="failed to dial to edge with quic: timeout: no recent network activity" connIndex=0 event=0 ip=198.41.192.7', 'ERR');
    p.log('Retrying connection in up to 2s connIndex=0 event=0 ip=198.41.192.7', 'INF');
    p.register();
    await started;
    p.log('Serve tunnel error error="control stream encountered a failure while serving" connIndex=0', 'ERR');
    p.exit(1);
    await flush();
    const s = c.state;
    assert.equal(s.status, 'failed');
    if (s.status !== 'failed') return;
    assert.equal(s.error.code, 'exited', s.error.message);
    assert.doesNotMatch(s.error.message, /http2|UDP port 7844/, 'no advice to switch protocols for a tunnel that connected');
    assert.match(s.error.message, /while the tunnel was live/);
  });

  it('fires only on a real change', async () => {
    const { c, procs, states } = make();
    const started = c.start(TARGET);
    const p = await spawned(procs);
    p.banner();
    p.register();
    p.register();
    await started;
    await flush();
    assert.equal(states.filter((s) => s.status === 'active').length, 1);
    await Promise.all([c.stop(), flush()]);
  });

  describe('automatic restart', () => {
    async function liveThenCrash(c: TunnelController, procs: FakeProcess[], n: number, url: string) {
      const p = await spawned(procs, n);
      p.banner(url);
      p.register();
      await flush();
      assert.equal(c.state.status, 'active');
      p.log('Serve tunnel error error="connection reset"', 'ERR');
      p.exit(1);
      await flush();
      return p;
    }

    it('an unexpected exit while live: `restarting` with the cause, then a restart after the backoff; the new URL is announced', async () => {
      const { c, procs, seq } = make({ autoRestart: { maxRestarts: 3, windowMs: 300_000, baseDelayMs: 1000, maxDelayMs: 30_000 } });
      const restarts: { previousUrl?: string | undefined; url?: string | undefined; attempt: number }[] = [];
      c.onDidRestart((e) => restarts.push(e));
      void c.start(TARGET);
      await liveThenCrash(c, procs, 1, 'https://first-words-of-url.trycloudflare.com');
      const restarting = c.state;
      assert.equal(restarting.status, 'restarting');
      assert.equal(restarting.status === 'restarting' && restarting.restartAttempt, 1);
      assert.match(restarting.status === 'restarting' ? restarting.error.message : '', /exited/);
      assert.ok(c.snapshot().restart_at);
      mock.timers.tick(999);
      await flush();
      assert.equal(procs.length, 1, 'not before the backoff');
      mock.timers.tick(1);
      const p2 = await spawned(procs, 2);
      p2.banner('https://second-words-of-url.trycloudflare.com');
      p2.register();
      await flush();
      assert.equal(c.state.status, 'active');
      assert.deepEqual(restarts.map((r) => [r.attempt, r.previousUrl, r.url]), [[1, 'https://first-words-of-url.trycloudflare.com', 'https://second-words-of-url.trycloudflare.com']]);
      assert.deepEqual(seq().slice(4), ['reconnecting', 'restarting', 'starting', 'starting', 'connecting', 'active']);
      await Promise.all([c.stop(), flush()]);
    });

    it('backoff doubles, and it gives up after maxRestarts within the window', async () => {
      const { c, procs } = make({ autoRestart: { maxRestarts: 2, windowMs: 300_000, baseDelayMs: 1000, maxDelayMs: 30_000 } });
      void c.start(TARGET);
      await liveThenCrash(c, procs, 1, 'https://a-a-a-a.trycloudflare.com');
      mock.timers.tick(1000);
      await liveThenCrash(c, procs, 2, 'https://b-b-b-b.trycloudflare.com');
      const s = c.state;
      assert.equal(s.status === 'restarting' && s.restartAttempt, 2);
      mock.timers.tick(1999);
      await flush();
      assert.equal(procs.length, 2);
      mock.timers.tick(1);
      await liveThenCrash(c, procs, 3, 'https://c-c-c-c.trycloudflare.com');
      const last = c.state;
      assert.equal(last.status, 'failed');
      assert.match(last.status === 'failed' ? last.error.message : '', /Gave up after 2 automatic restarts/);
      mock.timers.tick(60_000);
      await flush();
      assert.equal(procs.length, 3, 'no further restart');
    });

    it('stop during the backoff cancels the restart', async () => {
      const { c, procs } = make();
      void c.start(TARGET);
      await liveThenCrash(c, procs, 1, 'https://a-a-a-a.trycloudflare.com');
      await c.stop();
      assert.equal(c.state.status, 'stopped');
      mock.timers.tick(60_000);
      await flush();
      assert.equal(procs.length, 1);
    });

    it('a failed start does not restart (it would only fail again), nor does autoRestart: false', async () => {
      const { c, procs } = make();
      const started = c.start(TARGET);
      const p = await spawned(procs);
      p.raw('failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel": dial tcp: no such host\n');
      p.exit(1);
      await started;
      mock.timers.tick(60_000);
      await flush();
      assert.equal(procs.length, 1);
      const off = make({ autoRestart: false });
      void off.c.start(TARGET);
      await liveThenCrash(off.c, off.procs, 1, 'https://a-a-a-a.trycloudflare.com');
      mock.timers.tick(60_000);
      await flush();
      assert.equal(off.procs.length, 1);
      assert.equal(off.c.state.status, 'failed');
    });
  });
});

// file-timeout: 150 s (fault injection against real processes, ~32 s alone; test/support/runUnit.ts)
/**
 * Fault injection against the fake cloudflared executable (real processes, real signals, real
 * sockets): flap storms, misbehaving metrics servers, log floods and garbage, a cloudflared that
 * hangs on SIGTERM or ignores it (also through the CLI), crashes with automatic restarts.
 * Every test checks the state sequence and the messages, and that no cloudflared PID remains.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { findCloudflared } from '../../src/core/cloudflared/locate';
import { TunnelController, type TunnelControllerOptions, type TunnelLogEntry, type TunnelRestartEvent } from '../../src/core/tunnelController';
import type { TunnelState, TunnelStatus } from '../../src/core/model/tunnelState';
import { createTunnelMcpServer } from '../../src/mcp/tunnelMcpServer';
import { get, startStrictOrigin, type Origin } from '../support/origins';
import { FAKE_CLOUDFLARED, REPO, isAlive, publicPath, readFakeState, waitFor, waitGone } from '../support/proc';
import { realTracker, sleep, type SpawnTracker } from '../support/race';

const MB = 1024 * 1024;
let origin: Origin;
let work: string;

interface Made {
  c: TunnelController;
  tracker: SpawnTracker;
  states: TunnelState[];
  seq: () => TunnelStatus[];
  logs: TunnelLogEntry[];
  /** cloudflared lines seen (counted, not kept: floods are large). */
  lines: () => number;
}
const made: Made[] = [];

function make(scenario: string, env: Record<string, string> = {}, opts: Partial<TunnelControllerOptions> = {}, keepCloudflaredLines = false): Made {
  const home = path.join(work, `home-${made.length}`);
  mkdirSync(home, { recursive: true });
  const tracker = realTracker();
  const c = new TunnelController({
    findCloudflared: () => findCloudflared({ explicitPath: FAKE_CLOUDFLARED }),
    stateDir: path.join(work, 'state'),
    spawn: tracker.spawn,
    startTimeoutMs: 8000,
    stopGraceMs: 1000,
    metricsIntervalMs: 100,
    autoRestart: false,
    baseEnv: { ...process.env, HOME: home, FAKE_CLOUDFLARED_SCENARIO: scenario, FAKE_CLOUDFLARED_STATE_DIR: work, ...env },
    ...opts,
  });
  // These suites read metrics all along, as a visible view does.
  c.watchMetrics();
  const states: TunnelState[] = [];
  const logs: TunnelLogEntry[] = [];
  let lines = 0;
  c.onDidChangeState((s) => states.push(s));
  c.onDidLog((e) => {
    if (e.source === 'cloudflared') {
      lines++;
      if (!keepCloudflaredLines) return;
    }
    logs.push(e);
  });
  const m: Made = { c, tracker, states, seq: () => states.map((s) => s.status), logs, lines: () => lines };
  made.push(m);
  return m;
}

const target = () => ({ host: 'localhost', port: origin.port, path: '/mcp' });

function rss(): number {
  return process.memoryUsage().rss;
}

/** Samples RSS and open TCP sockets every 50 ms until stopped; returns the peaks. */
function sampler(): { stop: () => { rssPeak: number; socketsPeak: number } } {
  let rssPeak = rss();
  let socketsPeak = 0;
  const sample = () => {
    rssPeak = Math.max(rssPeak, rss());
    socketsPeak = Math.max(socketsPeak, process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length);
  };
  const t = setInterval(sample, 50);
  return {
    stop: () => {
      clearInterval(t);
      sample();
      return { rssPeak, socketsPeak };
    },
  };
}

async function publicGet(m: Made): Promise<number> {
  const fake = await waitFor(() => readFakeState(work, m.c.snapshot().pid!), 3000, 'fake state');
  return (await get(fake.publicPort, publicPath(m.c.snapshot().mcp_url))).status;
}

describe('fault injection (fake cloudflared, real processes)', { concurrency: false }, () => {
  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'mcpt-faults-'));
    origin = await startStrictOrigin();
  });
  afterEach(async () => {
    const all = made.splice(0);
    await Promise.all(all.map((m) => m.c.shutdown(3000)));
    for (const m of all) {
      m.c.dispose();
      for (const pid of m.tracker.pids) assert.ok(await waitGone(pid, 3000), `cloudflared PID ${pid} is gone`);
      assert.deepEqual(m.tracker.overlaps, [], 'never two cloudflared at once');
    }
  });
  after(async () => {
    await origin.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('flap-storm: hundreds of drops per second → only active ⇄ reconnecting, uptime kept, ends active', async () => {
    const m = make('flap-storm', { FAKE_CLOUDFLARED_STORM_MS: '1500', FAKE_CLOUDFLARED_STORM_TICK_MS: '10', FAKE_CLOUDFLARED_STORM_BURST: '5' });
    const s = await m.c.start(target());
    assert.equal(s.status, 'active');
    const connectedAt = m.c.snapshot().connected_at;
    const rss0 = rss();
    const probe = sampler();
    const t0 = Date.now();
    // The storm lasts 1.5 s; it is over once no state change came for 300 ms.
    let last = m.states.length;
    let quietSince = Date.now();
    while (Date.now() - quietSince < 300) {
      await sleep(50);
      if (m.states.length !== last) {
        last = m.states.length;
        quietSince = Date.now();
      }
      assert.ok(Date.now() - t0 < 10_000, 'the storm ends');
    }
    const { rssPeak } = probe.stop();
    const after = m.seq().slice(m.seq().indexOf('active'));
    const flaps = after.filter((x) => x === 'reconnecting').length;
    console.log(`flap-storm: ${flaps} reconnects in ~1.5 s, ${m.states.length} state changes, ${m.lines()} lines, RSS +${((rssPeak - rss0) / MB).toFixed(1)} MB`);
    assert.ok(flaps >= 100, `a storm: ${flaps} reconnects`);
    assert.deepEqual([...new Set(after)].sort(), ['active', 'reconnecting'], 'nothing but active and reconnecting during the storm');
    assert.equal(m.c.state.status, 'active', 'registered again when the storm ends');
    assert.equal(m.c.snapshot().connected_at, connectedAt, 'uptime counts from the first registration');
    assert.ok(rssPeak - rss0 < 50 * MB, `RSS growth ${((rssPeak - rss0) / MB).toFixed(1)} MB`);
    assert.equal(await publicGet(m), 200, 'the tunnel still carries traffic');
    assert.equal(m.tracker.spawned, 1);
    await m.c.stop();
    assert.deepEqual(m.seq().slice(-2), ['stopping', 'stopped']);
  });

  const metricsFaults: [string, RegExp][] = [
    ['hang', /Metrics read failed: GET \/(ready|metrics) timed out after 2000 ms/],
    ['garbage', /Metrics read failed: GET \/(ready: not JSON|metrics: no cloudflared metrics)/],
    ['500', /Metrics read failed: GET \/(ready|metrics): HTTP 500/],
    ['huge', /Metrics read failed: GET \/(ready|metrics): response larger than 1048576 bytes/],
  ];
  for (const [fault, debugLine] of metricsFaults) {
    it(`metrics server fault "${fault}": the tunnel stays active, metrics stay undefined, a debug line, bounded sockets`, async () => {
      const m = make('ok', { FAKE_CLOUDFLARED_METRICS_FAULT: fault });
      const probe = sampler();
      const t0 = Date.now();
      const s = await m.c.start(target());
      assert.equal(s.status, 'active');
      const activeAt = m.states.length;
      await waitFor(() => m.logs.some((e) => e.level === 'debug' && debugLine.test(e.message)), 6000, `a debug line matching ${debugLine}`);
      await sleep(fault === 'hang' ? 2500 : 1000); // several more polls (or one more timed-out poll)
      const { socketsPeak } = probe.stop();
      const failures = m.logs.filter((e) => /Metrics read failed/.test(e.message));
      const elapsed = Date.now() - t0;
      console.log(`metrics ${fault}: ${failures.length} failed polls in ${elapsed} ms, TCP sockets peak ${socketsPeak}; e.g. "${failures[0]?.message}"`);
      assert.ok(failures.every((e) => e.level === 'debug'), 'metrics failures are debug lines, not warnings');
      assert.ok(failures.length <= elapsed / 100 + 2, 'at most one failed poll per interval (polls never overlap)');
      assert.ok(m.logs.some((e) => e.level === 'debug' && /Could not cross-check the URL with \/quicktunnel/.test(e.message)), 'the /quicktunnel cross-check failure is a debug line too');
      assert.equal(m.c.state.status, 'active');
      assert.equal(m.states.length, activeAt, 'no state change caused by the metrics server');
      assert.equal(m.c.metrics, undefined);
      assert.ok(socketsPeak <= 12, `open TCP sockets stay bounded (${socketsPeak})`);
      assert.equal(await publicGet(m), 200, 'the tunnel works');
      await m.c.stop();
      assert.equal(m.c.state.status, 'stopped');
    });
  }

  it('metrics server fault after good reads: the last good metrics are kept', async () => {
    const m = make('ok', { FAKE_CLOUDFLARED_METRICS_FAULT: '500', FAKE_CLOUDFLARED_METRICS_FAULT_AFTER: '2' });
    assert.equal((await m.c.start(target())).status, 'active');
    await waitFor(() => m.c.metrics, 3000, 'good metrics');
    await waitFor(() => m.logs.some((e) => /Metrics read failed: GET \/(ready|metrics): HTTP 500/.test(e.message)), 3000, 'the fault');
    const goodNow = m.c.metrics;
    await sleep(500);
    assert.ok(goodNow, 'metrics kept after the fault began');
    assert.equal(m.c.metrics, goodNow, 'the last good metrics stay while polls fail');
    const readAt = goodNow.readAt;
    await sleep(300);
    assert.equal(m.c.metrics?.readAt, readAt, 'no newer read replaced them');
    assert.equal(m.c.state.status, 'active');
    await m.c.stop();
    assert.equal(m.c.metrics, undefined, 'cleared when stopped');
  });

  it('flood: 5 000 lines/s for 3 s (junk, invalid JSON, binary, decoy URLs, 256 KiB lines) → URL and state right, RSS bounded', async () => {
    const m = make('flood', { FAKE_CLOUDFLARED_FLOOD_MS: '3000', FAKE_CLOUDFLARED_FLOOD_RATE: '5000' });
    const rss0 = rss();
    const probe = sampler();
    const s = await m.c.start(target());
    assert.equal(s.status, 'active');
    const url = m.c.snapshot().url;
    const linesAtActive = m.lines();
    // The flood lasts 3 s after the registration; wait until the lines stop coming.
    let last = -1;
    const t0 = Date.now();
    while (m.lines() !== last) {
      last = m.lines();
      await sleep(300);
      assert.ok(Date.now() - t0 < 15_000, 'the flood ends');
    }
    const { rssPeak } = probe.stop();
    const flood = m.lines() - linesAtActive;
    const fake = readFakeState(work, m.c.snapshot().pid!);
    console.log(`flood: ${flood} lines in ${Date.now() - t0 - 300} ms (${Math.round(flood / ((Date.now() - t0 - 300) / 1000))}/s), RSS +${((rssPeak - rss0) / MB).toFixed(1)} MB peak`);
    // The fake writes 15 000 lines however busy the machine is (its bursts catch up with the clock).
    assert.ok(flood >= 14_000, `the flood's 15 000 lines reached the log (${flood})`);
    assert.equal(m.c.state.status, 'active');
    assert.equal(m.c.snapshot().url, url, 'the decoy URLs in the flood did not replace the URL');
    assert.equal(url, fake?.url);
    assert.deepEqual(m.seq(), ['starting', 'starting', 'connecting', 'connecting', 'active'], 'the flood caused no state change');
    assert.ok(rssPeak - rss0 < 50 * MB, `RSS growth ${((rssPeak - rss0) / MB).toFixed(1)} MB`);
    assert.equal(await publicGet(m), 200);
    await m.c.stop();
    assert.equal(m.c.state.status, 'stopped');
  });

  it('garbage in JSON mode (binary noise, a 10 MB line, invalid JSON): active with the right URL, RSS bounded', async () => {
    const m = make('garbage', { FAKE_CLOUDFLARED_GARBAGE_BYTES: String(10 * MB) }, {}, true);
    const rss0 = rss();
    const probe = sampler();
    const s = await m.c.start(target());
    const { rssPeak } = probe.stop();
    assert.equal(s.status, 'active');
    const fake = await waitFor(() => readFakeState(work, m.c.snapshot().pid!), 3000, 'fake state');
    assert.equal(m.c.snapshot().url, fake.url);
    assert.equal(m.tracker.spawned, 1);
    const longest = Math.max(...m.logs.filter((e) => e.source === 'cloudflared').map((e) => e.message.length));
    console.log(`garbage: longest logged line ${longest} chars, RSS +${((rssPeak - rss0) / MB).toFixed(1)} MB peak`);
    assert.ok(longest <= 17 * 1024, 'a 10 MB line is cut to the parser cap before it reaches the log');
    assert.ok(rssPeak - rss0 < 50 * MB, `RSS growth ${((rssPeak - rss0) / MB).toFixed(1)} MB`);
    await m.c.stop();
  });

  it('hang-on-sigterm: stop() SIGKILLs it one second after the grace period, and says so', async () => {
    const m = make('hang-on-sigterm', {}, { stopGraceMs: 500 });
    assert.equal((await m.c.start(target())).status, 'active');
    const pid = m.c.snapshot().pid!;
    const t0 = Date.now();
    await m.c.stop();
    const took = Date.now() - t0;
    console.log(`hang-on-sigterm: stop took ${took} ms (grace 500 ms + 1 s)`);
    assert.ok(took >= 1400, `waited for the grace period (${took} ms)`);
    assert.ok(took < 1500 + 1000, `killed within grace + 1 s + margin (${took} ms)`);
    assert.equal(m.c.state.status, 'stopped');
    assert.deepEqual(m.seq().slice(m.seq().indexOf('active')), ['active', 'stopping', 'stopped']);
    assert.ok(m.logs.some((e) => e.level === 'warn' && /did not exit 1500 ms after SIGTERM; killing it/.test(e.message)));
    assert.ok(m.logs.some((e) => /cloudflared exited \(signal SIGKILL\)/.test(e.message)));
    assert.ok(!isAlive(pid));
  });

  it('hang-on-sigterm: shutdown(deadline) ends it by the deadline even with a long grace period', async () => {
    const m = make('hang-on-sigterm', {}, { stopGraceMs: 10_000 });
    assert.equal((await m.c.start(target())).status, 'active');
    const t0 = Date.now();
    await m.c.shutdown(1000);
    const took = Date.now() - t0;
    console.log(`hang-on-sigterm: shutdown(1000) took ${took} ms`);
    assert.ok(took < 1000 + 500, `within the deadline (${took} ms)`);
    assert.equal(m.c.state.status, 'stopped');
  });

  it('crash-after: failed → automatic restart with a new URL (onDidRestart), then it gives up after maxRestarts', async () => {
    const m = make('crash-after', { FAKE_CLOUDFLARED_CRASH_AFTER_MS: '400' }, { autoRestart: { maxRestarts: 2, windowMs: 60_000, baseDelayMs: 100, maxDelayMs: 1000 } });
    const restarts: TunnelRestartEvent[] = [];
    m.c.onDidRestart((e) => restarts.push(e));
    assert.equal((await m.c.start(target())).status, 'active');
    const first = m.c.snapshot().url;
    const s = await waitFor(() => (m.c.state.status === 'failed' ? m.c.state : undefined), 10_000, 'giving up');
    const compact = m.seq().filter((x, i, a) => x !== a[i - 1]);
    console.log(`crash-after: ${compact.join(' → ')}; URLs ${[first, ...restarts.map((r) => r.url)].join(', ')}`);
    assert.equal(restarts.length, 2);
    assert.deepEqual(restarts.map((r) => r.attempt), [1, 2]);
    assert.equal(restarts[0]?.previousUrl, first);
    const firstShare = m.states.find((x): x is TunnelState & { status: 'active' } => x.status === 'active')?.sharePath;
    assert.ok(firstShare, 'secret mode (the default) has a share path');
    for (const r of restarts) {
      assert.equal(r.state.status, 'active');
      assert.ok(r.url && r.url !== r.previousUrl, `a new URL (${r.previousUrl} → ${r.url})`);
      // The clients' secret survives the restart (with a named tunnel's fixed hostname the whole MCP URL does).
      assert.equal(r.state.status === 'active' && r.state.sharePath, firstShare, 'the share secret is carried over');
    }
    assert.equal(restarts[1]?.previousUrl, restarts[0]?.url);
    // Each unexpected exit is its own state, `restarting`, until the policy gives up: then `failed`.
    assert.deepEqual(m.states.filter((x) => x.status === 'restarting' || x.status === 'failed').map((x) => (x.status === 'restarting' ? `restarting ${x.restartAttempt}` : x.status)), ['restarting 1', 'restarting 2', 'failed']);
    assert.match(s.error.message, /while the tunnel was live/);
    assert.match(s.error.message, /Gave up after 2 automatic restarts/);
    assert.ok(m.logs.some((e) => /Restarting the tunnel in 0\.1 s \(attempt 1 of 2\)/.test(e.message)));
    assert.ok(m.logs.some((e) => /Restarting the tunnel in 0\.2 s \(attempt 2 of 2\)/.test(e.message)));
    assert.ok(m.logs.some((e) => e.level === 'error' && /Not restarting again/.test(e.message)));
    assert.equal(m.tracker.spawned, 3);
    assert.equal(m.tracker.alive.size, 0);
  });

  it('crash-after, then stop_tunnel (MCP) during the restart backoff: the restart is cancelled, stopped', async () => {
    const m = make('crash-after', { FAKE_CLOUDFLARED_CRASH_AFTER_MS: '300' }, { autoRestart: { maxRestarts: 3, windowMs: 60_000, baseDelayMs: 1500, maxDelayMs: 5000 } });
    const server = createTunnelMcpServer(m.c, { version: 'faults' });
    const client = new Client({ name: 'faults', version: '1.0.0' });
    const [cs, ss] = InMemoryTransport.createLinkedPair();
    await server.connect(ss);
    await client.connect(cs);
    try {
      assert.equal((await m.c.start(target())).status, 'active');
      await waitFor(() => (m.c.state.status === 'restarting' ? true : undefined), 5000, 'restart scheduled');
      const r = (await client.callTool({ name: 'stop_tunnel', arguments: {} })) as CallToolResult;
      assert.equal(r.structuredContent?.['status'], 'stopped');
      assert.match(String(r.structuredContent?.['message']), /automatic restart .* cancelled/);
      await sleep(2000);
      assert.equal(m.c.state.status, 'stopped');
      assert.equal(m.tracker.spawned, 1, 'no restart after the agent stopped it');
    } finally {
      await client.close();
      await server.close();
    }
  });
});

describe('CLI shutdown with a cloudflared that ignores SIGTERM', () => {
  const CLI = path.join(REPO, 'dist', 'cli.js');
  let cliWork: string;
  let cliOrigin: Origin;
  before(async () => {
    if (!existsSync(CLI)) {
      const built = spawnSync(process.execPath, [path.join(REPO, 'esbuild.mjs')], { cwd: REPO, encoding: 'utf8' });
      assert.equal(built.status, 0, built.stderr);
    }
    cliWork = mkdtempSync(path.join(tmpdir(), 'mcpt-faults-cli-'));
    cliOrigin = await startStrictOrigin();
  });
  after(async () => {
    await cliOrigin.close();
    rmSync(cliWork, { recursive: true, force: true });
  });

  it('SIGINT to the CLI ends cloudflared (SIGKILL) within the CLI deadline; the CLI exits 0', async () => {
    const child = spawn(process.execPath, [CLI, 'start', '--port', String(cliOrigin.port), '--cloudflared', FAKE_CLOUDFLARED], {
      env: { ...process.env, MCP_TUNNEL_STATE_DIR: path.join(cliWork, 'state'), FAKE_CLOUDFLARED_STATE_DIR: cliWork, HOME: cliWork, FAKE_CLOUDFLARED_SCENARIO: 'ignore-sigterm' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exit = new Promise<{ code: number | null; at: number }>((r) => child.on('exit', (code) => r({ code, at: Date.now() })));
    let pid = 0;
    try {
      await waitFor(() => (/Public URL/.test(out) ? true : undefined), 10_000, 'the URL line');
      pid = Number(/PID (\d+)/.exec(out)?.[1]);
      assert.ok(pid > 0 && isAlive(pid));
      const t0 = Date.now();
      child.kill('SIGINT');
      const { code, at } = await exit;
      const took = at - t0;
      console.log(`CLI + ignore-sigterm: exited ${code} ${took} ms after SIGINT (deadline 6000 ms)`);
      assert.equal(code, 0, err);
      assert.ok(took < 6000 + 1500, `the CLI ended within its deadline (${took} ms)`);
      assert.ok(took >= 4000, `cloudflared really ignored SIGTERM (${took} ms)`);
      assert.match(out, /Stopping…[\s\S]*Stopped\./);
      assert.ok(await waitGone(pid, 1000), 'cloudflared is gone');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      if (pid && isAlive(pid)) process.kill(pid, 'SIGKILL');
    }
  });
});

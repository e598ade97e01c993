// file-timeout: 300 s (500 start/stop cycles of real processes, ~85 s alone; test/support/runUnit.ts)
/**
 * Leak checks, with the figures printed:
 *  - LEAK_CYCLES (default 500) start/stop cycles against the fake cloudflared: 0 leaked child
 *    processes, file descriptors (/proc/self/fd), active handles/timers, controller listeners.
 *  - SESSION_COUNT (default 2 000, ~5 s; 10 000 take ~20 s) MCP sessions opened and abandoned
 *    against the HTTP host (every fourth one subscribed to a resource): live sessions stay at the
 *    cap, memory and controller listeners stay bounded.
 *  - Hostile HTTP input (oversized body, malformed JSON, unknown method, wrong session id, junk
 *    JSON-RPC): clear errors, no crash, the host still serves afterwards.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { findCloudflared } from '../../src/core/cloudflared/locate';
import { ObservedTunnelController } from '../support/observedController';
import { DEFAULT_MAX_SESSIONS, startHttpHost, type HttpHost } from '../../src/mcp/httpHost';
import { FakeController } from '../support/fakeController';
import { FAKE_CLOUDFLARED, isAlive, waitGone } from '../support/proc';
import { activeResources, openFds, realTracker, sleep, until } from '../support/race';

const CYCLES = Number(process.env['LEAK_CYCLES'] ?? 500);
const SESSIONS = Number(process.env['SESSION_COUNT'] ?? 2_000);
const MB = 1024 * 1024;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

function table(title: string, rows: [string, string | number, string | number][]): void {
  const w = Math.max(...rows.map((r) => r[0].length));
  const lines = rows.map(([k, a, b]) => `  ${k.padEnd(w)}  ${String(a).padStart(10)}  ${String(b).padStart(10)}`);
  console.log([title, `  ${''.padEnd(w)}  ${'before'.padStart(10)}  ${'after'.padStart(10)}`, ...lines].join('\n'));
}

let work: string;
before(() => {
  work = mkdtempSync(path.join(tmpdir(), 'mcpt-leaks-'));
});
after(() => {
  rmSync(work, { recursive: true, force: true });
});

describe('leaks: start/stop cycles against the fake cloudflared', () => {
  it(`${CYCLES} start/stop cycles (secret mode: an access gate per run) leave 0 processes, fds, handles, timers and listeners`, { timeout: 600_000 }, async () => {
    const home = path.join(work, 'home');
    mkdirSync(home, { recursive: true });
    const tracker = realTracker();
    const c = new ObservedTunnelController({
      findCloudflared: () => findCloudflared({ explicitPath: FAKE_CLOUDFLARED }),
      stateDir: path.join(work, 'state'),
      spawn: tracker.spawn,
      startTimeoutMs: 10_000,
      stopGraceMs: 1000,
      metricsIntervalMs: 50,
      autoRestart: false,
      baseEnv: { ...process.env, HOME: home, FAKE_CLOUDFLARED_SCENARIO: 'ok', FAKE_CLOUDFLARED_URL_DELAY_MS: '0', FAKE_CLOUDFLARED_REGISTER_DELAY_MS: '5', FAKE_CLOUDFLARED_PRECHECKS: 'off' },
    });
    const logSub = c.onDidLog(() => undefined); // a long-lived subscriber, like the log channel

    const cycle = async (i: number): Promise<void> => {
      const states: string[] = [];
      const sub = c.onDidChangeState((s) => states.push(s.status));
      const metricsSub = c.onDidChangeMetrics(() => undefined);
      const s = await c.start({ host: 'localhost', port: 8002, path: '/mcp' });
      assert.equal(s.status, 'active', `cycle ${i}: ${JSON.stringify(s)}`);
      await c.stop();
      assert.equal(c.state.status, 'stopped', `cycle ${i}`);
      sub.dispose();
      metricsSub.dispose();
    };
    /** Lets late stream ends, socket closes and fs callbacks of the last cycle finish. */
    const settle = async (fds: number, res: Record<string, number>): Promise<void> => {
      try {
        await until(() => openFds() <= fds && sameOrFewer(activeResources(), res), 3000, 'fds and handles to settle', 25);
      } catch {
        // measured and reported below
      }
    };

    for (let i = 0; i < 3; i++) await cycle(-1 - i); // warm-up: module loads, the version cache, lazy handles
    await sleep(300);
    const fds0 = openFds();
    const res0 = activeResources();
    const listeners0 = c.listenerCounts;
    const heap0 = heapAfterGc();
    const pidsBefore = tracker.pids.length;

    const t0 = Date.now();
    for (let i = 0; i < CYCLES; i++) await cycle(i);
    const took = Date.now() - t0;

    await settle(fds0, res0);
    const fds1 = openFds();
    const res1 = activeResources();
    const listeners1 = c.listenerCounts;
    const heap1 = heapAfterGc();
    const pids = tracker.pids.slice(pidsBefore);
    const alive: number[] = [];
    for (const pid of pids) if (!(await waitGone(pid, 2000))) alive.push(pid);

    // Always shown (0 when absent): timers, sockets, child processes and pipes are what a cycle creates.
    const kinds = [...new Set(['Timeout', 'TCPSocketWrap', 'ProcessWrap', 'PipeWrap', ...Object.keys(res0), ...Object.keys(res1)])].sort();
    table(`leaks: ${CYCLES} start/stop cycles in ${(took / 1000).toFixed(1)} s (${Math.round(took / CYCLES)} ms per cycle)`, [
      ['open fds (/proc/self/fd)', fds0, fds1],
      ...kinds.map((k): [string, number, number] => [`handle ${k}`, res0[k] ?? 0, res1[k] ?? 0]),
      ['listeners state/metrics/log/restart', Object.values(listeners0).join('/'), Object.values(listeners1).join('/')],
      ['children spawned / still alive', pids.length, alive.length],
      ['heap used after GC (MB)', (heap0 / MB).toFixed(1), (heap1 / MB).toFixed(1)],
    ]);

    assert.equal(pids.length, CYCLES, 'one child per cycle');
    assert.deepEqual(alive, [], 'no child process left');
    assert.deepEqual(tracker.overlaps, []);
    assert.equal(tracker.alive.size, 0);
    assert.ok(fds1 <= fds0, `open fds ${fds0} → ${fds1}`);
    for (const k of kinds) assert.ok((res1[k] ?? 0) <= (res0[k] ?? 0), `active ${k}: ${res0[k] ?? 0} → ${res1[k] ?? 0}`);
    assert.deepEqual(listeners1, listeners0, 'controller listener counts');
    assert.deepEqual(listeners1, { state: 0, metrics: 0, log: 1, restart: 0 });
    assert.ok(heap1 - heap0 < 20 * MB, `heap growth ${((heap1 - heap0) / MB).toFixed(1)} MB`);

    logSub.dispose();
    c.dispose();
    await until(() => Object.values(c.listenerCounts).every((n) => n === 0), 2000, 'dispose to drop every listener');
  });
});

function sameOrFewer(now: Record<string, number>, then: Record<string, number>): boolean {
  return Object.keys(now).every((k) => (now[k] ?? 0) <= (then[k] ?? 0));
}

// ---------------------------------------------------------------------------------------------
// The MCP HTTP host

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function raw(port: number, opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer }): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { Host: `127.0.0.1:${port}`, 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...opts.headers };
    const req = request({ host: '127.0.0.1', port, method: opts.method ?? 'POST', path: '/mcp', headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? undefined : reject(err)));
    req.end(opts.body);
  });
}

/** The JSON-RPC message of a response, whether the SDK answered with JSON or with an SSE event. */
function rpc(r: RawResponse): { id?: unknown; result?: unknown; error?: { code: number; message: string } } {
  const text = String(r.headers['content-type']).includes('text/event-stream')
    ? r.body
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trim())
        .join('')
    : r.body;
  return JSON.parse(text) as { id?: unknown; result?: unknown; error?: { code: number; message: string } };
}

const INIT = (id: number | string = 1) =>
  JSON.stringify({ jsonrpc: '2.0', id, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'leak', version: '1' } } });

describe('leaks: MCP sessions opened and abandoned', () => {
  it(`${SESSIONS} abandoned sessions: live sessions ≤ the cap, bounded memory and listeners`, async () => {
    const controller = new FakeController();
    // The host logs "(N live)" at the moment it registers a session: the exact peak, not a sample.
    let maxLive = 0;
    const host = await startHttpHost(controller, {
      serverOptions: { version: 'leak' },
      log: (_level, msg) => {
        const n = /\((\d+) live\)/.exec(msg)?.[1];
        if (n) maxLive = Math.max(maxLive, Number(n));
      },
    });
    const auth = { Authorization: `Bearer ${host.token}` };
    try {
      let maxListeners = 0;
      const open = async (i: number): Promise<void> => {
        const r = await raw(host.port, { body: INIT(i), headers: auth });
        assert.equal(r.status, 200, r.body);
        const sid = String(r.headers['mcp-session-id']);
        if (i % 4 === 0) {
          // Every fourth session also subscribes (a listener on the controller), then is abandoned too.
          const sub = await raw(host.port, {
            body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'resources/subscribe', params: { uri: 'tunnel://status' } }),
            headers: { ...auth, 'Mcp-Session-Id': sid, 'Mcp-Protocol-Version': '2025-06-18' },
          });
          assert.equal(sub.status, 200, sub.body);
          assert.deepEqual(rpc(sub).result, {});
        }
        maxLive = Math.max(maxLive, host.sessionCount);
        maxListeners = Math.max(maxListeners, controller.listenerCount);
      };
      // Sequential warm-up to the cap, then the rest with a few requests in flight at once.
      for (let i = 0; i < DEFAULT_MAX_SESSIONS; i++) await open(i);
      const fds0 = openFds();
      const heap0 = heapAfterGc();
      const t0 = Date.now();
      let next = DEFAULT_MAX_SESSIONS;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (next < SESSIONS) await open(next++);
        }),
      );
      const took = Date.now() - t0;
      await sleep(100);
      const heap1 = heapAfterGc();
      const fds1 = openFds();
      table(`sessions: ${SESSIONS} opened and abandoned in ${(took / 1000).toFixed(1)} s (cap ${DEFAULT_MAX_SESSIONS}, 8 in flight)`, [
        ['live sessions', DEFAULT_MAX_SESSIONS, host.sessionCount],
        ['max live sessions seen', '', maxLive],
        ['controller listeners (max seen)', '', maxListeners],
        ['heap used after GC (MB)', (heap0 / MB).toFixed(1), (heap1 / MB).toFixed(1)],
        ['open fds', fds0, fds1],
      ]);
      assert.ok(maxLive <= DEFAULT_MAX_SESSIONS, `live sessions peaked at ${maxLive}`);
      assert.equal(host.sessionCount, DEFAULT_MAX_SESSIONS);
      assert.ok(heap1 - heap0 < 30 * MB, `heap growth ${((heap1 - heap0) / MB).toFixed(1)} MB`);
      const perSession = Math.max(1, controller.listenerCount) / Math.max(1, Math.ceil(DEFAULT_MAX_SESSIONS / 4));
      assert.ok(controller.listenerCount > 0, 'the subscribed sessions hold listeners');
      assert.ok(maxListeners <= DEFAULT_MAX_SESSIONS * Math.ceil(perSession) + 8, `controller listeners bounded by the session cap (max ${maxListeners})`);
      assert.ok(fds1 <= fds0 + 8, `fds ${fds0} → ${fds1}`);
    } finally {
      await host.close();
    }
    assert.equal(host.sessionCount, 0);
    assert.equal(controller.listenerCount, 0, 'closing the host released every session listener');
  });
});

describe('hostile MCP HTTP input', () => {
  let controller: FakeController;
  let host: HttpHost;
  const logs: string[] = [];
  before(async () => {
    controller = new FakeController();
    host = await startHttpHost(controller, { serverOptions: { version: 'hostile' }, maxBodyBytes: 64 * 1024, log: (level, msg) => logs.push(`${level} ${msg}`) });
  });
  after(async () => {
    await host.close();
  });

  it('oversized, malformed, unknown, misrouted and junk requests get clear errors; the host keeps serving', async () => {
    const auth = { Authorization: `Bearer ${host.token}` };
    const t0 = Date.now();

    // Oversized: declared, and streamed without a length (8 MB against a 64 KiB limit).
    const big = Buffer.alloc(8 * MB, 0x61);
    const over = await raw(host.port, { body: big, headers: auth });
    assert.equal(over.status, 413);
    assert.match(rpc(over).error?.message ?? '', /Payload too large: the body limit is 65536 bytes/);
    const overChunked = await raw(host.port, { body: big, headers: { ...auth, 'Transfer-Encoding': 'chunked' } });
    assert.equal(overChunked.status, 413);

    // Malformed JSON, and not-JSON bytes.
    for (const body of ['{"jsonrpc": "2.0", "id": 1, "method": ', '\u0000\u0001\u00ff garbage', '{'.repeat(10_000)]) {
      const r = await raw(host.port, { body, headers: auth });
      assert.equal(r.status, 400, body.slice(0, 20));
      assert.equal(rpc(r).error?.code, -32700);
    }
    const binary = await raw(host.port, { body: Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x7b]), headers: auth });
    assert.equal(binary.status, 400);

    // Valid JSON that is not a request we take without a session.
    for (const body of ['null', '[]', '{}', '"x"', '42', JSON.stringify({ jsonrpc: '1.0', id: 1, method: 'initialize' })]) {
      const r = await raw(host.port, { body, headers: auth });
      assert.equal(r.status, 400, `${body}: ${r.body}`);
    }

    // Wrong session ids.
    for (const sid of ['00000000-0000-4000-8000-000000000000', 'x'.repeat(200), '../../etc/passwd']) {
      const r = await raw(host.port, { body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }), headers: { ...auth, 'Mcp-Session-Id': sid } });
      assert.equal(r.status, 404);
      assert.equal(rpc(r).error?.code, -32001);
      assert.match(rpc(r).error?.message ?? '', /Session not found/);
    }

    // A real session: unknown method → JSON-RPC -32601; junk inside the session → an error, not a crash.
    const init = await raw(host.port, { body: INIT(), headers: auth });
    assert.equal(init.status, 200);
    const sid = String(init.headers['mcp-session-id']);
    const inSession = { ...auth, 'Mcp-Session-Id': sid, 'Mcp-Protocol-Version': '2025-06-18' };
    const initialized = await raw(host.port, { body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }), headers: inSession });
    assert.equal(initialized.status, 202);
    const unknown = await raw(host.port, { body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tunnel/selfDestruct', params: {} }), headers: inSession });
    assert.equal(unknown.status, 200, unknown.body);
    assert.equal(rpc(unknown).id, 7);
    assert.equal(rpc(unknown).error?.code, -32601);
    const badParams = await raw(host.port, { body: JSON.stringify({ jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: 42 } }), headers: inSession });
    // The SDK reports schema violations of known methods as -32603 with the validation message.
    assert.ok([-32602, -32603].includes(rpc(badParams).error?.code ?? 0), badParams.body);
    assert.match(rpc(badParams).error?.message ?? '', /expected string/);
    const unknownTool = await raw(host.port, { body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'rm_rf', arguments: {} } }), headers: inSession });
    const ut = rpc(unknownTool);
    assert.ok(ut.error?.code === -32602 || (ut.result as CallToolResult | undefined)?.isError, unknownTool.body);
    for (const body of ['{}', '[]', '[1,2,3]', JSON.stringify({ jsonrpc: '2.0', id: {}, method: 'ping' })]) {
      const r = await raw(host.port, { body, headers: inSession });
      assert.ok(r.status >= 200 && r.status < 500, `${body}: ${r.status} ${r.body}`);
    }
    const badVersion = await raw(host.port, { body: JSON.stringify({ jsonrpc: '2.0', id: 10, method: 'ping' }), headers: { ...inSession, 'Mcp-Protocol-Version': '1999-01-01' } });
    assert.equal(badVersion.status, 400);

    const took = Date.now() - t0;
    console.log(`hostile input: ${took} ms for every request above; host log: ${logs.filter((l) => l.startsWith('error')).length} error lines`);
    assert.ok(took < 20_000, 'bounded time');
    assert.deepEqual(
      logs.filter((l) => l.startsWith('error')),
      [],
      'no handler blew up',
    );

    // Still serving: a real SDK client end to end.
    const client = new Client({ name: 'after-hostile', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(host.url), { requestInit: { headers: auth } });
    await client.connect(transport);
    const status = (await client.callTool({ name: 'get_tunnel_status', arguments: {} })) as CallToolResult;
    assert.equal(status.structuredContent?.['status'], 'stopped');
    await transport.terminateSession();
    await client.close();
    assert.ok(isAlive(process.pid));
  });
});

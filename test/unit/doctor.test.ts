/**
 * The reachability doctor: one scenario per outcome, through real processes (the fake cloudflared
 * and its loopback "public" port, the real access gate, real origins and a real SDK MCP server),
 * with the public name mapped onto that port (`connectTo`) the way curl --connect-to does. DNS and
 * its clock are injected. Then the monitor that checks each share once the tunnel is active.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TunnelController, type TunnelControllerOptions } from '../../src/core/tunnelController';
import type { TunnelTarget } from '../../src/core/model/tunnelState';
import {
  checkReachability,
  classify,
  parseConnectTo,
  type ConnectTo,
  type DohAnswer,
  type ReachabilityDeps,
  type ReachabilityResult,
  type ReachabilityState,
} from '../../src/core/doctor/reachability';
import { ReachabilityMonitor, type ReachabilityCheck } from '../../src/core/doctor/monitor';
import { freePort, startOrigin, startStrictOrigin, type Origin } from '../support/origins';
import { startMcpOrigin, type McpOrigin } from '../fixtures/mcpOrigin';
import { fakeRunOptions } from '../support/fakeRuns';
import { readFakeState, waitFor } from '../support/proc';

let work: string;
const controllers: TunnelController[] = [];
const origins: Origin[] = [];
/** Every outcome and progress report of the file: none may carry a share secret. */
const said: ReachabilityResult[] = [];
const secrets = new Set<string>();

async function origin<T extends Origin>(o: Promise<T>): Promise<T> {
  const started = await o;
  origins.push(started);
  return started;
}

/** An origin that answers every request with `status` and `body`. */
const answering = (status: number, body = '', type = 'text/plain') =>
  origin(
    startOrigin((req, res) => {
      req.resume();
      res.writeHead(status, { 'content-type': type }).end(body);
    }),
  );

interface Tunnel {
  c: TunnelController;
  /** The fake edge's loopback public side, for connectTo. */
  edge: ConnectTo;
  /** A started share's public MCP URL (its secret recorded for the leak check). */
  share(target: TunnelTarget): Promise<string>;
}

/** A TunnelController on the fake cloudflared, active, with `env` (scenario, edge fault) for the fake. */
function tunnel(env: Record<string, string> = {}, opts: Partial<TunnelControllerOptions> = {}): Tunnel {
  const c = new TunnelController({ ...fakeRunOptions(work, controllers.length, env), metricsIntervalMs: 0, ...opts });
  controllers.push(c);
  const share = async (target: TunnelTarget): Promise<string> => {
    const s = await c.start(target);
    assert.equal(s.status, 'active', JSON.stringify(s));
    const url = c.findShare(target)?.mcp_url;
    assert.ok(url, 'an MCP URL');
    secrets.add(new URL(url).pathname.split('/')[1] ?? '');
    return url;
  };
  return { c, share, edge: { host: '127.0.0.1', port: 0, protocol: 'http' } };
}

/** Starts the tunnel with its first share; fills in the public port. */
async function tunnelWith(target: TunnelTarget, env: Record<string, string> = {}, opts: Partial<TunnelControllerOptions> = {}): Promise<Tunnel & { url: string }> {
  const t = tunnel(env, opts);
  const url = await t.share(target);
  const s = t.c.state;
  const fake = await waitFor(() => readFakeState(work, 'pid' in s ? (s.pid ?? 0) : 0), 3000, 'the fake state file');
  t.edge.port = fake.publicPort;
  return { ...t, url };
}

const at = (port: number, p = '/mcp'): TunnelTarget => ({ host: '127.0.0.1', port, path: p });

/** checkReachability through the fake edge; remembers what it said. */
async function check(url: string, deps: ReachabilityDeps, progress: ReachabilityResult[] = []): Promise<ReachabilityResult> {
  const r = await checkReachability({ mcpUrl: url }, { sseWaitMs: 1000, ...deps }, (p) => progress.push(p));
  said.push(r, ...progress);
  return r;
}

function expectState(r: ReachabilityResult, state: ReachabilityState, message: RegExp, fix?: RegExp): void {
  assert.equal(r.state, state, `${r.state}: ${r.message}`);
  assert.equal(r.ok, state === 'ok');
  assert.match(r.message, message);
  if (fix) assert.match(r.fix ?? '', fix);
  else if (state === 'ok') assert.equal(r.fix, null);
  assert.equal(r.host.endsWith('.trycloudflare.com') || r.host === '127.0.0.1' || r.host.endsWith('.example'), true, r.host);
  assert.ok(!Number.isNaN(Date.parse(r.checked_at)));
}

/** A fake clock whose sleeps advance it, and a resolver that fails as told. */
function fakeDns(fails: number | 'always', publicDns: DohAnswer, code = 'ENOTFOUND') {
  let now = 1_000_000;
  const sleeps: number[] = [];
  let lookups = 0;
  const deps: ReachabilityDeps = {
    now: () => now,
    sleep: (ms) => {
      sleeps.push(ms);
      now += ms;
      return Promise.resolve();
    },
    lookup: () => {
      lookups++;
      if (fails === 'always' || lookups <= fails) return Promise.reject(Object.assign(new Error(`getaddrinfo ${code}`), { code }));
      return Promise.resolve([{ address: '127.0.0.1', family: 4 }]);
    },
    doh: () => Promise.resolve(publicDns),
  };
  return { deps, sleeps, lookups: () => lookups };
}

describe('reachability doctor', { concurrency: false }, () => {
  before(() => {
    work = mkdtempSync(path.join(tmpdir(), 'mcpt-doctor-'));
  });
  after(async () => {
    await Promise.all(controllers.splice(0).map((c) => c.shutdown(3000)));
    for (const o of origins.splice(0)) await o.close().catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
    // Nothing the doctor said may carry a share secret.
    for (const r of said) for (const s of secrets) assert.ok(s && !`${r.message} ${r.fix ?? ''}`.includes(s), `a secret in: ${r.message}`);
  });

  describe('through the fake edge: one tunnel, one share per local failure', () => {
    let t: Tunnel & { url: string };
    let mcp: McpOrigin;
    before(async () => {
      mcp = await origin(startMcpOrigin({ stateful: true }));
      t = await tunnelWith(at(mcp.port));
    });

    it('ok: a stateful MCP server answers initialize as SSE through the tunnel, its GET stream opens, and the session is deleted after', async () => {
      const progress: ReachabilityResult[] = [];
      const r = await check(t.url, { connectTo: t.edge }, progress);
      expectState(r, 'ok', /^Reachable from the internet · \d+ ms$/);
      assert.equal(r.status, 200);
      assert.ok(r.rtt_ms !== null && r.rtt_ms >= 0);
      assert.ok(r.first_event_ms !== null && r.first_event_ms >= (r.rtt_ms ?? 0), 'the initialize answer came as an SSE event');
      assert.deepEqual(progress.map((p) => p.state), ['checking']);
      assert.ok(mcp.sessionsOpened >= 1);
      await waitFor(() => (mcp.openSessions === 0 ? true : undefined), 3000, 'the check to end its session');
      await waitFor(() => (t.c.activity().some((a) => a.client?.includes('mcp-tunnel-doctor')) ? true : undefined), 3000, 'the inspector to name the doctor as the client');
    });

    it('ok: a stateless server answers JSON (no session, no stream to check)', async () => {
      const stateless = await origin(startMcpOrigin());
      const r = await check(await t.share(at(stateless.port)), { connectTo: t.edge });
      expectState(r, 'ok', /^Reachable from the internet/);
      assert.equal(r.first_event_ms, null);
    });

    it('host-rejected: 421 Misdirected Request names the hostHeader setting', async () => {
      const o = await answering(421, 'Misdirected Request');
      const r = await check(await t.share(at(o.port)), { connectTo: t.edge });
      expectState(r, 'host-rejected', /rejected the request \(421\) because of its Host header/, /mcpTunnel\.hostHeader.*--host-header origin/);
      assert.equal(r.status, 421);
    });

    it('accept-refused: 406', async () => {
      const o = await answering(406, JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'Not Acceptable' }, id: null }), 'application/json');
      const r = await check(await t.share(at(o.port)), { connectTo: t.edge });
      expectState(r, 'accept-refused', /refused the request's Accept header \(406\)/, /Streamable HTTP endpoint/);
    });

    it('nothing-listening: the local server is stopped (502 from the gate)', async () => {
      const r = await check(await t.share(at(await freePort())), { connectTo: t.edge });
      expectState(r, 'nothing-listening', /nothing answers on the local port .*\(502\)/, /Start your MCP server/);
      assert.equal(r.status, 502);
    });

    it('not-mcp: a 200 that is not JSON-RPC, and a 404', async () => {
      const strict = await origin(startStrictOrigin());
      const r = await check(await t.share(at(strict.port)), { connectTo: t.edge });
      expectState(r, 'not-mcp', /^Not an MCP endpoint: .* answers \(200, application\/json\), but not with a JSON-RPC answer/, /path and port/);
      const missing = await answering(404, 'Cannot POST /mcp');
      const r404 = await check(await t.share(at(missing.port)), { connectTo: t.edge });
      expectState(r404, 'not-mcp', /the path is not found \(404\): the path is not the MCP endpoint/);
    });

    it('unauthorized: a wrong secret gets 401 from the gate and never reaches the server', async () => {
      const before = mcp.sessionsOpened;
      const url = new URL(t.url);
      url.pathname = `/${'x'.repeat(43)}/mcp`;
      const r = await check(url.href, { connectTo: t.edge });
      expectState(r, 'unauthorized', /refused the secret this URL carries \(401\).*Nothing reached your server/, /current MCP URL/);
      assert.equal(mcp.sessionsOpened, before);
    });

    it('waiting-dns: the name fails to resolve twice (ENOTFOUND), then the check goes on and succeeds', async () => {
      const dns = fakeDns(2, 'exists');
      const progress: ReachabilityResult[] = [];
      const r = await check(t.url, { ...dns.deps, connectTo: t.edge }, progress);
      expectState(r, 'ok', /^Reachable from the internet/);
      assert.deepEqual(progress.map((p) => p.state), ['checking', 'waiting-dns', 'waiting-dns']);
      assert.match(progress[1]?.message ?? '', /Waiting for DNS: .*\.trycloudflare\.com does not resolve here yet \(public DNS already knows it/);
      assert.deepEqual(dns.sleeps, [1000, 2000]);
      assert.equal(dns.lookups(), 3);
    });
  });

  describe('through the fake edge: edge faults and a guarded server', () => {
    it('rate-limited: 429 + error 1015, with the Retry-After in the message', async () => {
      const mcp = await origin(startMcpOrigin());
      const t = await tunnelWith(at(mcp.port), { FAKE_CLOUDFLARED_EDGE_FAULT: 'rate-limited' });
      const r = await check(t.url, { connectTo: t.edge });
      expectState(r, 'rate-limited', /Cloudflare rate-limits this quick tunnel \(429, error 1015\); retry in 30 s\./, /named tunnel/);
      assert.equal(mcp.sessionsOpened, 0);
    });

    it('not-registered: the edge keeps answering 530 / 1033 although cloudflared registered', async () => {
      const mcp = await origin(startMcpOrigin());
      const t = await tunnelWith(at(mcp.port), { FAKE_CLOUDFLARED_EDGE_FAULT: 'no-connector' });
      assert.equal(t.c.state.status, 'active');
      const r = await check(t.url, { connectTo: t.edge });
      expectState(r, 'not-registered', /no tunnel connection for .* \(530, error 1033\)/, /mcpTunnel\.protocol to "http2" \(CLI: --protocol http2\)/);
    });

    it('sse-buffered: the quick tunnel holds back the GET notification stream of a stateful server (POST SSE still streams)', async () => {
      const mcp = await origin(startMcpOrigin({ stateful: true }));
      const t = await tunnelWith(at(mcp.port), { FAKE_CLOUDFLARED_EDGE_FAULT: 'hold-get-sse' });
      const r = await check(t.url, { connectTo: t.edge });
      expectState(r, 'sse-buffered', /Reachable from the internet · \d+ ms, but your server's notification stream \(GET SSE\) is held back .*cloudflared#1449/, /named tunnel .*2026-07-28/);
      assert.ok(r.first_event_ms !== null, 'the POST answer streamed live');
      await waitFor(() => (mcp.openSessions === 0 ? true : undefined), 3000, 'the session deleted after all');
    });

    it("host-rejected: the SDK's DNS-rebinding guard refuses the public Host (403 Invalid Host header)", async () => {
      const mcp = await origin(startMcpOrigin({ allowedHosts: (port) => [`127.0.0.1:${port}`, `localhost:${port}`] }));
      const t = await tunnelWith(at(mcp.port), {}, { hostHeader: 'public' });
      const r = await check(t.url, { connectTo: t.edge });
      expectState(r, 'host-rejected', /rejected the request \(403\) because of its Host header/, /mcpTunnel\.hostHeader to "origin"/);
    });
  });

  describe('DNS that never resolves (fake clock)', () => {
    const url = 'https://never-here-words-now.trycloudflare.com/S3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3tX/mcp';
    before(() => secrets.add('S3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3tX'));

    it('public DNS knows the name: "your resolver has not caught up", flush or wait; backoff 1, 2, 4, 8, 10 s… cut at the 60 s deadline', async () => {
      const dns = fakeDns('always', 'exists');
      const progress: ReachabilityResult[] = [];
      const r = await check(url, dns.deps, progress);
      expectState(r, 'dns', /does not resolve on this machine after 60 s, but public DNS already knows it: your resolver has not caught up yet.*up to 30 min/, /Flush the DNS cache/);
      assert.equal(r.status, null);
      assert.deepEqual(dns.sleeps, [1000, 2000, 4000, 8000, 10_000, 10_000, 10_000, 10_000, 5000]);
      assert.equal(dns.lookups(), 10);
      assert.equal(progress.filter((p) => p.state === 'waiting-dns').length, 9);
    });

    it('public DNS does not know it either: "does not exist on public DNS (yet)"', async () => {
      const dns = fakeDns('always', 'nxdomain');
      const r = await check(url, { ...dns.deps, dnsDeadlineMs: 5000 });
      expectState(r, 'dns', /does not exist on public DNS \(yet\) after 5 s/, /restart the tunnel for a new URL/);
    });

    it('a resolver failure other than "no such name" ends the wait at once', async () => {
      const dns = fakeDns('always', 'exists', 'EAI_FAIL');
      const r = await check(url, dns.deps);
      expectState(r, 'dns', /could not be resolved on this machine \(EAI_FAIL\)/);
      assert.equal(dns.lookups(), 1);
    });
  });

  describe('no answer, and abort', () => {
    const url = 'https://no-answer-here-now.trycloudflare.com/mcp';

    it('unreachable: nothing listens where the name points (connection refused)', async () => {
      const r = await check(url, { connectTo: { host: '127.0.0.1', port: await freePort(), protocol: 'http' } });
      expectState(r, 'unreachable', /Could not connect to no-answer-here-now\.trycloudflare\.com \(ECONNREFUSED\)/, /internet connection, proxy and firewall/);
    });

    it('unreachable: no answer within the timeout says so', async () => {
      const hang = await origin(startOrigin(() => undefined));
      const r = await check(url, { connectTo: { host: '127.0.0.1', port: hang.port, protocol: 'http' }, timeoutMs: 300 });
      expectState(r, 'unreachable', /no-answer-here-now\.trycloudflare\.com did not answer within 300 ms\./, /answers initialize locally/);
    });

    it('abort: during the DNS wait and during the request, the check rejects with the reason at once', async () => {
      const waiting = new AbortController();
      const dns = fakeDns('always', 'nxdomain');
      const sleep = (_ms: number, signal: AbortSignal) => new Promise<void>((_r, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }));
      const p1 = checkReachability({ mcpUrl: url, signal: waiting.signal }, { ...dns.deps, sleep });
      setTimeout(() => waiting.abort(new Error('user cancelled')), 20);
      await assert.rejects(p1, /user cancelled/);

      const hang = await origin(startOrigin(() => undefined));
      const sending = new AbortController();
      const p2 = checkReachability({ mcpUrl: url, signal: sending.signal }, { connectTo: { host: '127.0.0.1', port: hang.port, protocol: 'http' } });
      setTimeout(() => sending.abort(new Error('user cancelled')), 50);
      await assert.rejects(p2, /user cancelled/);
      await assert.rejects(checkReachability({ mcpUrl: url, signal: AbortSignal.abort(new Error('before')) }), /before/);
    });
  });

  describe('what an answer means (pure)', () => {
    const u = new URL('https://a-b-c-d.trycloudflare.com/secret/mcp');
    const verdict = (status: number, body = '', headers: Record<string, string> = {}) => {
      const v = classify(status, headers, body, true, u);
      return v === 'answered' ? v : v.state;
    };

    it('edge errors carry the Cloudflare code; other failures of the server are server-error; a JSON-RPC error is an MCP answer', () => {
      const e = classify(530, {}, 'error code: 1016', true, u);
      assert.ok(e !== 'answered' && e.state === 'edge-error' && /530 \(error 1016\)/.test(e.message) && /Cloudflare error 1016/.test(e.fix ?? ''));
      assert.equal(verdict(522, '<title>Connection timed out | error code: 522</title>'), 'edge-error');
      assert.equal(verdict(500, 'boom'), 'server-error');
      assert.equal(verdict(403, 'Forbidden'), 'server-error');
      assert.equal(verdict(400, 'Invalid host header'), 'host-rejected', 'Starlette/FastMCP');
      assert.equal(verdict(403, 'Blocked request. This host ("x") is not allowed.'), 'host-rejected', 'Vite');
      assert.equal(verdict(200, '<html></html>', { 'content-type': 'text/html' }), 'not-mcp');
      assert.equal(verdict(405), 'not-mcp');
      assert.equal(verdict(400, JSON.stringify({ jsonrpc: '2.0', id: 1, error: { code: -32022, message: 'Unsupported protocol version' } })), 'answered');
      assert.equal(verdict(401, '', { 'www-authenticate': 'Bearer resource_metadata="https://x/.well-known/oauth-protected-resource"' }), 'answered', "the server's own OAuth");
      const gate429 = classify(429, { 'retry-after': '5' }, '{"error":"Too many failed attempts: slow down."}', true, u);
      assert.ok(gate429 !== 'answered' && /gate is slowing down .* retry in 5 s/.test(gate429.message));
      assert.equal(classify(200, {}, 'hello', false, u), 'answered', 'a plain HTTP share: any answer of the server will do');
    });

    it('--connect-to syntax', () => {
      assert.deepEqual(parseConnectTo('X.trycloudflare.com=127.0.0.1:8443'), { host: 'x.trycloudflare.com', to: { host: '127.0.0.1', port: 8443, protocol: 'https' } });
      assert.deepEqual(parseConnectTo('*=http://[::1]:8080'), { host: '*', to: { host: '::1', port: 8080, protocol: 'http' } });
      assert.throws(() => parseConnectTo('x.trycloudflare.com:443:127.0.0.1'), /is not HOST=ADDR:PORT/);
      assert.throws(() => parseConnectTo('x=127.0.0.1:70000'), /is not HOST=ADDR:PORT/);
    });
  });

  describe('ReachabilityMonitor', () => {
    /** The real check through the fake edge, recording when it ran and how many ran at once. */
    function recording(edge: () => ConnectTo, c: () => TunnelController) {
      const calls: Array<{ status: string; url: string }> = [];
      let inFlight = 0;
      let most = 0;
      const check: ReachabilityCheck = async (target, onProgress) => {
        calls.push({ status: c().state.status, url: target.mcpUrl });
        most = Math.max(most, ++inFlight);
        try {
          const r = await checkReachability(target, { connectTo: edge(), sseWaitMs: 1000 }, onProgress);
          said.push(r);
          return r;
        } finally {
          inFlight--;
        }
      };
      return { check, calls, most: () => most };
    }

    it('checks each share once after the tunnel is active (one at a time, never before), a new share too; cleared on stop', async () => {
      const a = await origin(startMcpOrigin({ stateful: true }));
      const b = await origin(startMcpOrigin());
      const t = tunnel();
      const rec = recording(() => t.edge, () => t.c);
      // The fake's public port is known once it printed its URL (connecting): the check reads it later.
      t.c.onDidChangeState((s) => {
        const fake = 'pid' in s && s.pid ? readFakeState(work, s.pid) : undefined;
        if (fake) t.edge.port = fake.publicPort;
      });
      const monitor = new ReachabilityMonitor(t.c, { check: rec.check });
      const states: string[] = [];
      monitor.onDidChange((e) => states.push(e.result?.state ?? 'cleared'));
      try {
        const urlA = await t.share(at(a.port));
        const urlB = await t.share(at(b.port));
        const [idA, idB] = t.c.listShares().map((s) => s.id);
        assert.ok(idA && idB, 'two shares');
        await waitFor(() => (monitor.result(idA)?.state === 'ok' && monitor.result(idB)?.state === 'ok' ? true : undefined), 10_000, 'both shares checked');
        assert.deepEqual(rec.calls.map((x) => x.status), ['active', 'active'], 'never before active');
        assert.deepEqual(new Set(rec.calls.map((x) => x.url)), new Set([urlA, urlB]));
        assert.equal(rec.most(), 1, 'one check at a time');
        assert.ok(states.includes('checking'));
        assert.equal(monitor.results().size, 2);
        // Requests through the tunnel change the shares' counters: no check runs again for them.
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(rec.calls.length, 2);

        const again = await monitor.check(idA);
        assert.equal(again.length, 1);
        assert.equal(again[0]?.state, 'ok');
        assert.equal(rec.calls.length, 3, 'on demand: checked again');

        await t.c.stop();
        assert.equal(monitor.results().size, 0, 'cleared when the tunnel stops');
        assert.deepEqual(states.slice(-2), ['cleared', 'cleared']);
        assert.deepEqual(await monitor.check(), [], 'nothing to check while not active');
      } finally {
        monitor.dispose();
      }
    });

    it('a check under way stops when its share goes away; auto off checks only on demand', async () => {
      const slow = await origin(startOrigin(() => undefined)); // accepts, never answers
      const fine = await origin(startMcpOrigin());
      const t = await tunnelWith(at(fine.port));
      const slowUrl = await t.share(at(slow.port));
      const signals: AbortSignal[] = [];
      const check: ReachabilityCheck = (target, onProgress) => {
        if (target.signal) signals.push(target.signal);
        return checkReachability(target, { connectTo: t.edge }, onProgress);
      };
      const manual = new ReachabilityMonitor(t.c, { check, auto: false });
      const auto = new ReachabilityMonitor(t.c, { check });
      try {
        await new Promise((r) => setTimeout(r, 200));
        assert.equal(manual.results().size, 0, 'auto: false checks nothing by itself');
        const slowId = t.c.listShares().find((s) => s.mcp_url === slowUrl)?.id ?? '';
        const pending = manual.check(slowId);
        await waitFor(() => (manual.result(slowId)?.state === 'checking' ? true : undefined), 3000, 'the slow check under way');
        const slowSignal = signals.at(-1);
        assert.ok(await t.c.stopShare(slowId));
        assert.deepEqual(await pending, [], 'the check of a share that went away is left out');
        assert.equal(slowSignal?.aborted, true, 'its request was aborted');
        assert.equal(manual.result(slowId), undefined);
        const [fineId] = t.c.listShares().map((s) => s.id);
        await waitFor(() => (auto.result(fineId ?? '')?.state === 'ok' ? true : undefined), 10_000, 'the automatic monitor checked the other share');
      } finally {
        manual.dispose();
        auto.dispose();
      }
    });
  });
});

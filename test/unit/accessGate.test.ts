/**
 * The access gate: the pure checkAccess and FailureTracker, then the real proxy between real
 * sockets (origins that count every request and connection), the MCP SDK end to end through the
 * fake cloudflared, and a child process proving close() leaves no handle behind.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { freePort } from '../support/origins';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { z } from 'zod';
import {
  checkAccess,
  FAILURE_DELAY_MAX_MS,
  FAILURE_DELAY_STEP_MS,
  FailureTracker,
  startAccessGate,
  type AccessGate,
  type AccessGateRejection,
} from '../../src/core/gate/accessGate';
import { closers, logLines, newGate, secretOf, secretsSeen } from '../support/gates';
import { FAKE_CLOUDFLARED, readFakeState, REPO, waitGone } from '../support/proc';

// ------------------------------------------------------------------------------------------------
// Harness
// ------------------------------------------------------------------------------------------------

const SLOW = { timeout: 60_000 };

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

interface TestOrigin {
  server: http.Server;
  port: number;
  /** Requests that reached it (upgrades included). */
  requests: number;
  /** TCP connections it accepted. */
  connections: number;
  seen: Seen[];
  close(): Promise<void>;
}

/** An origin that counts everything; `handler` answers (default: echo method, url and headers). */
async function startOrigin(handler?: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<TestOrigin> {
  const o: TestOrigin = {
    server: http.createServer((req, res) => {
      o.requests++;
      o.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      if (handler) return handler(req, res);
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ url: req.url, headers: req.headers }));
    }),
    port: 0,
    requests: 0,
    connections: 0,
    seen: [],
    close: () =>
      new Promise<void>((r) => {
        o.server.close(() => r());
        for (const s of sockets) s.destroy(); // upgraded ones too, unlike closeAllConnections()
      }),
  };
  const sockets = new Set<Socket>();
  o.server.on('connection', (s: Socket) => {
    o.connections++;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  o.server.on('upgrade', (req: http.IncomingMessage) => {
    o.requests++;
    o.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
  });
  await new Promise<void>((r) => o.server.listen(0, '127.0.0.1', r));
  o.port = (o.server.address() as AddressInfo).port;
  closers.push(() => o.close());
  return o;
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  ms: number;
}

function send(port: number, opts: { method?: string; path?: string; headers?: http.OutgoingHttpHeaders; body?: string | Buffer } = {}): Promise<Reply> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path ?? '/', headers: opts.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, ms: performance.now() - t0 }));
      res.on('error', reject);
    });
    req.setTimeout(30_000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(opts.body);
  });
}

function text(d: RawData): string {
  if (Buffer.isBuffer(d)) return d.toString('utf8');
  return Array.isArray(d) ? Buffer.concat(d).toString('utf8') : Buffer.from(d).toString('utf8');
}

function json(body: string): Record<string, unknown> {
  return JSON.parse(body) as Record<string, unknown>;
}

function bearer(gate: AccessGate): { authorization: string } {
  return { authorization: `Bearer ${secretOf(gate)}` };
}

/** Resolves on the first `event` of `emitter`, rejects after `ms`. */
function once<T>(subscribe: (cb: (v: T) => void) => void, ms = 10_000, what = 'event'): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    subscribe((v) => {
      clearTimeout(t);
      resolve(v);
    });
  });
}

// ------------------------------------------------------------------------------------------------
// checkAccess (pure)
// ------------------------------------------------------------------------------------------------

describe('checkAccess', () => {
  const S = randomBytes(32).toString('base64url');
  const check = (url: string, headers: Record<string, string | string[] | undefined> = {}, secret = S) => checkAccess({ url, headers }, secret);

  it('a matching Bearer token passes and keeps the path (scheme case-insensitive, trailing blanks ok)', () => {
    assert.deepEqual(check('/mcp?x=1', { authorization: `Bearer ${S}` }), { ok: true, path: '/mcp?x=1', via: 'bearer' });
    assert.deepEqual(check('/mcp', { authorization: `bearer  ${S} ` }), { ok: true, path: '/mcp', via: 'bearer' });
  });

  it('a wrong Bearer token, or another scheme, is refused', () => {
    const wrong = check('/mcp', { authorization: `Bearer ${S}x` });
    assert.equal(wrong.ok, false);
    assert.match(!wrong.ok ? wrong.reason : '', /wrong bearer/);
    assert.equal(check('/mcp', { authorization: `Bearer ${S.slice(0, -1)}` }).ok, false);
    assert.equal(check('/mcp', { authorization: `Basic ${Buffer.from(`user:${S}`).toString('base64')}` }).ok, false);
    assert.equal(check('/mcp', { authorization: `Token ${S}` }).ok, false);
    assert.equal(check('/mcp', { authorization: S }).ok, false);
    assert.equal(check('/mcp', { authorization: `Bearer ${S} extra` }).ok, false);
    const none = check('/mcp');
    assert.equal(none.ok, false);
    assert.match(!none.ok ? none.reason : '', /no credentials/);
  });

  it('a secret path prefix passes and is stripped (with or without rest and query)', () => {
    assert.deepEqual(check(`/${S}/mcp?x=1`), { ok: true, path: '/mcp?x=1', via: 'path' });
    assert.deepEqual(check(`/${S}`), { ok: true, path: '/', via: 'path' });
    assert.deepEqual(check(`/${S}/`), { ok: true, path: '/', via: 'path' });
    assert.deepEqual(check(`/${S}?a=b&c`), { ok: true, path: '/?a=b&c', via: 'path' });
    assert.deepEqual(check(`/${S}/a/b/../c`), { ok: true, path: '/a/b/../c', via: 'path' });
    // absolute-form request target
    assert.deepEqual(check(`http://x.trycloudflare.com/${S}/mcp?q=1`), { ok: true, path: '/mcp?q=1', via: 'path' });
  });

  it('the path wins over a foreign Bearer token (meant for the origin)', () => {
    assert.deepEqual(check(`/${S}/mcp`, { authorization: 'Bearer origin-token' }), { ok: true, path: '/mcp', via: 'path' });
  });

  it('near misses are refused: longer or shorter segment, later segment, query, double slash', () => {
    for (const url of [
      `/${S}x/mcp`,
      `/${S}x`,
      `/x${S}/mcp`,
      `/${S.slice(0, -1)}/mcp`,
      `/mcp/${S}`,
      `//${S}/mcp`,
      `/mcp?${S}`,
      `/mcp?secret=${S}`,
      `/?/${S}/`,
      `${S}/mcp`,
      '*',
      '',
      '/',
    ]) {
      assert.equal(check(url).ok, false, url);
    }
  });

  it('encoded variants are refused: nothing is percent-decoded', () => {
    for (const url of [
      `/${S}%2Fmcp`,
      `/${S}%2fmcp`,
      `/%2F${S}/mcp`,
      `/${encodeURIComponent(`/${S}`)}/mcp`,
      `/%${S.charCodeAt(0).toString(16)}${S.slice(1)}/mcp`,
      `/${S}%3Fx=1`,
      `/${S}%00/mcp`,
    ]) {
      assert.equal(check(url).ok, false, url);
    }
  });

  it('an empty secret lets nothing through', () => {
    assert.equal(check('/', {}, '').ok, false);
    assert.equal(check('//mcp', {}, '').ok, false);
    assert.equal(check('/mcp', { authorization: 'Bearer ' }, '').ok, false);
    const r = check('/x', { authorization: 'Bearer x' }, '');
    assert.match(!r.ok ? r.reason : '', /no share secret/);
  });

  it('an array-valued Authorization uses its first value', () => {
    assert.equal(check('/', { authorization: [`Bearer ${S}`, 'Bearer other'] }).ok, true);
  });
});

// ------------------------------------------------------------------------------------------------
// FailureTracker (pure, fake clock)
// ------------------------------------------------------------------------------------------------

describe('FailureTracker', () => {
  it('N failures a minute are free; each one beyond adds a step, capped', () => {
    let now = 1_000_000;
    const t = new FailureTracker(3, 100, () => now);
    assert.deepEqual([t.fail('a'), t.fail('a'), t.fail('a')], [0, 0, 0]);
    assert.equal(t.peek('a'), FAILURE_DELAY_STEP_MS);
    assert.equal(t.fail('a'), FAILURE_DELAY_STEP_MS);
    assert.equal(t.fail('a'), 2 * FAILURE_DELAY_STEP_MS);
    for (let i = 0; i < 50; i++) t.fail('a');
    assert.equal(t.fail('a'), FAILURE_DELAY_MAX_MS);
    // another client is unaffected
    assert.equal(t.fail('b'), 0);
    now += 1;
    assert.equal(t.peek('b'), 0);
  });

  it('the count drains at N per minute', () => {
    let now = 0;
    const t = new FailureTracker(6, 100, () => now);
    for (let i = 0; i < 8; i++) t.fail('a'); // level 8: two over
    assert.equal(t.peek('a'), 3 * FAILURE_DELAY_STEP_MS);
    now += 20_000; // drains 2
    assert.equal(t.peek('a'), FAILURE_DELAY_STEP_MS);
    now += 10_000; // drains 1 more: level 5, the next is the 6th
    assert.equal(t.peek('a'), 0);
    now += 60_000;
    assert.equal(t.peek('a'), 0);
    assert.equal(t.size, 0, 'a drained entry is forgotten');
  });

  it('tracks a bounded number of clients, forgetting the least recently failing', () => {
    const t = new FailureTracker(1, 100, () => 0);
    t.fail('first');
    t.fail('first');
    assert.equal(t.peek('first'), 2 * FAILURE_DELAY_STEP_MS);
    for (let i = 0; i < 1000; i++) t.fail(`c${i}`);
    assert.equal(t.size, 100);
    assert.equal(t.peek('first'), 0, 'evicted');
    assert.equal(t.peek('c999'), FAILURE_DELAY_STEP_MS, 'kept');
  });

  it('refuses a zero allowance', () => {
    assert.throws(() => new FailureTracker(0), RangeError);
  });
});

// ------------------------------------------------------------------------------------------------
// The gate, over real sockets
// ------------------------------------------------------------------------------------------------

describe('access gate: who passes', () => {
  it('without the secret: 401 with a JSON hint, and the origin sees no request and no connection', SLOW, async () => {
    const origin = await startOrigin();
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
    const S = secretOf(gate);
    assert.match(gate.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(gate.url, `http://127.0.0.1:${gate.port}`);
    assert.equal(gate.mode, 'secret');
    assert.equal(gate.secretPath(), `/${S}`);
    assert.match(S, /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url');
    const rejections: AccessGateRejection[] = [];
    gate.onDidReject((r) => rejections.push(r));

    const attempts: Array<Parameters<typeof send>[1]> = [
      { path: '/mcp' },
      { path: '/' },
      { path: '/mcp', headers: { authorization: `Bearer ${S}x` } },
      { path: '/mcp', headers: { authorization: `Basic ${Buffer.from(`u:${S}`).toString('base64')}` } },
      { path: `/${S}x/mcp` },
      { path: `/${S}%2Fmcp` },
      { path: `/mcp?key=${S}` },
      { method: 'POST', path: '/mcp', headers: { 'content-type': 'application/json' }, body: '{"jsonrpc":"2.0","id":1,"method":"initialize"}' },
      { method: 'POST', path: '/mcp', headers: { expect: '100-continue', 'content-length': '5' }, body: 'hello' },
    ];
    for (const a of attempts) {
      const r = await send(gate.port, { ...a, headers: { 'cf-connecting-ip': '198.51.100.1', ...a?.headers } });
      assert.equal(r.status, 401, JSON.stringify(a));
      assert.match(String(r.headers['content-type']), /application\/json/);
      assert.match(String(r.headers['www-authenticate']), /^Bearer /);
      const body = json(r.body);
      assert.match(String(body['error']), /Authorization: Bearer <secret>/);
      assert.match(String(body['error']), /\/<secret>\/mcp/);
      assert.ok(!r.body.includes(S), 'the 401 never reveals the secret');
    }
    assert.equal(origin.requests, 0);
    assert.equal(origin.connections, 0, 'no connection was ever opened to the origin');
    assert.deepEqual(gate.stats, { passed: 0, rejected: attempts.length });
    assert.equal(rejections.length, attempts.length);
    assert.ok(rejections.every((r) => r.ip === '198.51.100.1' && r.reason.length > 0));
  });

  it('with the secret (Bearer or path): reaches the origin, secret removed, path stripped', SLOW, async () => {
    const origin = await startOrigin();
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
    const S = secretOf(gate);

    const viaBearer = await send(gate.port, { path: '/mcp?x=1', headers: { authorization: `Bearer ${S}` } });
    assert.equal(viaBearer.status, 200);
    const b = json(viaBearer.body) as { url: string; headers: Record<string, string> };
    assert.equal(b.url, '/mcp?x=1');
    assert.equal(b.headers['authorization'], undefined, 'the Bearer secret never reaches the origin');

    for (const [p, want] of [
      [`/${S}/mcp?x=1`, '/mcp?x=1'],
      [`/${S}`, '/'],
      [`/${S}/`, '/'],
    ] as const) {
      const r = await send(gate.port, { path: p });
      assert.equal(r.status, 200, p);
      assert.equal((json(r.body) as { url: string }).url, want);
    }
    // the path passes; a foreign Authorization is the origin's business and goes through
    const own = await send(gate.port, { path: `/${S}/api`, headers: { authorization: 'Bearer origin-own-token' } });
    assert.equal((json(own.body) as { headers: Record<string, string> }).headers['authorization'], 'Bearer origin-own-token');
    // path and Bearer both carrying the secret: neither reaches the origin
    const both = await send(gate.port, { path: `/${S}/api`, headers: { authorization: `Bearer ${S}` } });
    assert.equal((json(both.body) as { headers: Record<string, string> }).headers['authorization'], undefined);
    // a POST body with Expect: 100-continue
    const post = await send(gate.port, { method: 'POST', path: `/${S}/echo`, headers: { expect: '100-continue', 'content-length': '5' }, body: 'hello' });
    assert.equal(post.status, 200);
    assert.equal(origin.seen.at(-1)?.headers['expect'], undefined);

    assert.equal(origin.requests, 7);
    assert.deepEqual(gate.stats, { passed: 7, rejected: 0 });
    for (const s of origin.seen) {
      assert.ok(!s.url.includes(S) && !JSON.stringify(s.headers).includes(S), 'the origin never sees the secret');
    }
  });

  it('rotateSecret: the old secret is refused at once, the new one works', SLOW, async () => {
    const origin = await startOrigin();
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
    const old = secretOf(gate);
    // a keep-alive connection that passed with the old secret is re-checked on its next request
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const onConn = (path: string, headers: http.OutgoingHttpHeaders = {}) =>
      new Promise<number>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: gate.port, path, headers, agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        }).on('error', reject);
      });
    assert.equal(await onConn(`/${old}/a`), 200);
    const fresh = gate.rotateSecret();
    secretsSeen.add(fresh);
    assert.notEqual(fresh, old);
    assert.equal(gate.secretPath(), `/${fresh}`);
    assert.equal(await onConn(`/${old}/a`), 401);
    assert.equal(await onConn('/a', { authorization: `Bearer ${old}` }), 401);
    assert.equal((await send(gate.port, { path: `/${old}/a` })).status, 401);
    assert.equal((await send(gate.port, { path: `/${fresh}/a` })).status, 200);
    assert.equal((await send(gate.port, { path: '/a', headers: { authorization: `Bearer ${fresh}` } })).status, 200);
    agent.destroy();
    assert.equal(origin.requests, 3);
  });

  it('open mode lets everything through (still stripping a secret); back to secret mode refuses again', SLOW, async () => {
    const origin = await startOrigin();
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port }, mode: 'open' });
    const S = secretOf(gate);
    assert.equal(gate.mode, 'open');
    const plain = await send(gate.port, { path: '/mcp' });
    assert.equal(plain.status, 200);
    assert.equal((json(plain.body) as { url: string }).url, '/mcp');
    const prefixed = await send(gate.port, { path: `/${S}/mcp` });
    assert.equal((json(prefixed.body) as { url: string }).url, '/mcp');
    const withBearer = await send(gate.port, { path: '/mcp', headers: { authorization: `Bearer ${S}` } });
    assert.equal((json(withBearer.body) as { headers: Record<string, string> }).headers['authorization'], undefined);
    gate.setMode('secret');
    assert.equal(gate.mode, 'secret');
    assert.equal((await send(gate.port, { path: '/mcp' })).status, 401);
    assert.equal(origin.requests, 3);
    assert.deepEqual(gate.stats, { passed: 3, rejected: 1 });
  });

  it('refuses a secret that is too short or not URL-safe, and a bad origin port', async () => {
    await assert.rejects(startAccessGate({ origin: { host: '127.0.0.1', port: 1 }, secret: 'short' }), RangeError);
    await assert.rejects(startAccessGate({ origin: { host: '127.0.0.1', port: 1 }, secret: 'has/slash/in/it/0123456789' }), RangeError);
    await assert.rejects(startAccessGate({ origin: { host: '127.0.0.1', port: 0 } }), RangeError);
    const g = await newGate({ origin: { host: '127.0.0.1', port: 1 }, secret: 'a-chosen_secret.0123~' });
    assert.equal(g.secretPath(), '/a-chosen_secret.0123~');
  });
});

describe('access gate: headers', () => {
  it('hop-by-hop headers are dropped both ways; Host is the origin’s; X-Forwarded-* added', SLOW, async () => {
    const origin = await startOrigin((req, res) => {
      req.resume();
      res.writeHead(200, [
        ['Content-Type', 'application/json'],
        ['Connection', 'X-Origin-Hop'],
        ['X-Origin-Hop', 'drop me'],
        ['Keep-Alive', 'timeout=77'],
        ['Proxy-Authenticate', 'Basic'],
        ['Set-Cookie', 'a=1'],
        ['Set-Cookie', 'b=2'],
        ['X-End-To-End', 'keep me'],
      ].flat());
      res.end(JSON.stringify({ headers: req.headers }));
    });
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
    const r = await send(gate.port, {
      path: '/h',
      headers: {
        ...bearer(gate),
        host: 'happy-words.trycloudflare.com',
        connection: 'keep-alive, X-Client-Hop',
        'x-client-hop': 'drop me',
        'keep-alive': 'timeout=5',
        'proxy-authorization': 'Basic eA==',
        'proxy-connection': 'keep-alive',
        te: 'trailers',
        upgrade: 'h2c',
        'x-forwarded-proto': 'http',
        'cf-connecting-ip': '203.0.113.9',
        'x-end-to-end': 'keep me',
      },
    });
    assert.equal(r.status, 200);
    const seen = (json(r.body) as { headers: Record<string, string> }).headers;
    for (const h of ['x-client-hop', 'keep-alive', 'proxy-authorization', 'proxy-connection', 'te', 'upgrade', 'authorization']) {
      assert.equal(seen[h], undefined, `${h} must not reach the origin`);
    }
    assert.equal(seen['host'], `127.0.0.1:${origin.port}`);
    assert.equal(seen['x-forwarded-host'], 'happy-words.trycloudflare.com');
    assert.equal(seen['x-forwarded-proto'], 'https');
    assert.equal(seen['cf-connecting-ip'], '203.0.113.9');
    assert.equal(seen['x-end-to-end'], 'keep me');

    assert.equal(r.headers['x-origin-hop'], undefined);
    assert.equal(r.headers['proxy-authenticate'], undefined);
    assert.notEqual(r.headers['keep-alive'], 'timeout=77', 'the origin’s Keep-Alive is not forwarded');
    assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
    assert.equal(r.headers['x-end-to-end'], 'keep me');
  });

  it('hostHeader "public" passes the incoming Host; a Host-checking origin then refuses it', SLOW, async () => {
    const origin = await startOrigin((req, res) => {
      req.resume();
      const ok = req.headers.host === `localhost:${origin.port}` || req.headers.host === `127.0.0.1:${origin.port}`;
      res.writeHead(ok ? 200 : 403).end(req.headers.host);
    });
    const strict = await newGate({ origin: { host: 'localhost', port: origin.port } });
    const loose = await newGate({ origin: { host: 'localhost', port: origin.port }, hostHeader: 'public' });
    const viaOrigin = await send(strict.port, { headers: { ...bearer(strict), host: 'x.trycloudflare.com' } });
    assert.equal(viaOrigin.status, 200);
    assert.equal(viaOrigin.body, `localhost:${origin.port}`);
    const viaPublic = await send(loose.port, { headers: { ...bearer(loose), host: 'x.trycloudflare.com' } });
    assert.equal(viaPublic.status, 403);
    assert.equal(viaPublic.body, 'x.trycloudflare.com');
  });
});

describe('access gate: streaming', () => {
  it('Server-Sent Events arrive one by one: event k before the origin writes event k+1', SLOW, async () => {
    const COUNT = 6;
    const writtenAt: number[] = [];
    const origin = await startOrigin((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.flushHeaders();
      let k = 0;
      const tick = (): void => {
        writtenAt[k] = performance.now();
        res.write(`id: ${k}\ndata: event ${k}\n\n`);
        k++;
        if (k < COUNT) setTimeout(tick, 100);
        else res.end();
      };
      setTimeout(tick, 100);
    });
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
    const arrivedAt: number[] = [];
    const events: string[] = [];
    let headersAt = 0;
    await new Promise<void>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: gate.port, path: `${gate.secretPath()}/events`, agent: false }, (res) => {
          headersAt = performance.now();
          assert.equal(res.headers['content-type'], 'text/event-stream');
          let buf = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            const now = performance.now();
            buf += chunk;
            let sep = buf.indexOf('\n\n');
            while (sep >= 0) {
              events.push(buf.slice(0, sep));
              arrivedAt.push(now);
              buf = buf.slice(sep + 2);
              sep = buf.indexOf('\n\n');
            }
          });
          res.on('end', resolve);
          res.on('error', reject);
        })
        .on('error', reject);
    });
    assert.deepEqual(
      events,
      Array.from({ length: COUNT }, (_, k) => `id: ${k}\ndata: event ${k}`),
    );
    const first = writtenAt[0];
    assert.ok(first !== undefined && headersAt < first, 'the headers arrive before the first event is written');
    for (let k = 0; k + 1 < COUNT; k++) {
      const arrived = arrivedAt[k];
      const nextWritten = writtenAt[k + 1];
      assert.ok(arrived !== undefined && nextWritten !== undefined && arrived < nextWritten, `event ${k} arrived (${arrived}) before event ${k + 1} was written (${nextWritten})`);
    }
  });

  it('a 20 MB upload streams: the origin gets bytes before the client has sent the rest, and all of them', SLOW, async () => {
    const TOTAL = 20 * 1024 * 1024;
    const CHUNK = 64 * 1024;
    const HEAD = 1024 * 1024;
    let received = 0;
    let firstChunkAt = 0;
    let onBytes: (() => void) | undefined;
    const hash = createHash('sha256');
    const origin = await startOrigin((req, res) => {
      req.on('data', (c: Buffer) => {
        firstChunkAt ||= performance.now();
        received += c.length;
        hash.update(c);
        onBytes?.();
      });
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ received, sha256: hash.digest('hex') })));
    });
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
    const sent = createHash('sha256');
    const rssBefore = process.memoryUsage().rss;
    let rssPeak = rssBefore;
    const result = await new Promise<{ received: number; sha256: string; lastWriteAt: number; sawBeforeRest: number }>((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: gate.port, method: 'PUT', path: '/upload', headers: { ...bearer(gate), 'content-length': String(TOTAL), 'content-type': 'application/octet-stream' }, agent: false },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ ...(JSON.parse(body) as { received: number; sha256: string }), lastWriteAt, sawBeforeRest }));
        },
      );
      req.on('error', reject);
      let written = 0;
      let lastWriteAt = 0;
      let sawBeforeRest = 0;
      const block = randomBytes(CHUNK);
      const write = (): void => {
        while (written < TOTAL) {
          if (written === HEAD && sawBeforeRest === 0) {
            // Send nothing more until the origin has seen bytes: a buffering gate would deadlock here.
            if (received > 0) {
              sawBeforeRest = received;
            } else {
              onBytes = () => {
                onBytes = undefined;
                write();
              };
              return;
            }
          }
          const chunk = Buffer.from(block);
          chunk.writeUInt32BE(written, 0);
          sent.update(chunk);
          written += chunk.length;
          rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
          if (!req.write(chunk)) {
            req.once('drain', write);
            return;
          }
        }
        lastWriteAt = performance.now();
        req.end();
      };
      write();
    });
    assert.equal(result.received, TOTAL);
    assert.equal(result.sha256, sent.digest('hex'));
    assert.ok(result.sawBeforeRest > 0 && result.sawBeforeRest <= HEAD, 'the origin had bytes before the client sent the remaining 19 MB');
    assert.ok(firstChunkAt < result.lastWriteAt, 'the origin got the first chunk before the client finished sending');
    // Generous: client, gate and origin share this process; a buffered body alone would be 20 MB.
    assert.ok(rssPeak - rssBefore < 64 * 1024 * 1024, `RSS grew by ${Math.round((rssPeak - rssBefore) / 1048576)} MB`);
  });

  it('a 401 to a large upload never reaches the origin', SLOW, async () => {
    const origin = await startOrigin();
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: gate.port, method: 'POST', path: '/upload', headers: { 'content-length': String(8 * 1024 * 1024) }, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.write(Buffer.alloc(64 * 1024));
    });
    assert.equal(status, 401);
    assert.equal(origin.connections, 0);
  });
});

describe('access gate: WebSocket', () => {
  async function wsOrigin(): Promise<TestOrigin & { wsConnections: number }> {
    const o = Object.assign(await startOrigin(), { wsConnections: 0 });
    const wss = new WebSocketServer({ server: o.server });
    wss.on('connection', (ws) => {
      o.wsConnections++;
      ws.on('message', (m: RawData, isBinary: boolean) => ws.send(isBinary ? m : `echo:${text(m)}`, { binary: isBinary }));
    });
    closers.push(
      () =>
        new Promise<void>((r) => {
          for (const c of wss.clients) c.terminate();
          wss.close(() => r());
        }),
    );
    return o;
  }

  function open(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { headers });
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    });
  }

  function roundTrip(ws: WebSocket, data: string | Buffer): Promise<RawData> {
    return new Promise((resolve, reject) => {
      ws.once('message', resolve);
      ws.once('error', reject);
      ws.send(data);
    });
  }

  it('echo through the gate with the secret path or the Bearer header; without: 401 and the origin sees nothing', SLOW, async () => {
    const origin = await wsOrigin();
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
    const S = secretOf(gate);
    const base = `ws://127.0.0.1:${gate.port}`;

    for (const [url, headers] of [
      [`${base}/nope`, {}],
      [`${base}/${S}x/ws`, {}],
      [`${base}/ws`, { Authorization: `Bearer ${S}x` }],
    ] as const) {
      await assert.rejects(open(url, headers), /Unexpected server response: 401/);
    }
    assert.equal(origin.connections, 0);
    assert.equal(origin.requests, 0);

    const byPath = await open(`${base}/${S}/ws?room=1`);
    assert.equal(text(await roundTrip(byPath, 'hello')), 'echo:hello');
    const big = randomBytes(1024 * 1024);
    const back = await roundTrip(byPath, big);
    assert.ok(Buffer.isBuffer(back) && back.equals(big), '1 MB binary frame round-trips');
    const byBearer = await open(`${base}/ws`, { Authorization: `Bearer ${S}` });
    assert.equal(text(await roundTrip(byBearer, 'hi')), 'echo:hi');
    assert.equal(origin.wsConnections, 2);
    assert.deepEqual(
      origin.seen.map((s) => s.url),
      ['/ws?room=1', '/ws'],
    );
    assert.equal(origin.seen[1]?.headers['authorization'], undefined);
    assert.equal(origin.seen[1]?.headers['host'], `127.0.0.1:${origin.port}`);

    const closed = once<number>((cb) => byPath.once('close', cb));
    byPath.close(1000, 'bye');
    assert.equal(await closed, 1000);
    byBearer.close();
    assert.deepEqual(gate.stats, { passed: 2, rejected: 3 });
  });

  it('rotateSecret closes a WebSocket opened with the old secret; the new secret opens one', SLOW, async () => {
    const origin = await wsOrigin();
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
    const old = secretOf(gate);
    const ws = await open(`ws://127.0.0.1:${gate.port}/${old}/ws`);
    assert.equal(text(await roundTrip(ws, 'x')), 'echo:x');
    const closed = once<number>((cb) => ws.once('close', cb), 10_000, 'the old WebSocket to close');
    ws.on('error', () => undefined);
    const fresh = gate.rotateSecret();
    secretsSeen.add(fresh);
    await closed;
    await assert.rejects(open(`ws://127.0.0.1:${gate.port}/${old}/ws`), /401/);
    const ws2 = await open(`ws://127.0.0.1:${gate.port}/${fresh}/ws`);
    assert.equal(text(await roundTrip(ws2, 'y')), 'echo:y');
    ws2.close();
  });

  it('an origin that is down answers the upgrade with 502', SLOW, async () => {
    const port = await freePort();
    const gate = await newGate({ origin: { host: '127.0.0.1', port } });
    await assert.rejects(open(`ws://127.0.0.1:${gate.port}${gate.secretPath()}/ws`), /Unexpected server response: 502/);
  });
});

describe('access gate: failures', () => {
  it('repeated failures from one client are slowed down; other clients and the secret are not', SLOW, async () => {
    const origin = await startOrigin();
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port }, maxFailuresPerMinute: 3 });
    const attacker = { 'cf-connecting-ip': '203.0.113.66' };
    for (let i = 0; i < 3; i++) assert.equal((await send(gate.port, { path: '/guess', headers: attacker })).status, 401);
    const fourth = await send(gate.port, { path: '/guess', headers: attacker });
    assert.equal(fourth.status, 401);
    assert.ok(fourth.ms >= FAILURE_DELAY_STEP_MS - 5, `the 4th 401 took ${fourth.ms.toFixed(0)} ms`);

    // The 5th is held 500 ms; meanwhile the event loop serves others at once.
    const fifth = send(gate.port, { path: '/guess', headers: attacker });
    const other = await send(gate.port, { path: '/guess', headers: { 'cf-connecting-ip': '198.51.100.77' } });
    const legit = await send(gate.port, { path: `${gate.secretPath()}/ok`, headers: attacker });
    const held = await fifth;
    assert.equal(other.status, 401);
    assert.equal(legit.status, 200, 'the right secret passes even from a throttled client');
    assert.ok(held.ms >= 2 * FAILURE_DELAY_STEP_MS - 5, `the 5th 401 took ${held.ms.toFixed(0)} ms`);
    assert.ok(other.ms < 2 * FAILURE_DELAY_STEP_MS, `another client's first 401 took ${other.ms.toFixed(0)} ms`);
    assert.ok(legit.ms < 2 * FAILURE_DELAY_STEP_MS, `the right secret took ${legit.ms.toFixed(0)} ms`);
    assert.equal(origin.requests, 1);
    assert.ok(logLines.some((l) => l.startsWith('warn') && l.includes('203.0.113.66') && l.includes('delayed')));
  });

  it('a client that gives up on a held 401 leaves no timer behind (close() resolves promptly)', SLOW, async () => {
    const gate = await startAccessGate({ origin: { host: '127.0.0.1', port: 1 }, maxFailuresPerMinute: 1 });
    closers.push(() => gate.close());
    await send(gate.port, { path: '/x' });
    const req = http.get({ host: '127.0.0.1', port: gate.port, path: '/x', agent: false });
    req.on('error', () => undefined);
    await new Promise((r) => setTimeout(r, 50));
    req.destroy();
    const t0 = performance.now();
    await gate.close();
    await gate.close(); // idempotent
    assert.ok(performance.now() - t0 < 1000);
  });

  it('origin down: 502 that names the local server and the fix', SLOW, async () => {
    const port = await freePort();
    const gate = await newGate({ origin: { host: 'localhost', port } });
    const r = await send(gate.port, { path: '/mcp', headers: bearer(gate) });
    assert.equal(r.status, 502);
    assert.equal(json(r.body)['error'], `The local server at http://localhost:${port} is not answering: ECONNREFUSED. Start it, or check the port.`);
    assert.ok(logLines.some((l) => l.startsWith('warn') && l.includes(`http://localhost:${port} is not answering`)));
  });

  it('the client leaves: the origin request is aborted', SLOW, async () => {
    let arrived: (() => void) | undefined;
    let originClosed: ((finished: boolean) => void) | undefined;
    const origin = await startOrigin((req, res) => {
      arrived?.();
      res.on('close', () => originClosed?.(res.writableFinished));
      req.resume(); // never answers
    });
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
    const reached = once<void>((cb) => (arrived = cb));
    const gone = once<boolean>((cb) => (originClosed = cb), 10_000, 'the origin request to close');
    const req = http.request({ host: '127.0.0.1', port: gate.port, method: 'POST', path: `${gate.secretPath()}/slow`, agent: false });
    req.on('error', () => undefined);
    req.write('partial body');
    await reached;
    req.destroy();
    assert.equal(await gone, false, 'the origin saw its request end unfinished');
  });

  it('the origin dies mid-stream: the client connection is destroyed, not ended cleanly', SLOW, async () => {
    const origin = await startOrigin((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '1000' });
      res.write('part of it');
      setTimeout(() => res.socket?.destroy(), 50);
    });
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
    const outcome = await new Promise<{ complete: boolean; ended: boolean; body: string }>((resolve, reject) => {
      setTimeout(() => reject(new Error('the client connection was left open')), 10_000).unref();
      http
        .get({ host: '127.0.0.1', port: gate.port, path: `${gate.secretPath()}/x`, agent: false }, (res) => {
          let body = '';
          let ended = false;
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => (ended = true));
          res.on('error', () => undefined);
          res.on('close', () => resolve({ complete: res.complete, ended, body }));
        })
        .on('error', reject);
    });
    assert.deepEqual(outcome, { complete: false, ended: false, body: 'part of it' });
  });
});

// ------------------------------------------------------------------------------------------------
// The MCP SDK end to end: SDK client -> fake cloudflared's public port -> gate -> SDK server
// ------------------------------------------------------------------------------------------------

/** An MCP origin on the SDK's own Streamable HTTP transport, with its DNS-rebinding protection on. */
async function startMcpOrigin(): Promise<TestOrigin> {
  let port = 0;
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const server = new McpServer({ name: 'origin', version: '1.0.0' });
    server.registerTool('add', { description: 'Adds two numbers', inputSchema: { a: z.number(), b: z.number() } }, ({ a, b }) => ({
      content: [{ type: 'text', text: String(a + b) }],
    }));
    const transport = new StreamableHTTPServerTransport({
      // no sessionIdGenerator: stateless, one server per request
      enableDnsRebindingProtection: true,
      allowedHosts: [`127.0.0.1:${port}`, `localhost:${port}`],
    });
    res.on('close', () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res);
  };
  const o = await startOrigin((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
    });
  });
  port = o.port;
  return o;
}

class FakeCloudflared {
  readonly child: ChildProcess;
  readonly pid: number;
  stderr = '';
  readonly exited: Promise<number | null>;
  private waiters: Array<() => void> = [];

  constructor(args: string[], env: NodeJS.ProcessEnv) {
    this.child = spawn(FAKE_CLOUDFLARED, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    assert.ok(this.child.pid !== undefined, 'the fake cloudflared started');
    this.pid = this.child.pid;
    this.child.stderr?.setEncoding('utf8');
    this.child.stderr?.on('data', (c: string) => {
      this.stderr += c;
      for (const w of this.waiters.splice(0)) w();
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  waitForLine(text: string, ms: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no "${text}" from the fake cloudflared; stderr:\n${this.stderr}`)), ms);
      const check = (): void => {
        if (this.stderr.includes(text)) {
          clearTimeout(t);
          resolve();
        } else this.waiters.push(check);
      };
      check();
    });
  }
}

describe('access gate: the MCP SDK through the fake cloudflared', () => {
  it('initialize, tools/list and tools/call work with the secret path or the Bearer header; without: 401 and the origin sees nothing', SLOW, async () => {
    const work = mkdtempSync(path.join(tmpdir(), 'mcpt-gate-'));
    closers.push(() => Promise.resolve(rmSync(work, { recursive: true, force: true })));
    const config = path.join(work, 'empty.yml');
    writeFileSync(config, '{}\n');
    const origin = await startMcpOrigin();
    const gate = await newGate({ origin: { host: 'localhost', port: origin.port } });
    const S = secretOf(gate);

    const env: NodeJS.ProcessEnv = { FAKE_CLOUDFLARED_NODE: process.execPath, FAKE_CLOUDFLARED_STATE_DIR: work, HOME: work };
    for (const [k, v] of Object.entries(process.env)) {
      if (!/^(TUNNEL_|NO_AUTOUPDATE$|FAKE_CLOUDFLARED_)/i.test(k) && env[k] === undefined) env[k] = v;
    }
    // As the controller should run it with a gate: --url at the gate, no --http-host-header (the
    // gate sees the public host and sets the origin's Host itself).
    const cf = new FakeCloudflared(['tunnel', '--no-autoupdate', '--config', config, '--metrics', '127.0.0.1:0', '--grace-period', '1s', '--url', gate.url], env);
    closers.push(async () => {
      if (cf.child.exitCode === null && cf.child.signalCode === null) cf.child.kill('SIGKILL');
      await cf.exited;
    });
    await cf.waitForLine('Registered tunnel connection', 30_000);
    const state = readFakeState(work, cf.pid);
    assert.ok(state, 'the fake cloudflared wrote its state file');
    const publicHost = new URL(state.url).host;
    const pub = `http://127.0.0.1:${state.publicPort}`;

    const clients: Client[] = [];
    const connect = async (url: string, headers?: Record<string, string>): Promise<Client> => {
      const client = new Client({ name: 'through-the-gate', version: '1.0.0' });
      const transport = new StreamableHTTPClientTransport(new URL(url), headers ? { requestInit: { headers } } : undefined);
      await client.connect(transport);
      clients.push(client);
      return client;
    };
    try {
      const byPath = await connect(`${pub}/${S}/mcp`);
      const byBearer = await connect(`${pub}/mcp`, { Authorization: `Bearer ${S}` });
      for (const c of [byPath, byBearer]) {
        assert.equal(c.getServerVersion()?.name, 'origin');
        const tools = await c.listTools();
        assert.deepEqual(
          tools.tools.map((t) => t.name),
          ['add'],
        );
        const result = (await c.callTool({ name: 'add', arguments: { a: 2, b: 3 } })) as CallToolResult;
        assert.deepEqual(result.content, [{ type: 'text', text: '5' }]);
      }
      const posts = origin.seen.filter((s) => s.method === 'POST');
      assert.ok(posts.length >= 8, `${posts.length} POSTs reached the origin`);
      for (const s of posts) {
        assert.equal(s.url, '/mcp');
        assert.equal(s.headers['host'], `localhost:${origin.port}`, 'the SDK’s Host check passes');
        assert.equal(s.headers['x-forwarded-host'], publicHost);
        assert.equal(s.headers['x-forwarded-proto'], 'https');
        assert.equal(s.headers['authorization'], undefined);
      }

      const before = origin.requests;
      for (const [url, headers] of [
        [`${pub}/mcp`, undefined],
        [`${pub}/${S}x/mcp`, undefined],
        [`${pub}/mcp`, { Authorization: 'Bearer not-the-secret' }],
      ] as const) {
        await assert.rejects(connect(url, headers), (err: unknown) => {
          assert.ok(err instanceof StreamableHTTPError, String(err));
          assert.equal(err.code, 401);
          return true;
        });
      }
      assert.equal(origin.requests, before, 'refused clients never reached the origin');
      const rejected = gate.stats.rejected;
      assert.ok(rejected >= 3);

      // The SDK's DNS-rebinding protection is really on: a gate passing the public Host gets 403.
      const loose = await newGate({ origin: { host: 'localhost', port: origin.port }, hostHeader: 'public' });
      const r = await send(loose.port, {
        method: 'POST',
        path: `${loose.secretPath()}/mcp`,
        headers: { host: publicHost, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }),
      });
      assert.equal(r.status, 403);
      assert.match(r.body, /Invalid Host header/);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }

    cf.child.kill('SIGTERM');
    await cf.exited;
    assert.ok(await waitGone(cf.pid, 10_000), `fake cloudflared PID ${cf.pid} is gone`);
  });
});

// ------------------------------------------------------------------------------------------------
// Lifecycle and logs
// ------------------------------------------------------------------------------------------------

describe('access gate: lifecycle', () => {
  it('close() leaves no handle: a process with open SSE, WebSocket, keep-alive and a held 401 exits by itself', SLOW, async () => {
    const fixture = path.join(REPO, 'test', 'fixtures', 'gateLifecycle.ts');
    const child = spawn(process.execPath, ['--import', 'tsx', fixture], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let closedAt = 0;
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (c: string) => {
      out += c;
      if (!closedAt && out.includes('closed')) closedAt = performance.now();
    });
    child.stderr.on('data', (c: string) => (err += c));
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => child.once('exit', (c, s) => r([c, s])));
    clearTimeout(killer);
    const exitedAt = performance.now();
    assert.equal(signal, null, `the fixture had to be killed; stdout: ${out} stderr: ${err}`);
    assert.equal(code, 0, err);
    assert.ok(closedAt > 0, 'the fixture closed everything');
    assert.ok(exitedAt - closedAt < 3000, `exited ${(exitedAt - closedAt).toFixed(0)} ms after closing`);
  });

  it('close() ends open streams, keep-alive connections and upgraded sockets', SLOW, async () => {
    const origin = await startOrigin((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: 1\n\n');
    });
    const wss = new WebSocketServer({ noServer: true });
    origin.server.on('upgrade', (req: http.IncomingMessage, socket: Socket, head: Buffer) => wss.handleUpgrade(req, socket, head, () => undefined));
    closers.push(() => new Promise<void>((r) => wss.close(() => r())));
    const gate = await startAccessGate({ origin: { host: '127.0.0.1', port: origin.port }, mode: 'open' });
    closers.push(() => gate.close());
    let streamOpen: (() => void) | undefined;
    const opened = once<void>((cb) => (streamOpen = cb), 10_000, 'the stream to open');
    const streamClosed = new Promise<void>((resolve) => {
      http.get({ host: '127.0.0.1', port: gate.port, path: '/s', agent: false }, (res) => {
        res.once('data', () => streamOpen?.());
        res.on('error', () => undefined);
        res.on('close', resolve);
      });
    });
    await opened;
    const ws = new WebSocket(`ws://127.0.0.1:${gate.port}/ws`);
    ws.on('error', () => undefined);
    await once<void>((cb) => ws.once('open', () => cb()));
    const wsClosed = once<number>((cb) => ws.once('close', cb));
    await gate.close();
    await streamClosed;
    await wsClosed;
    wss.close();
  });
});

describe('access gate: logs', () => {
  it('no log line ever contains a secret', () => {
    assert.ok(logLines.length > 20, `${logLines.length} log lines`);
    assert.ok(logLines.some((l) => l.includes('refused')));
    assert.ok(secretsSeen.size >= 10);
    for (const line of logLines) {
      for (const s of secretsSeen) assert.ok(!line.includes(s), `a secret leaked into: ${line}`);
    }
  });
});

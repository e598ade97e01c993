/**
 * The access gate under the findings of an outside security audit: throttling must never lock the
 * owner out, a connection must not live forever on a partial request head nor the gate take
 * connections without bound, `Connection` must not un-frame a message (request smuggling), and
 * the secret must not reach the origin in `Referer` or `Origin`. Raw sockets where Node's own
 * client would normalize what is sent.
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { startAccessGate, type AccessGate, type AccessGateOptions } from '../../src/core/gate/accessGate';
import { closers, logLines, newGate, secretOf, secretsSeen } from '../support/gates';
import { sleep } from '../support/wait';

// ------------------------------------------------------------------------------------------------
// Harness
// ------------------------------------------------------------------------------------------------

const SLOW = { timeout: 120_000 };

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

interface TestOrigin {
  port: number;
  /** TCP connections it accepted. */
  connections: number;
  /** Every request it parsed (upgrades included), in order; `body` is filled in as it arrives. */
  seen: Seen[];
  server: http.Server;
}

/** An origin that records every request and its body, then answers 200 `ok`. */
async function startOrigin(): Promise<TestOrigin> {
  const sockets = new Set<Socket>();
  const o: TestOrigin = {
    port: 0,
    connections: 0,
    seen: [],
    server: http.createServer((req, res) => {
      const s: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: '' };
      o.seen.push(s);
      req.setEncoding('utf8');
      req.on('data', (c: string) => (s.body += c));
      req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'));
    }),
  };
  o.server.on('connection', (s: Socket) => {
    o.connections++;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  o.server.on('upgrade', (req: http.IncomingMessage, socket: Socket) => {
    o.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: '' });
    socket.destroy();
  });
  await new Promise<void>((r) => o.server.listen(0, '127.0.0.1', r));
  o.port = (o.server.address() as AddressInfo).port;
  closers.push(
    () =>
      new Promise<void>((r) => {
        o.server.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  );
  return o;
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  ms: number;
}

function send(port: number, opts: { method?: string; path?: string; headers?: http.OutgoingHttpHeaders; body?: string } = {}): Promise<Reply> {
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

/** A raw client connection: every byte it received, and whether (and when) the peer closed it. */
interface Raw {
  socket: Socket;
  data: string;
  closed: boolean;
  closedAt: number;
  /** Resolves once the peer closed the connection (or it failed). */
  gone: Promise<void>;
}

async function rawConnect(port: number): Promise<Raw> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setEncoding('latin1');
  let markGone: () => void = () => undefined;
  const r: Raw = { socket, data: '', closed: false, closedAt: 0, gone: new Promise<void>((res) => (markGone = res)) };
  socket.on('data', (c: string) => (r.data += c));
  socket.on('error', () => undefined);
  socket.on('close', () => {
    r.closed = true;
    r.closedAt = performance.now();
    markGone();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  closers.push(() => void socket.destroy());
  return r;
}

/** Polls `cond` every 10 ms; rejects with `what` after `ms`. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}


/** The status code of the first response in `data`, or 0. */
function statusOf(data: string): number {
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(data);
  return m ? Number(m[1]) : 0;
}

/** Head (lower-cased names) and body of one raw response; `undefined` until its head is complete. */
function parseResponse(data: string): { status: number; headers: Map<string, string>; body: string } | undefined {
  const end = data.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const [statusLine = '', ...lines] = data.slice(0, end).split('\r\n');
  const headers = new Map<string, string>();
  for (const l of lines) {
    const colon = l.indexOf(':');
    headers.set(l.slice(0, colon).trim().toLowerCase(), l.slice(colon + 1).trim());
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: data.slice(end + 4) };
}

// ------------------------------------------------------------------------------------------------
// 1. Throttling never locks out the owner
// ------------------------------------------------------------------------------------------------

describe('access gate hardening: throttling', () => {
  it('1500 delayed 401s in flight from one client key: the right secret from that key still gets 200 at once; the bad ones beyond the cap get 429', SLOW, async () => {
    const origin = await startOrigin();
    // maxConnections well above the flood, so only the pending-401 cap is exercised here.
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port }, maxFailuresPerMinute: 1, maxConnections: 4000 });
    const BAD = 1500;
    const bad: Raw[] = [];
    const t0 = performance.now();
    // No CF-Connecting-IP: every one is 127.0.0.1, the key the owner's requests have too.
    for (let i = 0; i < BAD; i++) {
      const r = await rawConnect(gate.port);
      r.socket.write(`GET /guess-${i} HTTP/1.1\r\nHost: x.trycloudflare.com\r\n\r\n`);
      bad.push(r);
    }
    const count = (status: number): number => bad.filter((r) => statusOf(r.data) === status).length;
    // The pending cap (at most 1000 held 401s) is full once the latest guesses get 429.
    await until(() => count(429) >= 300, 30_000, '429s for the guesses beyond the pending cap');
    const pending = bad.filter((r) => r.data === '').length;
    assert.ok(performance.now() - t0 < 4500, `the flood took ${(performance.now() - t0).toFixed(0)} ms to set up: held 401s may have expired`);
    assert.ok(pending >= 900, `only ${pending} guesses are still held: the pending cap is not full`);

    const viaPath = await send(gate.port, { path: `${gate.secretPath()}/owner`, headers: { host: 'x.trycloudflare.com' } });
    const viaBearer = await send(gate.port, { path: '/owner', headers: { host: 'x.trycloudflare.com', authorization: `Bearer ${secretOf(gate)}` } });
    assert.equal(viaPath.status, 200, `the secret path from a throttled key got ${viaPath.status} ${viaPath.body}`);
    assert.equal(viaBearer.status, 200, `the Bearer secret from a throttled key got ${viaBearer.status} ${viaBearer.body}`);
    assert.ok(viaPath.ms < 1000 && viaBearer.ms < 1000, `the right secret took ${viaPath.ms.toFixed(0)} / ${viaBearer.ms.toFixed(0)} ms`);
    assert.ok(
      bad.filter((r) => r.data === '').length >= 800,
      'the owner was answered while the held 401s were still held (this is not just the flood draining)',
    );
    assert.deepEqual(
      origin.seen.map((s) => s.url),
      ['/owner', '/owner'],
    );

    // Every guess is answered 401 (held) or 429 (beyond the cap): none reaches the origin.
    await until(() => bad.every((r) => statusOf(r.data) !== 0), 30_000, 'every guess to be answered');
    assert.equal(count(401) + count(429), BAD);
    assert.ok(count(429) >= 300 && count(401) >= 900, `${count(401)} × 401, ${count(429)} × 429`);
    for (const r of bad) r.socket.destroy();
  });

  it('a WebSocket upgrade with the secret passes while the pending cap is full', SLOW, async () => {
    const origin = await startOrigin();
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port }, maxFailuresPerMinute: 1, maxConnections: 3000 });
    const bad: Raw[] = [];
    for (let i = 0; i < 1200; i++) {
      const r = await rawConnect(gate.port);
      r.socket.write(`GET /guess HTTP/1.1\r\nHost: x\r\n\r\n`);
      bad.push(r);
    }
    await until(() => bad.filter((r) => statusOf(r.data) === 429).length >= 100, 30_000, 'the pending cap to fill');
    const ws = await rawConnect(gate.port);
    ws.socket.write(`GET ${gate.secretPath()}/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
    // The test origin records the upgrade and drops it (the gate then answers 502).
    await until(() => origin.seen.length === 1 || [401, 429].includes(statusOf(ws.data)), 5000, 'the upgrade to reach the origin or be refused');
    assert.equal(origin.seen[0]?.url, '/ws', `the upgrade with the secret was answered ${ws.data.split('\r\n')[0]}`);
    for (const r of bad) r.socket.destroy();
  });
});

// ------------------------------------------------------------------------------------------------
// 2. Header timeout and connection cap
// ------------------------------------------------------------------------------------------------

describe('access gate hardening: connections', () => {
  it('half a request head (or nothing at all) is closed after headersTimeoutMs; the origin sees nothing', SLOW, async () => {
    const origin = await startOrigin();
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port }, headersTimeoutMs: 300 });
    const t0 = performance.now();
    const half = await rawConnect(gate.port);
    // The secret path, even: the head never completes, so it is never examined.
    half.socket.write(`GET ${gate.secretPath()}/mcp HTTP/1.1\r\nHost: x.trycloudflare.com\r\nAccept: text/event-`);
    const silent = await rawConnect(gate.port);
    const trickle = await rawConnect(gate.port);
    trickle.socket.write('GET / HTTP/1.1\r\n');
    const dribble = setInterval(() => trickle.socket.write('X-A: b\r\n'), 50);
    closers.push(() => clearInterval(dribble));
    const deadline = sleep(3000);
    await Promise.race([Promise.all([half.gone, silent.gone, trickle.gone]), deadline]);
    clearInterval(dribble);
    assert.ok(half.closed, 'a half-sent request head is still open 3 s later');
    assert.ok(silent.closed, 'a connection that sent nothing is still open 3 s later');
    assert.ok(trickle.closed, 'a head trickled one header at a time is still open 3 s later');
    for (const r of [half, silent, trickle]) {
      const ms = r.closedAt - t0;
      assert.ok(ms >= 250 && ms < 2500, `closed after ${ms.toFixed(0)} ms`);
    }
    assert.equal(statusOf(half.data), 408);
    assert.equal(origin.connections, 0);
    assert.equal(origin.seen.length, 0);
  });

  it('the headers timeout cuts no stream: a quiet SSE response, a slow upload and an idle keep-alive connection outlive it', SLOW, async () => {
    const origin = await startOrigin();
    let sse: http.ServerResponse | undefined;
    origin.server.removeAllListeners('request');
    origin.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      const s: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: '' };
      origin.seen.push(s);
      if (req.url === '/sse') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: 1\n\n');
        sse = res;
        return;
      }
      req.setEncoding('utf8');
      req.on('data', (c: string) => (s.body += c));
      req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end(`got ${s.body.length}`));
    });
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port }, headersTimeoutMs: 200 });
    const sp = gate.secretPath();

    const stream = await rawConnect(gate.port);
    stream.socket.write(`GET ${sp}/sse HTTP/1.1\r\nHost: x\r\n\r\n`);
    await until(() => stream.data.includes('data: 1'), 5000, 'the first event');

    const upload = await rawConnect(gate.port);
    upload.socket.write(`POST ${sp}/up HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n`);
    for (let i = 0; i < 8; i++) {
      await sleep(150); // 1.2 s in all, 6 headers timeouts
      upload.socket.write('u');
    }
    await until(() => upload.data.includes('got 8'), 5000, 'the slow upload to be answered');
    assert.equal(statusOf(upload.data), 200);

    // The upload's connection sat idle since: a second request on it still works.
    await sleep(600);
    assert.ok(!upload.closed, 'an idle keep-alive connection was closed by the headers timeout');
    upload.data = '';
    upload.socket.write(`POST ${sp}/again HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok`);
    await until(() => upload.data.includes('got 2'), 5000, 'the second request on the kept-alive connection');

    assert.ok(!stream.closed, 'a quiet SSE stream was cut');
    sse?.write('data: 2\n\n');
    await until(() => stream.data.includes('data: 2'), 5000, 'the second event, 2 s later');
    sse?.end();
  });

  it('beyond maxConnections, new connections are closed at once; the cap holds, and once they end a request works', SLOW, async () => {
    const origin = await startOrigin();
    const CAP = 20;
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port }, maxConnections: CAP });
    const conns: Raw[] = [];
    for (let i = 0; i < CAP + 10; i++) conns.push(await rawConnect(gate.port));
    await until(() => conns.filter((c) => c.closed).length >= 10, 3000, 'the gate to close the 10 connections beyond its cap').catch(() => undefined);
    await sleep(300); // any more the gate would close
    const closed = conns.filter((c) => c.closed);
    assert.equal(closed.length, 10, `${closed.length} of ${CAP + 10} idle connections were closed by the gate`);
    assert.deepEqual(
      conns.slice(0, CAP).map((c) => c.closed),
      Array<boolean>(CAP).fill(false),
      'the first ones, within the cap, stay open',
    );
    // At the cap, a request on a new connection is refused without reaching the origin...
    await assert.rejects(send(gate.port, { path: `${gate.secretPath()}/x` }));
    assert.equal(origin.seen.length, 0);
    // ...and works again once the idle ones are gone.
    for (const c of conns) c.socket.destroy();
    // (The gate sees them end a moment later: retry until it accepts again.)
    let r: Reply | undefined;
    const deadline = performance.now() + 5000;
    while (r === undefined && performance.now() < deadline) {
      r = await send(gate.port, { path: `${gate.secretPath()}/x` }).catch(() => undefined);
      if (r === undefined) await sleep(20);
    }
    assert.equal(r?.status, 200, 'no request passed within 5 s of the idle connections ending');
    assert.ok(logLines.some((l) => l.startsWith('warn') && l.includes(`${CAP} connections are open`)));
  });

  it('refuses a bad headersTimeoutMs or maxConnections', async () => {
    // A gate that starts anyway is closed, so a failure here cannot keep the file from ending.
    const start = (o: Partial<AccessGateOptions>): Promise<AccessGate> =>
      startAccessGate({ origin: { host: '127.0.0.1', port: 1 }, ...o }).then((g) => {
        closers.push(() => g.close());
        return g;
      });
    await assert.rejects(start({ headersTimeoutMs: 0 }), RangeError);
    await assert.rejects(start({ maxConnections: 0 }), RangeError);
    await assert.rejects(start({ maxConnections: 1.5 }), RangeError);
  });
});

// ------------------------------------------------------------------------------------------------
// 3. `Connection` cannot un-frame a message
// ------------------------------------------------------------------------------------------------

describe('access gate hardening: framing', () => {
  // A body that would be a second request, one that skipped the gate, if it lost its framing.
  const SMUGGLED = 'GET /smuggled HTTP/1.1\r\nHost: evil.example\r\nX-Forwarded-Proto: http\r\n\r\n';

  async function exchange(gate: AccessGate, head: string, body: string): Promise<{ status: number }> {
    const c = await rawConnect(gate.port);
    c.socket.write(head + body);
    await until(() => parseResponse(c.data) !== undefined, 5000, 'the response');
    // Room for a smuggled second request to reach the origin, were there one.
    await sleep(200);
    c.socket.destroy();
    return { status: parseResponse(c.data)?.status ?? 0 };
  }

  for (const method of ['GET', 'POST']) {
    for (const connection of ['content-length', 'Keep-Alive, Content-Length, Host']) {
      it(`${method} with "Connection: ${connection}" and a Content-Length body: the origin sees one request, the whole body, the gate's headers`, SLOW, async () => {
        const origin = await startOrigin();
        const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
        const head =
          `${method} ${gate.secretPath()}/first HTTP/1.1\r\nHost: x.trycloudflare.com\r\nConnection: ${connection}\r\n` +
          `Content-Length: ${SMUGGLED.length}\r\n\r\n`;
        const r = await exchange(gate, head, SMUGGLED);
        assert.equal(r.status, 200);
        assert.deepEqual(
          origin.seen.map((s) => `${s.method} ${s.url}`),
          [`${method} /first`],
          'the origin saw exactly one request',
        );
        const seen = origin.seen[0];
        assert.equal(seen?.body, SMUGGLED);
        assert.equal(seen?.headers['content-length'], String(SMUGGLED.length));
        assert.equal(seen?.headers['host'], `127.0.0.1:${origin.port}`);
        assert.equal(seen?.headers['x-forwarded-host'], 'x.trycloudflare.com');
        assert.equal(seen?.headers['x-forwarded-proto'], 'https');
      });
    }
    it(`${method} with "Connection: transfer-encoding" and a chunked body: the origin sees one request, the whole body, the gate's headers`, SLOW, async () => {
      const origin = await startOrigin();
      const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
      const head = `${method} ${gate.secretPath()}/first HTTP/1.1\r\nHost: x.trycloudflare.com\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n`;
      const half = Math.floor(SMUGGLED.length / 2);
      const chunks = [SMUGGLED.slice(0, half), SMUGGLED.slice(half)].map((c) => `${c.length.toString(16)}\r\n${c}\r\n`).join('') + '0\r\n\r\n';
      const r = await exchange(gate, head, chunks);
      assert.equal(r.status, 200);
      assert.deepEqual(
        origin.seen.map((s) => `${s.method} ${s.url}`),
        [`${method} /first`],
      );
      assert.equal(origin.seen[0]?.body, SMUGGLED);
      assert.equal(origin.seen[0]?.headers['transfer-encoding'], 'chunked');
      assert.equal(origin.seen[0]?.headers['host'], `127.0.0.1:${origin.port}`);
      assert.equal(origin.seen[0]?.headers['x-forwarded-proto'], 'https');
    });
  }

  it('a response with "Connection: content-length" keeps its Content-Length to the client; other named fields are still dropped', SLOW, async () => {
    // A raw origin, so nothing normalizes what it answers.
    const body = 'hello world';
    const rawOrigin = net.createServer((s) => {
      let got = '';
      s.setEncoding('latin1');
      s.on('error', () => undefined);
      s.on('data', (c: string) => {
        got += c;
        while (got.includes('\r\n\r\n')) {
          got = got.slice(got.indexOf('\r\n\r\n') + 4);
          s.write(
            `HTTP/1.1 200 OK\r\nConnection: content-length, x-origin-hop\r\nX-Origin-Hop: drop me\r\nContent-Type: text/plain\r\n` +
              `Content-Length: ${body.length}\r\n\r\n${body}`,
          );
        }
      });
    });
    await new Promise<void>((r) => rawOrigin.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise<void>((r) => rawOrigin.close(() => r())));
    const gate = await newGate({ origin: { host: '127.0.0.1', port: (rawOrigin.address() as AddressInfo).port } });
    const c = await rawConnect(gate.port);
    c.socket.write(`GET /r HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${secretOf(gate)}\r\n\r\n`);
    await until(() => (parseResponse(c.data)?.body.length ?? 0) >= body.length, 5000, 'the response body');
    const res = parseResponse(c.data);
    assert.equal(res?.status, 200);
    assert.equal(res?.headers.get('content-length'), String(body.length), `the response head was: ${c.data.split('\r\n\r\n')[0]}`);
    assert.equal(res?.headers.get('transfer-encoding'), undefined);
    assert.equal(res?.headers.get('x-origin-hop'), undefined);
    assert.equal(res?.body, body);
    c.socket.destroy();
    rawOrigin.close();
  });
});

// ------------------------------------------------------------------------------------------------
// 4. The secret never reaches the origin in Referer or Origin
// ------------------------------------------------------------------------------------------------

describe('access gate hardening: Referer and Origin', () => {
  it('the secret segment is stripped from Referer and Origin (current and rotated-out secrets); elsewhere in it, the field is dropped', SLOW, async () => {
    const origin = await startOrigin();
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
    const host = 'https://happy-words.trycloudflare.com';
    const fwd = async (headers: Record<string, string>, via: 'path' | 'bearer' = 'path'): Promise<http.IncomingHttpHeaders> => {
      const before = origin.seen.length;
      const r = await send(gate.port, via === 'path' ? { path: `${gate.secretPath()}/api`, headers } : { path: '/api', headers: { ...headers, authorization: `Bearer ${secretOf(gate)}` } });
      assert.equal(r.status, 200);
      assert.equal(origin.seen.length, before + 1);
      return origin.seen[origin.seen.length - 1]?.headers ?? {};
    };
    let s = secretOf(gate);
    assert.equal((await fwd({ referer: `${host}/${s}/app?tab=1#x` }))['referer'], `${host}/app?tab=1#x`);
    assert.equal((await fwd({ referer: `${host}/${s}` }))['referer'], `${host}/`);
    assert.equal((await fwd({ referer: `${host}/${s}?q=1` }, 'bearer'))['referer'], `${host}/?q=1`);
    assert.equal((await fwd({ origin: `${host}/${s}/odd` }))['origin'], `${host}/odd`);
    // Nothing to strip: unchanged.
    assert.equal((await fwd({ referer: `${host}/app`, origin: host }))['referer'], `${host}/app`);
    assert.equal((await fwd({ origin: host }))['origin'], host);
    assert.equal((await fwd({ referer: `${host}/${s}x/app` }))['referer'], undefined, 'a near miss that contains the secret is dropped');
    // The secret anywhere else: the field does not reach the origin at all.
    assert.equal((await fwd({ referer: `${host}/app?next=/${s}/x` }))['referer'], undefined);
    assert.equal((await fwd({ origin: `${host}, ${host}/${s}` }))['origin'], undefined);

    // After a rotation: the old secret (still in a browser's history) is stripped too.
    const old = s;
    gate.rotateSecret();
    s = secretOf(gate);
    assert.equal((await fwd({ referer: `${host}/${old}/app` }))['referer'], `${host}/app`);
    assert.equal((await fwd({ referer: `${host}/${s}/app` }, 'bearer'))['referer'], `${host}/app`);

    // And on an upgrade.
    const ws = await rawConnect(gate.port);
    ws.socket.write(`GET ${gate.secretPath()}/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nOrigin: ${host}/${s}\r\nReferer: ${host}/${s}/page\r\n\r\n`);
    await until(() => origin.seen.some((x) => x.url === '/ws'), 5000, 'the upgrade');
    const up = origin.seen.find((x) => x.url === '/ws')?.headers ?? {};
    assert.equal(up['origin'], `${host}/`);
    assert.equal(up['referer'], `${host}/page`);

    for (const seen of origin.seen) {
      for (const secret of secretsSeen) assert.ok(!JSON.stringify(seen.headers).includes(secret), `a secret reached the origin: ${JSON.stringify(seen.headers)}`);
    }
  });

  it('open mode: a secret-path Referer is stripped too', SLOW, async () => {
    const origin = await startOrigin();
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port }, mode: 'open' });
    const r = await send(gate.port, { path: '/api', headers: { referer: `https://h.trycloudflare.com${gate.secretPath()}/app` } });
    assert.equal(r.status, 200);
    assert.equal(origin.seen[0]?.headers['referer'], 'https://h.trycloudflare.com/app');
  });
});

describe('access gate hardening: logs', () => {
  it('no log line ever contains a secret', () => {
    assert.ok(logLines.length > 10, `${logLines.length} log lines`);
    for (const line of logLines) {
      for (const s of secretsSeen) assert.ok(!line.includes(s), `a secret leaked into: ${line}`);
    }
  });
});

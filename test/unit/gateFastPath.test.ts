/**
 * The gate's fast path: its response reader (heads, framing, chunked bodies split anywhere), and
 * the gate over it against raw origins: pipelined requests answered in order over one origin
 * connection, a slow origin, a half-closed (close-delimited) origin, an origin that closed its idle
 * keep-alive connection, an answer cut short, and bad response heads → 502 naming the cause.
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { describe, it } from 'node:test';
import { BodyReader, framingOf, readHead, ResponseHeadError } from '../../src/core/gate/responseReader';
import { closers, logLines, newGate, secretOf, secretsSeen } from '../support/gates';

const head = (s: string) => Buffer.from(s, 'latin1');

describe('response reader', () => {
  it('reads a head, waits for an incomplete one, keeps the fields in order', () => {
    assert.equal(readHead(head('HTTP/1.1 200 OK\r\nA: 1\r\n')), undefined);
    const r = readHead(head('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nbody'));
    assert.ok(r);
    assert.equal(r.head.status, 200);
    assert.equal(r.head.reason, 'OK');
    assert.deepEqual(r.head.raw, ['Content-Type', 'text/plain', 'Set-Cookie', 'a=1', 'Set-Cookie', 'b=2']);
    assert.equal(r.size, Buffer.byteLength('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n'));
    assert.equal(readHead(head('HTTP/1.0 204\r\n\r\n'))?.http10, true);
  });

  it('refuses what a lenient reader would guess at, naming it', () => {
    const bad: Array<[string, RegExp]> = [
      ['HELLO WORLD\r\n\r\n', /did not answer with HTTP/],
      ['SSH-2.0-OpenSSH', /did not answer with HTTP/],
      ['HTTP/1.1 2000 OK\r\n\r\n', /status line/],
      ['HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n', /obs-fold/],
      ['HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n', /field name/],
      ['HTTP/1.1 200 OK\r\nA: x\ry\r\n\r\n', /bare CR/],
    ];
    for (const [text, why] of bad) assert.throws(() => readHead(head(text)), (e: unknown) => e instanceof ResponseHeadError && why.test(e.message), text);
    assert.throws(() => readHead(Buffer.alloc(70 * 1024, 'HTTP/1.1 200 OK\r\nA: '.padEnd(70 * 1024, 'x'))), /over 64 KiB/);
  });

  it('frames bodies by RFC 9112 §6.3 and refuses contradictions', () => {
    const h = (status: number, ...raw: string[]) => ({ status, reason: '', raw, lower: raw.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase()) });
    assert.deepEqual(framingOf(h(200, 'Content-Length', '5'), 'GET'), { kind: 'length', length: 5 });
    assert.deepEqual(framingOf(h(200, 'Content-Length', '5'), 'HEAD'), { kind: 'none' });
    assert.deepEqual(framingOf(h(204), 'GET'), { kind: 'none' });
    assert.deepEqual(framingOf(h(304, 'Content-Length', '9'), 'GET'), { kind: 'none' });
    assert.deepEqual(framingOf(h(200, 'Content-Length', '0'), 'GET'), { kind: 'none' });
    assert.deepEqual(framingOf(h(200, 'Transfer-Encoding', 'gzip, chunked'), 'GET'), { kind: 'chunked' });
    assert.deepEqual(framingOf(h(200, 'Transfer-Encoding', 'gzip'), 'GET'), { kind: 'close' });
    assert.deepEqual(framingOf(h(200), 'GET'), { kind: 'close' });
    assert.deepEqual(framingOf(h(200, 'Content-Length', '5', 'Content-Length', '5'), 'GET'), { kind: 'length', length: 5 });
    assert.throws(() => framingOf(h(200, 'Content-Length', '5', 'Content-Length', '6'), 'GET'), /two different Content-Length/);
    assert.throws(() => framingOf(h(200, 'Content-Length', '5, 6'), 'GET'), /two different Content-Length/);
    assert.throws(() => framingOf(h(200, 'Content-Length', '-1'), 'GET'), /not a number/);
    assert.throws(() => framingOf(h(200, 'Content-Length', '5', 'Transfer-Encoding', 'chunked'), 'GET'), /both Content-Length and Transfer-Encoding/);
  });

  it('decodes a chunked body split at every byte, with extensions and trailers, and hands back what follows', () => {
    const wire = '5;ext=1\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nTrailer: x\r\n\r\nHTTP/1.1 200';
    for (let cut = 1; cut < wire.length; cut++) {
      let got = '';
      const r = new BodyReader({ kind: 'chunked' }, (d) => (got += d.toString('latin1')));
      assert.equal(r.push(head(wire.slice(0, cut))) === undefined || cut >= wire.length - 'HTTP/1.1 200'.length, true);
      const rest = r.done ? undefined : r.push(head(wire.slice(cut)));
      assert.equal(got, 'hello world!');
      assert.equal(r.done, true);
      if (rest !== undefined) assert.equal(rest.toString('latin1'), 'HTTP/1.1 200');
    }
    const bad = new BodyReader({ kind: 'chunked' }, () => undefined);
    assert.throws(() => bad.push(head('zz\r\n')), /not hex/);
    const long = new BodyReader({ kind: 'chunked' }, () => undefined);
    assert.throws(() => long.push(head('2\r\nabc\r\n')), /longer than its size/);
  });

  it('a length body stops at its length; a close-delimited one ends with the connection', () => {
    let got = '';
    const r = new BodyReader({ kind: 'length', length: 3 }, (d) => (got += d.toString()));
    assert.equal(r.push(head('ab')), undefined);
    assert.equal(r.push(head('cNEXT'))?.toString(), 'NEXT');
    assert.equal(got, 'abc');
    const c = new BodyReader({ kind: 'close' }, () => undefined);
    assert.equal(c.push(head('x')), undefined);
    assert.equal(c.end(), true);
    const short = new BodyReader({ kind: 'length', length: 9 }, () => undefined);
    short.push(head('x'));
    assert.equal(short.end(), false);
  });
});

// ------------------------------------------------------------------------------------------------
// Through the gate, against raw origins
// ------------------------------------------------------------------------------------------------

/** A TCP origin that hands each connection to `onConnection`; counts connections. */
async function rawOrigin(onConnection: (s: Socket) => void): Promise<{ port: number; connections: () => number }> {
  let n = 0;
  const sockets = new Set<Socket>();
  const server = net.createServer((s) => {
    n++;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    onConnection(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  closers.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return { port: (server.address() as AddressInfo).port, connections: () => n };
}

/** Sends `text` on one connection and collects what comes back until `waitFor` matches (or the gate closes it). */
function exchange(port: number, text: string, o: { waitFor?: RegExp; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      c.destroy();
      if (o.waitFor) reject(new Error(`timed out; got ${JSON.stringify(got)}`));
      else resolve(got);
    }, o.timeoutMs ?? 5000);
    c.on('data', (d) => {
      got += d.toString('latin1');
      if (o.waitFor?.test(got)) {
        clearTimeout(timer);
        c.destroy();
        resolve(got);
      }
    });
    c.on('error', () => undefined);
    c.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    c.write(text);
  });
}

describe('the gate over its fast path', () => {
  it('answers pipelined requests in order over one origin connection, the slow first one too', async () => {
    const server = http.createServer((req, res) => {
      const delay = req.url === '/a' ? 80 : 0;
      setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end(`body-of-${req.url}`), delay);
    });
    let conns = 0;
    server.on('connection', () => conns++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    closers.push(() => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))));
    const gate = await newGate({ origin: { host: '127.0.0.1', port: (server.address() as AddressInfo).port } });
    const s = secretOf(gate);
    const req = (p: string) => `GET /${s}${p} HTTP/1.1\r\nHost: x\r\n\r\n`;
    const got = await exchange(gate.port, req('/a') + req('/b') + req('/c'), { waitFor: /body-of-\/c/ });
    const order = [...got.matchAll(/body-of-(\/[abc])/g)].map((m) => m[1]);
    assert.deepEqual(order, ['/a', '/b', '/c']);
    assert.equal(conns, 1, 'one origin connection for the one client connection');
  });

  it('relays a slow origin as it comes, and a half-closed one (no length, then FIN) whole', async () => {
    const slow = await rawOrigin((sock) =>
      sock.once('data', () => {
        sock.write('HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Slow: 1\r\n\r\nab');
        setTimeout(() => sock.write('cd'), 60);
        setTimeout(() => sock.write('ef'), 120);
      }),
    );
    const gate = await newGate({ origin: { host: '127.0.0.1', port: slow.port } });
    const got = await exchange(gate.port, `GET /${secretOf(gate)}/x HTTP/1.1\r\nHost: x\r\n\r\n`, { waitFor: /abcdef/ });
    assert.match(got, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(got, /\r\nContent-Length: 6\r\n/i);
    assert.match(got, /\r\nX-Slow: 1\r\n/);

    const half = await rawOrigin((sock) =>
      sock.once('data', () => {
        sock.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-');
        setTimeout(() => sock.end('the-end'), 40);
      }),
    );
    const gate2 = await newGate({ origin: { host: '127.0.0.1', port: half.port } });
    const res = await fetch(`http://127.0.0.1:${gate2.port}/${secretOf(gate2)}/x`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'until-the-end');
  });

  it('sends a request again on a new connection when the origin had closed the idle one', async () => {
    // Answers one request per connection, then closes it (as a keep-alive timeout would), without saying so.
    const origin = await rawOrigin((sock) =>
      sock.once('data', () => {
        sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        setTimeout(() => sock.destroy(), 20);
      }),
    );
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    closers.push(() => agent.destroy());
    const get = () =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: gate.port, path: `/${secretOf(gate)}/x`, agent }, (r) => {
            let body = '';
            r.on('data', (d: Buffer) => (body += d.toString()));
            r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
          })
          .on('error', reject);
      });
    assert.deepEqual(await get(), { status: 200, body: 'ok' });
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(await get(), { status: 200, body: 'ok' });
    assert.equal(origin.connections(), 2);
  });

  it('cuts the client response when the origin dies mid-body', async () => {
    const origin = await rawOrigin((sock) =>
      sock.once('data', () => {
        sock.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-some');
        setTimeout(() => sock.destroy(), 30);
      }),
    );
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
    await assert.rejects(async () => {
      const res = await fetch(`http://127.0.0.1:${gate.port}/${secretOf(gate)}/x`);
      await res.text();
    });
    assert.equal(gate.routeStats('default')?.passed, 1);
  });

  for (const [what, answer, reason] of [
    ['not HTTP', 'SSH-2.0-OpenSSH_9.2\r\n', /did not answer with HTTP\/1\.x/],
    ['a folded header', 'HTTP/1.1 200 OK\r\nA: 1\r\n b\r\nContent-Length: 0\r\n\r\n', /obs-fold/],
    ['two Content-Lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab', /two different Content-Length/],
    ['Content-Length and chunked', 'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', /both Content-Length and Transfer-Encoding/],
    ['a 101 nobody asked for', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n', /switched protocols/],
  ] as const) {
    it(`an origin that answers with ${what} → 502 naming the cause, and the gate goes on`, async () => {
      const origin = await rawOrigin((sock) => sock.once('data', () => sock.write(answer)));
      const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
      const res = await fetch(`http://127.0.0.1:${gate.port}/${secretOf(gate)}/x`);
      assert.equal(res.status, 502);
      const body = (await res.json()) as { error: string };
      assert.match(body.error, reason);
      assert.match(body.error, /The local server at http:\/\/127\.0\.0\.1:\d+ sent an answer the tunnel cannot pass on/);
      assert.equal(gate.routeStats('default')?.errors, 1);
    });
  }

  it('decodes a chunked origin body sent a byte at a time and drops the hop-by-hop fields', async () => {
    const origin = await rawOrigin((sock) =>
      sock.once('data', () => {
        const wire = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: x-hop\r\nX-Hop: secret-ish\r\nKeep-Alive: timeout=5\r\nX-Kept: 1\r\n\r\n3\r\nabc\r\n2;e=1\r\nde\r\n0\r\n\r\n';
        let i = 0;
        const tick = (): void => {
          if (i >= wire.length || sock.destroyed) return;
          sock.write(wire[i++] ?? '');
          setImmediate(tick);
        };
        tick();
      }),
    );
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
    const res = await fetch(`http://127.0.0.1:${gate.port}/${secretOf(gate)}/x`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'abcde');
    assert.equal(res.headers.get('x-hop'), null);
    assert.notEqual(res.headers.get('keep-alive'), 'timeout=5', "the gate's own Keep-Alive, not the origin's");
    assert.equal(res.headers.get('x-kept'), '1');
  });

  it('drops the fields every Connection header names, when the origin sends more than one', async () => {
    const origin = await rawOrigin((sock) =>
      sock.once('data', () => sock.write('HTTP/1.1 200 OK\r\nConnection: x-first\r\nX-First: hop\r\nConnection: keep-alive, X-Second\r\nX-Second: hop\r\nX-Kept: 1\r\nContent-Length: 2\r\n\r\nok')),
    );
    const gate = await newGate({ origin: { host: '127.0.0.1', port: origin.port } });
    const res = await fetch(`http://127.0.0.1:${gate.port}/${secretOf(gate)}/x`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'ok');
    assert.equal(res.headers.get('x-first'), null, 'named by the first Connection field');
    assert.equal(res.headers.get('x-second'), null, 'named by the second');
    assert.equal(res.headers.get('x-kept'), '1');
  });

  it('never logged a secret', () => {
    for (const line of logLines) for (const s of secretsSeen) assert.ok(!line.includes(s), line);
  });
});

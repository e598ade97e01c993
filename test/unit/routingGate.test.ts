/**
 * The routing gate: several shares behind one gate, each reached only with its own secret; open
 * shares addressed without one (the primary by every unmatched path, the others by public name);
 * rotate and remove one route without touching the others; per-route counters and origin health.
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { startAccessGate, type AccessGate, type GateOriginHealth } from '../../src/core/gate/accessGate';
import { SELF_CHECK_HEADER, selfCheckHeaders } from '../../src/core/util/selfCheck';

const closers: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
});

interface Origin {
  name: string;
  port: number;
  seen: { url: string; authorization?: string | undefined; referer?: string | undefined; apiKey?: string | undefined; self?: string | undefined }[];
  /** Open SSE responses (for cut checks). */
  streams: http.ServerResponse[];
  close(): Promise<void>;
}

async function origin(name: string): Promise<Origin> {
  const o: Origin = { name, port: 0, seen: [], streams: [], close: () => Promise.resolve() };
  const server = http.createServer((req, res) => {
    o.seen.push({ url: req.url ?? '', authorization: req.headers.authorization, referer: req.headers.referer, apiKey: req.headers['x-api-key'] as string | undefined, self: req.headers[SELF_CHECK_HEADER] as string | undefined });
    if (req.url?.endsWith('/sse')) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${name}\n\n`);
      o.streams.push(res);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ origin: name, url: req.url }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  o.port = (server.address() as AddressInfo).port;
  o.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  closers.push(() => o.close());
  return o;
}

async function gateFor(o: Origin, extra: Partial<Parameters<typeof startAccessGate>[0]> = {}): Promise<AccessGate> {
  const gate = await startAccessGate({ origin: { host: '127.0.0.1', port: o.port }, routeId: o.name, ...extra });
  closers.push(() => gate.close());
  return gate;
}

function get(gate: AccessGate, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: gate.port, path, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Opens an SSE stream through the gate; resolves once its first event arrived. */
function sse(gate: AccessGate, path: string): Promise<{ closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: gate.port, path, agent: false }, (res) => {
      const closed = new Promise<void>((r) => res.once('close', () => r()));
      res.once('data', () => resolve({ closed }));
    });
    req.on('error', () => undefined);
    req.once('error', reject);
    req.end();
  });
}

const originOf = (r: { body: string }): string => (JSON.parse(r.body) as { origin: string }).origin;

describe('routing gate', () => {
  it('two secret shares: each secret (path or bearer) reaches only its own origin; an unknown one gets 401 and touches neither', async () => {
    const a = await origin('a');
    const b = await origin('b');
    const gate = await gateFor(a);
    gate.addRoute({ id: 'b', origin: { host: '127.0.0.1', port: b.port } });
    const sa = gate.routeSecretPath('a')!;
    const sb = gate.routeSecretPath('b')!;
    assert.notEqual(sa, sb);
    assert.deepEqual(gate.routeIds(), ['a', 'b']);
    assert.equal(originOf(await get(gate, `${sa}/mcp`)), 'a');
    assert.equal(originOf(await get(gate, `${sb}/mcp`)), 'b');
    assert.equal(originOf(await get(gate, '/mcp', { authorization: `Bearer ${sb.slice(1)}` })), 'b');
    assert.equal(originOf(await get(gate, '/mcp', { authorization: `Bearer ${sa.slice(1)}` })), 'a');
    assert.deepEqual(b.seen.map((x) => x.url), ['/mcp', '/mcp']);
    assert.ok(b.seen.every((x) => x.authorization === undefined), 'no secret reaches an origin');
    const before = a.seen.length + b.seen.length;
    assert.equal((await get(gate, '/mcp')).status, 401);
    assert.equal((await get(gate, `/${'x'.repeat(43)}/mcp`)).status, 401);
    assert.equal((await get(gate, '/mcp', { authorization: 'Bearer nope-nope-nope-nope' })).status, 401);
    // One share's secret path with the other's bearer: the path decides, and neither secret travels on.
    assert.equal(originOf(await get(gate, `${sa}/x`, { authorization: `Bearer ${sb.slice(1)}` })), 'a');
    assert.equal(a.seen.at(-1)?.authorization, undefined);
    assert.equal(a.seen.length + b.seen.length, before + 1);
    assert.deepEqual(gate.stats, { passed: 5, rejected: 3 });
    assert.equal(gate.routeStats('a')?.passed, 3);
    assert.equal(gate.routeStats('b')?.passed, 2);
    assert.ok((gate.routeStats('b')?.lastRequestAt ?? 0) > 0);
  });

  it("the tunnel's own reachability check passes with the secret but is not traffic: not counted, not recorded, its header never reaches the origin", async () => {
    const o = await origin('self');
    const recorded: string[] = [];
    const gate = await gateFor(o, { onPass: (req) => recorded.push(req.url ?? '') });
    const secret = gate.secretPath();
    const selfSeen = (): boolean => o.seen.length > 0;
    assert.equal((await get(gate, `${secret}/mcp`, selfCheckHeaders())).status, 200);
    assert.ok(selfSeen(), 'it reached the origin');
    assert.equal(o.seen[0]?.self, undefined, 'without the header');
    assert.equal(gate.routeStats('self')?.passed, 0, 'not counted');
    assert.equal(gate.routeStats('self')?.lastRequestAt, undefined, 'no idle reset');
    assert.deepEqual(recorded, [], 'not recorded');
    assert.equal((await get(gate, '/mcp', selfCheckHeaders())).status, 401, 'it still needs the secret');
    assert.equal((await get(gate, `${secret}/mcp`, { [SELF_CHECK_HEADER]: 'a-guess-of-the-token-xxxxxxxxxxxx' })).status, 200);
    assert.equal(gate.routeStats('self')?.passed, 1, 'a forged token is ordinary traffic');
    assert.equal(recorded.length, 1);
  });

  it('a lone open share keeps https://<host>/mcp; with secret shares beside it, they still need their secrets', async () => {
    const open = await origin('open');
    const s = await origin('secret');
    const gate = await gateFor(open, { mode: 'open' });
    assert.equal(gate.routeSecretPath('open'), undefined);
    assert.equal(gate.routeOpenPrefix('open'), '');
    assert.equal(originOf(await get(gate, '/mcp')), 'open');
    gate.addRoute({ id: 'secret', origin: { host: '127.0.0.1', port: s.port } });
    assert.equal(originOf(await get(gate, '/mcp')), 'open', 'the open share keeps its URL');
    assert.equal(originOf(await get(gate, `${gate.routeSecretPath('secret')!}/mcp`)), 'secret');
    assert.equal(s.seen.length, 1, 'only the request with its secret reached the secret share');
  });

  it('a second open share is addressed by its public name; the primary by everything else', async () => {
    const one = await origin('one');
    const two = await origin('two');
    const gate = await gateFor(one, { mode: 'open' });
    gate.addRoute({ id: 'two', origin: { host: '127.0.0.1', port: two.port }, access: 'open', name: 'second' });
    assert.equal(gate.routeOpenPrefix('two'), '/second');
    assert.equal(originOf(await get(gate, '/second/mcp?x=1')), 'two');
    assert.equal(two.seen.at(-1)?.url, '/mcp?x=1');
    assert.equal(originOf(await get(gate, '/mcp')), 'one');
    assert.throws(() => gate.addRoute({ id: 'three', origin: { host: '127.0.0.1', port: two.port }, access: 'open', name: 'second' }), /public name "second"/);
    assert.throws(() => gate.addRoute({ id: 'two', origin: { host: '127.0.0.1', port: two.port } }), /already has a route "two"/);
    assert.throws(() => gate.addRoute({ id: 'bad', origin: { host: '127.0.0.1', port: two.port }, access: 'open', name: 'Bad Name' }), /public name/);
    // When the primary goes, the next open share takes the plain URLs.
    assert.ok(gate.removeRoute('one'));
    assert.equal(gate.routeOpenPrefix('two'), '');
    assert.equal(originOf(await get(gate, '/mcp')), 'two');
  });

  it('rotate one share: its old secret gets 401 and its streams are cut; the other share and its stream are untouched', async () => {
    const a = await origin('a');
    const b = await origin('b');
    const gate = await gateFor(a);
    gate.addRoute({ id: 'b', origin: { host: '127.0.0.1', port: b.port } });
    const oldA = gate.routeSecretPath('a')!;
    const sb = gate.routeSecretPath('b')!;
    const streamA = await sse(gate, `${oldA}/sse`);
    const streamB = await sse(gate, `${sb}/sse`);
    let bClosed = false;
    void streamB.closed.then(() => (bClosed = true));
    const next = gate.rotateRoute('a');
    assert.ok(next && `/${next}` !== oldA);
    await streamA.closed;
    assert.equal((await get(gate, `${oldA}/mcp`)).status, 401);
    assert.equal(originOf(await get(gate, `/${next}/mcp`)), 'a');
    assert.equal(originOf(await get(gate, `${sb}/mcp`)), 'b');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(bClosed, false, "the other share's stream stays open");
    assert.equal(gate.rotateRoute('nope'), undefined);
  });

  it("setRouteOrigin: the same secret now reaches the new origin with the new Authorization; the old origin's streams are cut; unknown → false; a bad origin throws", async () => {
    const a = await origin('a');
    const b = await origin('b');
    const gate = await gateFor(a, { originAuthorization: 'Bearer old-token' });
    const sa = gate.routeSecretPath('a')!;
    const stream = await sse(gate, `${sa}/sse`);
    assert.equal(gate.setRouteOrigin('a', { host: '127.0.0.1', port: b.port }, { originAuthorization: 'Bearer new-token' }), true);
    await stream.closed;
    assert.equal(gate.routeSecretPath('a'), sa, 'the secret is kept');
    assert.equal(originOf(await get(gate, `${sa}/mcp`)), 'b');
    assert.equal(b.seen.at(-1)?.authorization, 'Bearer new-token');
    assert.equal(gate.setRouteOrigin('nope', { host: '127.0.0.1', port: b.port }), false);
    assert.throws(() => gate.setRouteOrigin('a', { host: '127.0.0.1', port: 0 }), RangeError);
    assert.equal(originOf(await get(gate, `${sa}/mcp`)), 'b', 'a refused change leaves the route as it was');
  });

  it("originHeaders: a share's configured headers reach its origin only (replacing the client's), never another share's, never the log; bad or reserved names are refused", async () => {
    const a = await origin('a');
    const b = await origin('b');
    const logged: string[] = [];
    const gate = await gateFor(a, { originHeaders: { Authorization: 'Bearer origin-key-1', 'X-Api-Key': 'k-123' }, log: (_l, m) => void logged.push(m) });
    gate.addRoute({ id: 'b', origin: { host: '127.0.0.1', port: b.port } });
    const sa = gate.routeSecretPath('a')!;
    assert.equal(originOf(await get(gate, `${sa}/mcp`, { 'x-api-key': 'from-the-client' })), 'a');
    assert.deepEqual([a.seen.at(-1)?.authorization, a.seen.at(-1)?.apiKey], ['Bearer origin-key-1', 'k-123']);
    // The bearer form: the client's Authorization is the secret, stripped; the origin's own is sent.
    assert.equal(originOf(await get(gate, '/mcp', { authorization: `Bearer ${sa.slice(1)}` })), 'a');
    assert.equal(a.seen.at(-1)?.authorization, 'Bearer origin-key-1');
    assert.equal(originOf(await get(gate, `${gate.routeSecretPath('b')!}/mcp`)), 'b');
    assert.deepEqual([b.seen.at(-1)?.authorization, b.seen.at(-1)?.apiKey], [undefined, undefined], "another share's origin gets none of them");
    assert.ok(!logged.some((m) => m.includes('origin-key-1') || m.includes('k-123')), 'never logged');
    assert.throws(() => gate.addRoute({ id: 'c', origin: { host: '127.0.0.1', port: b.port }, originHeaders: { Host: 'evil' } }), /cannot be set/);
    assert.throws(() => gate.addRoute({ id: 'd', origin: { host: '127.0.0.1', port: b.port }, originHeaders: { 'bad name': 'x' } }), /not a valid HTTP header name/);
    assert.throws(() => gate.addRoute({ id: 'e', origin: { host: '127.0.0.1', port: b.port }, originHeaders: { 'x-k': 'a\r\nInjected: 1' } }), /one line/);
  });

  it('an in-process handler route: gets the path without the secret and no secret in Authorization; its streams are cut on rotate; a throwing handler is a 502; no upgrades', async () => {
    const a = await origin('a');
    const seen: Array<{ url: string | undefined; authorization: string | undefined }> = [];
    const open: http.ServerResponse[] = [];
    const gate = await gateFor(a);
    gate.addRoute({
      id: 'h',
      origin: { host: '127.0.0.1', port: 1 },
      handler: (req, res) => {
        seen.push({ url: req.url, authorization: req.headers.authorization });
        if (req.url?.endsWith('/boom')) throw new Error('handler broke');
        if (req.url?.endsWith('/sse')) {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('data: h\n\n');
          open.push(res);
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ origin: 'h', url: req.url }));
      },
    });
    const sh = gate.routeSecretPath('h')!;
    assert.equal(originOf(await get(gate, `${sh}/mcp?x=1`)), 'h');
    assert.equal(originOf(await get(gate, '/mcp', { authorization: `Bearer ${sh.slice(1)}` })), 'h');
    assert.deepEqual(seen, [{ url: '/mcp?x=1', authorization: undefined }, { url: '/mcp', authorization: undefined }]);
    assert.equal(gate.routeStats('h')?.passed, 2);
    const stream = await sse(gate, `${sh}/sse`);
    gate.rotateRoute('h');
    await stream.closed;
    const next = gate.routeSecretPath('h')!;
    const boom = await get(gate, `${next}/boom`);
    assert.equal(boom.status, 502);
    assert.match(boom.body, /not answering: handler broke|handler broke/);
    assert.equal((await get(gate, `${next}/mcp`, { connection: 'Upgrade', upgrade: 'websocket' })).status, 400);
    assert.equal(originOf(await get(gate, `${gate.routeSecretPath('a')!}/mcp`)), 'a', 'the proxied share beside it is unchanged');
  });

  it('links: another secret per recipient reaches the same share (path or bearer) and is named to the recorder; revoking one cuts its streams and answers 401 "revoked"; the share secret and the other links go on', async () => {
    const a = await origin('a');
    const passed: string[] = [];
    const gate = await gateFor(a, { onPass: (_q, _r, info) => void passed.push(info.link) });
    const alice = gate.addLink('a', { label: 'Alice' });
    const bob = gate.addLink('a', { label: 'Bob' });
    assert.ok(alice && bob && alice.secret !== bob.secret);
    assert.deepEqual(gate.links('a').map((l) => l.label), ['Alice', 'Bob']);
    assert.equal(originOf(await get(gate, `/${alice.secret}/mcp`)), 'a');
    assert.equal(originOf(await get(gate, '/mcp', { authorization: `Bearer ${bob.secret}` })), 'a');
    assert.equal(a.seen.at(-1)?.authorization, undefined, "a link's bearer never reaches the origin");
    assert.equal(originOf(await get(gate, `${gate.routeSecretPath('a')!}/mcp`)), 'a');
    assert.deepEqual(passed, ['link "Alice"', 'link "Bob"', 'share secret']);
    const aliceStream = await sse(gate, `/${alice.secret}/sse`);
    const bobStream = await sse(gate, `/${bob.secret}/sse`);
    let bobClosed = false;
    void bobStream.closed.then(() => (bobClosed = true));
    assert.equal(gate.removeLink('a', alice.id), true);
    await aliceStream.closed;
    const refused = await get(gate, `/${alice.secret}/mcp`);
    assert.equal(refused.status, 401);
    assert.match(refused.body, /this link was revoked/);
    assert.equal(originOf(await get(gate, `/${bob.secret}/mcp`)), 'a');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(bobClosed, false, "the other link's stream stays open");
    assert.equal(gate.removeLink('a', alice.id), false);
    assert.equal(gate.addLink('nope', { label: 'x' }), undefined);
  });

  it('an expiring link: at its expiry its streams are cut and it gets 401 "expired"; an open share takes no links', async () => {
    const a = await origin('a');
    const gate = await gateFor(a);
    const temp = gate.addLink('a', { label: 'for an hour', expiresAt: Date.now() + 400 });
    assert.ok(temp);
    const stream = await sse(gate, `/${temp.secret}/sse`);
    await stream.closed;
    const r = await get(gate, `/${temp.secret}/mcp`);
    assert.equal(r.status, 401);
    assert.match(r.body, /this link has expired/);
    assert.deepEqual(gate.links('a'), []);
    // Expired while no timer ran (a sleeping laptop): the request check ends it.
    const late = gate.addLink('a', { label: 'late', expiresAt: Date.now() - 1 });
    assert.ok(late);
    assert.match((await get(gate, `/${late.secret}/mcp`)).body, /expired/);
    gate.addRoute({ id: 'o', origin: { host: '127.0.0.1', port: a.port }, access: 'open' });
    assert.equal(gate.addLink('o', { label: 'x' }), undefined);
  });

  it('a 24-hour link, with fake timers: it works until its expiry, then it ends by itself (no request needed) and gets 401 "expired"', async (t) => {
    const a = await origin('a');
    const gate = await gateFor(a);
    t.mock.timers.enable({ apis: ['Date', 'setTimeout'], now: Date.now() });
    try {
      const day = gate.addLink('a', { label: 'a day', expiresAt: Date.now() + 86_400_000 });
      assert.ok(day);
      t.mock.timers.tick(86_400_000 - 1000);
      assert.equal((await get(gate, `/${day.secret}/mcp`)).status, 200, 'a second before its expiry');
      assert.deepEqual(gate.links('a').map((l) => l.label), ['a day']);
      t.mock.timers.tick(2000);
      assert.deepEqual(gate.links('a'), [], 'its timer ended it');
      const r = await get(gate, `/${day.secret}/mcp`);
      assert.equal(r.status, 401);
      assert.match(r.body, /this link has expired/);
    } finally {
      t.mock.timers.reset();
    }
  });

  it("remove one share: its secret gets 401 (even beside an open share, which never sees it) and its streams are cut", async () => {
    const open = await origin('open');
    const b = await origin('b');
    const gate = await gateFor(open, { mode: 'open' });
    gate.addRoute({ id: 'b', origin: { host: '127.0.0.1', port: b.port } });
    const sb = gate.routeSecretPath('b')!;
    const stream = await sse(gate, `${sb}/sse`);
    assert.ok(gate.removeRoute('b'));
    await stream.closed;
    assert.equal(gate.removeRoute('b'), false);
    const seenByOpen = open.seen.length;
    assert.equal((await get(gate, `${sb}/mcp`)).status, 401, 'the removed secret is refused, not handed to the open share');
    assert.equal((await get(gate, '/mcp', { authorization: `Bearer ${sb.slice(1)}` })).status, 401);
    assert.equal(open.seen.length, seenByOpen, 'the open share never saw the old secret');
    assert.equal(gate.routeSecretPath('b'), undefined);
    assert.equal(gate.routeStats('b'), undefined);
  });

  it("origin health: a share whose server is down reports it (once) and its 502s count as errors; it reports back when the server answers", async () => {
    const a = await origin('a');
    const gate = await gateFor(a);
    const down = await origin('down');
    const downPort = down.port;
    await down.close();
    const health: GateOriginHealth[] = [];
    gate.onDidChangeOriginHealth((h) => health.push(h));
    gate.addRoute({ id: 'down', origin: { host: '127.0.0.1', port: downPort } });
    const sd = gate.routeSecretPath('down')!;
    const r = await get(gate, `${sd}/mcp`);
    assert.equal(r.status, 502);
    assert.match(r.body, new RegExp(`local server at http://127\\.0\\.0\\.1:${downPort} is not answering`));
    assert.equal((await get(gate, `${sd}/mcp`)).status, 502);
    assert.equal(health.length, 1, 'said once');
    assert.equal(health[0]?.ok, false);
    assert.match(health[0]?.message ?? '', /Start it, or check the port/);
    assert.deepEqual({ passed: gate.routeStats('down')?.passed, errors: gate.routeStats('down')?.errors }, { passed: 2, errors: 2 });
    assert.equal(gate.routeStats('a')?.errors, 0);
    // The server comes up on that port: the next request works and the share is healthy again.
    const back = http.createServer((_req, res) => res.end('back'));
    await new Promise<void>((res) => back.listen(downPort, '127.0.0.1', res));
    closers.push(() => new Promise((res) => back.close(res)));
    assert.equal((await get(gate, `${sd}/mcp`)).status, 200);
    assert.deepEqual(health.map((h) => h.ok), [false, true]);
  });

  it('100 shares: each secret reaches its own origin, never another', async () => {
    const origins = await Promise.all(Array.from({ length: 4 }, (_, i) => origin(`o${i}`)));
    const o = (i: number) => origins[i % origins.length] as (typeof origins)[number]; // in range
    const gate = await gateFor(o(0));
    for (let i = 1; i < 100; i++) gate.addRoute({ id: `r${i}`, origin: { host: '127.0.0.1', port: o(i).port } });
    for (const i of [1, 2, 3, 50, 97, 99]) {
      const r = await get(gate, `${gate.routeSecretPath(`r${i}`)!}/mcp`);
      assert.equal(originOf(r), `o${i % 4}`);
    }
    assert.equal(gate.routeIds().length, 100);
  });
});

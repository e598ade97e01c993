/** The Streamable HTTP host: a real SDK client end to end, and raw requests for every guard. */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ResourceUpdatedNotificationSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startHttpHost, type HttpHost } from '../../src/mcp/httpHost';
import { FakeController } from '../support/fakeController';

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

const INIT = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1.0.0' } },
});

/** One raw HTTP request; `chunks` are written separately (chunked encoding when no Content-Length). */
function raw(port: number, opts: { method?: string; path?: string; headers?: Record<string, string>; body?: string; chunks?: string[] }): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {
      Host: `127.0.0.1:${port}`,
      'Content-Type': 'application/json',
      Accept: 'application/json, text/event-stream',
      ...opts.headers,
    };
    const req = request({ host: '127.0.0.1', port, method: opts.method ?? 'POST', path: opts.path ?? '/mcp', headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    // The server may answer (413) and close before the whole body is sent: that is the point.
    req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? undefined : reject(err)));
    for (const c of opts.chunks ?? []) req.write(c);
    req.end(opts.body);
  });
}

function rpcError(r: RawResponse): { code: number; message: string } {
  assert.match(String(r.headers['content-type']), /application\/json/);
  const parsed = JSON.parse(r.body) as { jsonrpc: string; error: { code: number; message: string }; id: null };
  assert.equal(parsed.jsonrpc, '2.0');
  assert.equal(parsed.id, null);
  return parsed.error;
}

function noCors(r: RawResponse): void {
  for (const h of Object.keys(r.headers)) assert.ok(!h.startsWith('access-control-'), `no CORS header (${h})`);
}

function connectClient(host: HttpHost, token = host.token) {
  const transport = new StreamableHTTPClientTransport(new URL(host.url), { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
  const client = new Client({ name: 'http-test', version: '1.0.0' });
  return { client, transport, connected: client.connect(transport) };
}

function openSockets(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TCPServerWrap').length;
}

void describe('startHttpHost', () => {
  const controller = new FakeController();
  const logs: string[] = [];
  let host: HttpHost;
  let socketsBefore: number;

  before(async () => {
    socketsBefore = openSockets();
    host = await startHttpHost(controller, {
      serverOptions: { version: '0.1.0-test' },
      maxBodyBytes: 4096,
      log: (level, msg) => logs.push(`${level} ${msg}`),
    });
  });
  after(async () => {
    await host.close();
  });

  void it('listens on 127.0.0.1 with an ephemeral port and a 32-byte base64url token', () => {
    assert.match(host.url, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    assert.equal(host.url, `http://127.0.0.1:${host.port}/mcp`);
    assert.ok(host.port > 0);
    assert.match(host.token, /^[A-Za-z0-9_-]{43}$/);
  });

  void it('serves a real SDK client: tools, resources and notifications over the GET back-channel', async () => {
    const { client, transport, connected } = connectClient(host);
    await connected;
    assert.equal(host.sessionCount, 1);
    assert.equal(client.getServerVersion()?.name, 'mcp-tunnel');

    const status = (await client.callTool({ name: 'get_tunnel_status', arguments: {} })) as CallToolResult;
    assert.equal(status.structuredContent?.['status'], 'stopped');

    const res = await client.readResource({ uri: 'tunnel://url' });
    const c = res.contents[0];
    assert.ok(c && 'text' in c);
    assert.deepEqual(JSON.parse(c.text), { available: false, url: null, mcp_url: null });

    const updated = new Promise<string>((resolve) => {
      client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => resolve(n.params.uri));
    });
    await client.subscribeResource({ uri: 'tunnel://status' });
    // The client opens its GET back-channel right after initialize; wait until the host saw it.
    for (let i = 0; i < 200 && !logs.some((l) => l.includes('notification stream opened')); i++) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 20));
    controller.setState({ status: 'failed', error: { code: 'timeout', message: 'no URL', lastLines: [] } });
    assert.equal(await withTimeout(updated, 2000), 'tunnel://status');

    await transport.terminateSession();
    await client.close();
    assert.equal(host.sessionCount, 0, 'DELETE ends the session');
    assert.equal(controller.listenerCount, 0, 'the session released its controller listeners');
    controller.setState({ status: 'stopped' });
  });

  void it('401 without a valid bearer token, as a JSON-RPC error (no token echo)', async () => {
    const same = 'x'.repeat(host.token.length);
    for (const headers of <Record<string, string>[]>[{}, { Authorization: `Bearer ${same}` }, { Authorization: 'Bearer short' }, { Authorization: `Basic ${host.token}` }, { Authorization: host.token }]) {
      const r = await raw(host.port, { body: INIT, headers });
      assert.equal(r.status, 401, JSON.stringify(headers));
      assert.equal(rpcError(r).code, -32001);
      assert.equal(r.headers['www-authenticate'], 'Bearer');
      assert.ok(!r.body.includes(host.token));
      noCors(r);
    }
    assert.equal(host.sessionCount, 0);
  });

  void it('403 for a foreign Host or Origin, even with the token', async () => {
    const auth = { Authorization: `Bearer ${host.token}` };
    for (const headers of <Record<string, string>[]>[{ Host: 'evil.example' }, { Host: `evil.example:${host.port}` }, { Host: '127.0.0.1.evil.example' }, { Origin: 'http://evil.example' }, { Origin: 'null' }, { Origin: `http://127.0.0.1.evil.example:${host.port}` }]) {
      const r = await raw(host.port, { body: INIT, headers: { ...auth, ...headers } });
      assert.equal(r.status, 403, JSON.stringify(headers));
      rpcError(r);
      noCors(r);
    }
    assert.equal(host.sessionCount, 0);
  });

  void it('accepts loopback Host and Origin spellings', async () => {
    const auth = { Authorization: `Bearer ${host.token}` };
    for (const headers of <Record<string, string>[]>[{ Origin: 'http://localhost:1234' }, { Origin: `https://127.0.0.1:${host.port}` }, { Host: `localhost:${host.port}` }, { Host: `[::1]:${host.port}`, Origin: 'http://[::1]' }]) {
      const r = await raw(host.port, { body: INIT, headers: { ...auth, ...headers } });
      assert.equal(r.status, 200, `${JSON.stringify(headers)}: ${r.body}`);
      assert.ok(r.headers['mcp-session-id']);
      noCors(r);
      const del = await raw(host.port, { method: 'DELETE', headers: { ...auth, 'Mcp-Session-Id': String(r.headers['mcp-session-id']) } });
      assert.equal(del.status, 200);
    }
    assert.equal(host.sessionCount, 0);
  });

  void it('413 for an oversized body, declared or streamed', async () => {
    const auth = { Authorization: `Bearer ${host.token}` };
    const big = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping', params: { pad: 'x'.repeat(5000) } });
    const declared = await raw(host.port, { body: big, headers: auth });
    assert.equal(declared.status, 413);
    assert.match(rpcError(declared).message, /4096 bytes/);
    const streamed = await raw(host.port, { chunks: [big.slice(0, 3000), big.slice(3000)], headers: { ...auth, 'Transfer-Encoding': 'chunked' } });
    assert.equal(streamed.status, 413);
  });

  void it('400 parse error for malformed JSON, 400 without a session, 404 for an unknown session or path', async () => {
    const auth = { Authorization: `Bearer ${host.token}` };
    const bad = await raw(host.port, { body: '{"jsonrpc": "2.0", "id": 1, "method": ', headers: auth });
    assert.equal(bad.status, 400);
    assert.equal(rpcError(bad).code, -32700);

    const noSession = await raw(host.port, { body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }), headers: auth });
    assert.equal(noSession.status, 400);

    const unknown = await raw(host.port, { body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list' }), headers: { ...auth, 'Mcp-Session-Id': '00000000-0000-4000-8000-000000000000' } });
    assert.equal(unknown.status, 404);
    assert.equal(rpcError(unknown).code, -32001);
    const unknownGet = await raw(host.port, { method: 'GET', headers: { ...auth, Accept: 'text/event-stream', 'Mcp-Session-Id': 'nope' } });
    assert.equal(unknownGet.status, 404);

    const wellKnown = await raw(host.port, { method: 'GET', path: '/.well-known/oauth-protected-resource' });
    assert.equal(wellKnown.status, 404);
    const put = await raw(host.port, { method: 'PUT', body: '{}', headers: auth });
    assert.equal(put.status, 405);
    assert.equal(put.headers['allow'], 'GET, POST, DELETE');
  });

  void it('never logs the token', () => {
    assert.ok(logs.length > 0);
    for (const line of logs) assert.ok(!line.includes(host.token), line);
  });

  void it('close() ends sessions, refuses new connections and leaves no sockets', async () => {
    const { client, connected } = connectClient(host);
    await connected;
    await client.subscribeResource({ uri: 'tunnel://status' });
    assert.equal(host.sessionCount, 1);
    await host.close();
    await host.close();
    assert.equal(host.sessionCount, 0);
    assert.equal(controller.listenerCount, 0);
    await assert.rejects(raw(host.port, { body: INIT }), /ECONNREFUSED/);
    await client.close();
    for (let i = 0; i < 50 && openSockets() > socketsBefore; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(openSockets(), socketsBefore, `open sockets: ${process.getActiveResourcesInfo().join(', ')}`);
  });
});

void describe('startHttpHost options', () => {
  void it('closes the least recently used session beyond maxSessions', async () => {
    const controller = new FakeController();
    const host = await startHttpHost(controller, { serverOptions: { version: 't' }, maxSessions: 2, token: 'a-fixed-token-of-enough-length' });
    try {
      assert.equal(host.token, 'a-fixed-token-of-enough-length');
      const a = connectClient(host);
      await a.connected;
      const b = connectClient(host);
      await b.connected;
      await a.client.ping(); // a is now more recent than b
      const c = connectClient(host);
      await c.connected;
      assert.equal(host.sessionCount, 2);
      await a.client.ping();
      await c.client.ping();
      await assert.rejects(b.client.ping(), /404|Session not found/);
      for (const x of [a, b, c]) await x.client.close();
    } finally {
      await host.close();
    }
  });

  void it('refuses a non-loopback bind address and a weak token', async () => {
    const controller = new FakeController();
    await assert.rejects(startHttpHost(controller, { serverOptions: { version: 't' }, host: '0.0.0.0' }), /loopback/);
    await assert.rejects(startHttpHost(controller, { serverOptions: { version: 't' }, token: 'short' }), /token/);
  });
});

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    }),
  ]);
}

void describe('startHttpHost and the 2026-07-28 revision', () => {
  void it('serves the 2.x SDK client (2026-07-28 revision), in its default and its auto (probe first) negotiation', async () => {
    const host = await startHttpHost(new FakeController(), { serverOptions: { version: '0.1.0-test' } });
    after(() => host.close());
    const sdk2 = await import('@modelcontextprotocol/client');
    for (const versionNegotiation of [undefined, { mode: 'auto' as const }]) {
      const client = new sdk2.Client({ name: 'modern-agent', version: '2' }, { capabilities: {}, ...(versionNegotiation ? { versionNegotiation } : {}) });
      await client.connect(new sdk2.StreamableHTTPClientTransport(new URL(host.url), { requestInit: { headers: { Authorization: `Bearer ${host.token}` } } }));
      const tools = await client.listTools();
      assert.ok(tools.tools.some((t) => t.name === 'get_tunnel_status'), `tools with ${JSON.stringify(versionNegotiation)}`);
      const r = await client.callTool({ name: 'get_tunnel_status', arguments: {} });
      assert.match(JSON.stringify(r), /"status"/);
      await client.close();
    }
  });
});

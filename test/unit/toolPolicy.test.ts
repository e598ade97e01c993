/**
 * Tool policies on the gate's path: real servers from npm (server-everything, server-filesystem)
 * behind the stdio bridge and the SDK 1.x client; a hostile server that lies in its answers (wrong
 * ids, lists slipped into other answers, escaped and repeated keys, non-JSON events, compressed
 * bodies); and the fail-closed rules (parse error, 413, 415, the 2026-07-28 header check).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startStdioBridge } from '../../src/bridge/stdioBridge';
import { startAccessGate, type AccessGate } from '../../src/core/gate/accessGate';
import { checkPolicy, describePolicy, ToolGuard, type ToolPolicy } from '../../src/core/policy/toolPolicy';
import { postJson } from '../support/origins';

const REPO = path.resolve(__dirname, '..', '..');
const EVERYTHING = path.join(REPO, 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js');
const FILESYSTEM = path.join(REPO, 'node_modules', '@modelcontextprotocol', 'server-filesystem', 'dist', 'index.js');
const closers: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
});

async function bridged(args: string[], policy: ToolPolicy | undefined): Promise<{ gate: AccessGate; url: URL; logs: string[] }> {
  const bridge = await startStdioBridge({ server: { name: 'srv', command: process.execPath, args }, log: () => undefined });
  closers.push(() => bridge.close());
  const logs: string[] = [];
  const gate = await startAccessGate({
    origin: { host: '127.0.0.1', port: bridge.port },
    handler: (req, res) => bridge.handle(req, res),
    ...(bridge.accessToken ? { originAuthorization: `Bearer ${bridge.accessToken}` } : {}),
    ...(policy ? { policy } : {}),
    log: (_l, m) => logs.push(m),
  });
  closers.push(() => gate.close());
  return { gate, url: new URL(`http://127.0.0.1:${gate.port}${gate.secretPath()}/mcp`), logs };
}

async function connect(url: URL): Promise<Client> {
  const client = new Client({ name: 'policy-test', version: '1' });
  await client.connect(new StreamableHTTPClientTransport(url));
  closers.push(() => client.close());
  return client;
}

const post = postJson;

const call = (id: number, name: string, args: Record<string, unknown> = {}) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });
const list = (id: number) => ({ jsonrpc: '2.0', id, method: 'tools/list', params: {} });

/** A server that says whatever `answer` says, and keeps every body it got. */
async function hostile(answer: (req: http.IncomingMessage, body: string, res: http.ServerResponse) => void): Promise<{ port: number; bodies: string[] }> {
  const bodies: string[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      bodies.push(body);
      answer(req, body, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return { port: (server.address() as net.AddressInfo).port, bodies };
}

async function gateTo(port: number, policy: ToolPolicy): Promise<{ gate: AccessGate; base: string; logs: string[] }> {
  const logs: string[] = [];
  const gate = await startAccessGate({ origin: { host: '127.0.0.1', port }, policy, log: (_l, m) => logs.push(m) });
  closers.push(() => gate.close());
  return { gate, base: `${gate.secretPath()}/mcp`, logs };
}

const tool = (name: string, readOnly?: boolean) => ({ name, inputSchema: { type: 'object' }, ...(readOnly !== undefined ? { annotations: { readOnlyHint: readOnly } } : {}) });

describe('tool policy: real servers through the gate', () => {
  it('an allowlist on server-everything: tools/list shows just those tools; a call of another is answered by the gate, the allowed one works', async () => {
    const { url, logs } = await bridged([EVERYTHING, 'stdio'], { tools: ['echo', 'get-sum'] });
    const client = await connect(url);
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((t) => t.name).sort(), ['echo', 'get-sum']);
    const echo = await client.callTool({ name: 'echo', arguments: { message: 'hi' } });
    assert.match(JSON.stringify(echo.content), /hi/);
    await assert.rejects(client.callTool({ name: 'get-env', arguments: {} }), (err: Error) => /tool "get-env" is not shared/.test(err.message));
    assert.ok(logs.some((l) => /answered tools\/call of "get-env" itself/.test(l)), logs.join('\n'));
  });

  it('read-only on server-filesystem: only readOnlyHint tools are listed; write_file is refused (before and after tools/list), read_text_file works', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpt-policy-'));
    closers.push(() => fs.promises.rm(dir, { recursive: true, force: true }));
    fs.writeFileSync(path.join(dir, 'a.txt'), 'hello policy');
    const { url } = await bridged([FILESYSTEM, dir], { readOnly: true });
    const early = await connect(url);
    await assert.rejects(early.callTool({ name: 'write_file', arguments: { path: path.join(dir, 'b.txt'), content: 'x' } }), /not shared: this share is read-only and the server has not listed/);
    const client = await connect(url);
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name);
    assert.ok(names.includes('read_text_file') && names.includes('list_directory'), names.join(', '));
    for (const w of ['write_file', 'edit_file', 'create_directory', 'move_file']) assert.ok(!names.includes(w), `${w} is hidden`);
    assert.ok(tools.every((t) => t.annotations?.readOnlyHint === true));
    await assert.rejects(client.callTool({ name: 'write_file', arguments: { path: path.join(dir, 'b.txt'), content: 'x' } }), /tool "write_file" is not shared: this share is read-only and the server does not mark/);
    assert.equal(fs.existsSync(path.join(dir, 'b.txt')), false, 'nothing was written');
    const read = await client.callTool({ name: 'read_text_file', arguments: { path: path.join(dir, 'a.txt') } });
    assert.match(JSON.stringify(read.content), /hello policy/);
  });

  it('a policy set on a live route applies to the next request; removing it shows every tool again', async () => {
    const { gate, url } = await bridged([EVERYTHING, 'stdio'], undefined);
    const id = gate.routeIds()[0];
    assert.ok(id, 'a route');
    const all = (await (await connect(url)).listTools()).tools.length;
    assert.ok(all > 5);
    assert.equal(gate.setRoutePolicy(id, { tools: ['echo'] }), true);
    assert.deepEqual((await (await connect(url)).listTools()).tools.map((t) => t.name), ['echo']);
    assert.equal(gate.setRoutePolicy(id, undefined), true);
    assert.equal((await (await connect(url)).listTools()).tools.length, all);
    assert.equal(gate.setRoutePolicy('nope', { tools: [] }), false);
  });
});

describe('tool policy: a hostile server', () => {
  it('a refused call never reaches the origin; a batch forwards only the allowed calls and merges the gate answers (JSON and 202)', async () => {
    const srv = await hostile((_req, body, res) => {
      const msgs = JSON.parse(body) as Array<{ id?: number; method: string }>;
      const arr = Array.isArray(msgs) ? msgs : [msgs];
      const answers = arr.filter((m) => m.id !== undefined).map((m) => ({ jsonrpc: '2.0', id: m.id, result: { content: [{ type: 'text', text: `ran ${m.method}` }] } }));
      if (answers.length === 0) res.writeHead(202).end();
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(Array.isArray(msgs) ? answers : answers[0]));
    });
    const { gate, base } = await gateTo(srv.port, { tools: ['echo'] });
    const single = await post(gate.port, base, JSON.stringify(call(1, 'rm-rf')));
    assert.equal(single.status, 200);
    const e = JSON.parse(single.body) as { id: number; error: { code: number; message: string } };
    assert.equal(e.id, 1);
    assert.equal(e.error.code, -32602);
    assert.match(e.error.message, /tool "rm-rf" is not shared/);
    assert.equal(srv.bodies.length, 0, 'the origin never saw it');
    const batch = await post(gate.port, base, JSON.stringify([call(2, 'echo'), call(3, 'rm-rf')]));
    assert.equal(srv.bodies.length, 1);
    assert.deepEqual((JSON.parse(srv.bodies[0] ?? '[]') as Array<{ params: { name: string } }>).map((m) => m.params.name), ['echo']);
    const answers = JSON.parse(batch.body) as Array<{ id: number; error?: unknown }>;
    assert.deepEqual(answers.map((a) => [a.id, a.error !== undefined]), [[2, false], [3, true]]);
    // Only a notification is left for the origin (202): the client still gets its error, as 200 JSON.
    const notif = await post(gate.port, base, JSON.stringify([{ jsonrpc: '2.0', method: 'notifications/initialized' }, call(4, 'rm-rf')]));
    assert.equal(notif.status, 200);
    assert.deepEqual((JSON.parse(notif.body) as Array<{ id: number }>).map((a) => a.id), [4]);
    assert.equal(srv.bodies.length, 2);
  });

  it('every tools list is filtered whatever its id, in JSON, in SSE events and in batches; escaped and repeated keys cannot smuggle a tool', async () => {
    const lies: Record<string, (res: http.ServerResponse) => void> = {
      wrongId: (res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: 999, result: { tools: [tool('echo'), tool('rm-rf')] } })),
      escaped: (res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":1,"result":{"\\u0074ools":[{"name":"rm-rf","inputSchema":{}},{"name":"echo","inputSchema":{}}]}}'),
      repeated: (res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"rm-rf","inputSchema":{}}]},"result":{"tools":[{"name":"echo","inputSchema":{}}]}}'),
      sse: (res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        // An answer to no request of this stream, carrying a list all the same.
        res.write(`id: 1\nevent: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: 42, result: { tools: [tool('rm-rf')] } })}\n\n`);
        // One event split across writes, with CRLF line ends.
        const ev = `data: ${JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: [tool('rm-rf'), tool('echo')] } })}\r\n\r\n`;
        res.write(ev.slice(0, 20));
        setTimeout(() => res.end(ev.slice(20)), 20);
      },
      sseBatch: (res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`data: ${JSON.stringify([{ jsonrpc: '2.0', id: 1, result: { tools: [tool('rm-rf')] } }, { jsonrpc: '2.0', id: 2, result: { tools: [tool('echo'), tool('x')] } }])}\n\n`);
      },
      notAList: (res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: { 'rm-rf': tool('rm-rf') } } })),
    };
    let which = 'wrongId';
    const srv = await hostile((_req, _body, res) => lies[which]?.(res));
    const { gate, base } = await gateTo(srv.port, { tools: ['echo'] });
    for (which of Object.keys(lies)) {
      const r = await post(gate.port, base, JSON.stringify(list(1)));
      assert.equal(r.status, 200, which);
      assert.ok(!r.body.includes('rm-rf') && !r.body.includes('"x"'), `${which}: ${r.body}`);
      if (which !== 'notAList') assert.ok(r.body.includes('echo') || which === 'escaped', `${which} keeps echo: ${r.body}`);
    }
  });

  it('fails closed on answers it cannot read: a non-JSON body or a compressed one gets 502, a non-JSON SSE event is dropped', async () => {
    let which = 'text';
    const srv = await hostile((_req, _body, res) => {
      if (which === 'text') res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"rm-rf"}]}');
      else if (which === 'gzip') res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }).end(gzipSync(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: [tool('rm-rf')] } })));
      else {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`event: endpoint\ndata: /messages?sessionId=1\n\n: keep-alive\n\ndata: {"tools":[{"name":"rm-rf"}\n\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: 1, result: { tools: [tool('echo')] } })}\n\n`);
      }
    });
    const { gate, base, logs } = await gateTo(srv.port, { tools: ['echo'] });
    for (which of ['text', 'gzip']) {
      const r = await post(gate.port, base, JSON.stringify(list(1)));
      assert.equal(r.status, 502, which);
      assert.match(r.body, /could not be checked against this share's tool policy/);
      assert.ok(!r.body.includes('rm-rf'));
    }
    which = 'sse';
    const r = await post(gate.port, base, JSON.stringify(list(1)));
    assert.equal(r.status, 200);
    assert.ok(r.body.includes(': keep-alive') && r.body.includes('echo') && !r.body.includes('rm-rf'), r.body);
    assert.ok(r.body.startsWith('event: endpoint\ndata: /messages?sessionId=1\n\n'), 'the old SSE transport\'s endpoint event passes as it is');
    await new Promise((res) => setTimeout(res, 20));
    assert.ok(logs.some((l) => /dropped 1 SSE event/.test(l)), logs.join('\n'));
  });

  it('read-only trusts only the latest list, and a tool listed twice must be read-only both times', async () => {
    let tools = [tool('peek', true), tool('poke', false), tool('twice', true), tool('twice', false)];
    const srv = await hostile((_req, body, res) => {
      const m = JSON.parse(body) as { id: number; method: string };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: m.id, result: m.method === 'tools/list' ? { tools } : { content: [] } }));
    });
    const { gate, base } = await gateTo(srv.port, { readOnly: true });
    const r = await post(gate.port, base, JSON.stringify(list(1)));
    assert.deepEqual((JSON.parse(r.body) as { result: { tools: Array<{ name: string }> } }).result.tools.map((t) => t.name), ['peek']);
    const isRefused = async (name: string): Promise<boolean> => (JSON.parse((await post(gate.port, base, JSON.stringify(call(2, name)))).body) as { error?: unknown }).error !== undefined;
    assert.equal(await isRefused('peek'), false);
    assert.equal(await isRefused('poke'), true);
    assert.equal(await isRefused('twice'), true);
    // The server changes its word: peek is no longer read-only.
    tools = [tool('peek', false)];
    await post(gate.port, base, JSON.stringify(list(3)));
    assert.equal(await isRefused('peek'), true);
  });

  it('refuses what it cannot judge: not JSON (-32700), not JSON-RPC, over the cap (413, declared or chunked), compressed (415), Mcp-* headers against the body (-32020), WebSocket (403)', async () => {
    const srv = await hostile((_req, _body, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    const { gate, base } = await gateTo(srv.port, { tools: ['echo'], maxBodyBytes: 2048 });
    const notJson = await post(gate.port, base, '{"jsonrpc":"2.0",');
    assert.equal(notJson.status, 400);
    assert.equal((JSON.parse(notJson.body) as { error: { code: number } }).error.code, -32700);
    const notRpc = await post(gate.port, base, '[1,2]');
    assert.equal(notRpc.status, 400);
    assert.equal((JSON.parse(notRpc.body) as { error: { code: number } }).error.code, -32600);
    const big = JSON.stringify(call(1, 'echo', { message: 'x'.repeat(4000) }));
    assert.equal((await post(gate.port, base, big)).status, 413);
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: gate.port, method: 'POST', path: base, headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.write(big.slice(0, 1500));
      setTimeout(() => req.end(big.slice(1500)), 20);
    });
    assert.equal(chunked, 413);
    assert.equal((await post(gate.port, base, gzipSync(JSON.stringify(call(1, 'echo'))), { 'content-encoding': 'gzip' })).status, 415);
    const mismatch = await post(gate.port, base, JSON.stringify(call(7, 'echo')), { 'mcp-method': 'tools/call', 'mcp-name': 'rm-rf' });
    assert.equal(mismatch.status, 400);
    assert.deepEqual((JSON.parse(mismatch.body) as { id: number; error: { code: number } }).error.code, -32020);
    assert.equal(srv.bodies.length, 0, 'none of these reached the origin');
    const ws = await new Promise<string>((resolve, reject) => {
      const s = net.connect(gate.port, '127.0.0.1', () => s.write(`GET ${base} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`));
      let text = '';
      s.on('data', (c) => (text += c.toString()));
      s.on('end', () => resolve(text));
      s.on('error', reject);
    });
    assert.match(ws, /^HTTP\/1\.1 403/);
    // The same body within the cap and with matching headers goes through.
    assert.equal((await post(gate.port, base, JSON.stringify(call(8, 'echo')), { 'mcp-method': 'tools/call', 'mcp-name': 'echo' })).status, 200);
    assert.equal(srv.bodies.length, 1);
  });
});

describe('tool policy: checking and describing', () => {
  it('checkPolicy takes names and read_only, refuses bad input with the reason, and is undefined when it limits nothing', () => {
    assert.deepEqual(checkPolicy({ tools: ['echo', 'echo', 'get-sum'] }), { tools: ['echo', 'get-sum'] });
    assert.deepEqual(checkPolicy({ readOnly: true }), { readOnly: true });
    assert.equal(checkPolicy({}), undefined);
    assert.equal(checkPolicy({ readOnly: false }), undefined);
    assert.deepEqual(checkPolicy({ tools: [] }), { tools: [] }, 'an empty allowlist shares no tool');
    assert.throws(() => checkPolicy({ tools: 'echo' }), /a list of tool names/);
    assert.throws(() => checkPolicy({ tools: ['two words'] }), /is not a tool name/);
    assert.throws(() => checkPolicy({ tools: [3] }), /is not a tool name/);
    assert.throws(() => checkPolicy({ readOnly: 'yes' }), /true or false/);
    assert.equal(describePolicy({ readOnly: true, tools: ['a'] }), 'read-only tools of 1 (a)');
    assert.equal(describePolicy({ readOnly: true }), 'read-only tools');
    assert.equal(describePolicy({ tools: [] }), 'no tools');
    assert.equal(describePolicy({ tools: ['a', 'b', 'c', 'd', 'e'] }), '5 tools (a, b, c, d, …)');
    assert.equal(describePolicy(undefined), undefined);
  });

  it('the guard alone: a notification of a refused tool is dropped without an answer; a call without a name is invalid', () => {
    const g = new ToolGuard({ tools: ['echo'] });
    const v = g.judge(Buffer.from(JSON.stringify({ jsonrpc: '2.0', method: 'tools/call', params: { name: 'rm-rf' } })));
    assert.deepEqual(v, { kind: 'answer', body: '', refused: ['rm-rf'] });
    const n = g.judge(Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: {} })));
    assert.equal(n.kind, 'answer');
    assert.match(n.kind === 'answer' ? n.body : '', /needs a tool name/);
  });
});

/**
 * The inspector's recorder, on the gate's path: a real stdio server (server-everything) behind the
 * bridge, behind the gate, driven by the SDK 1.x client and raw requests (a batch, the 2026-07-28
 * headers, an oversized body); and its redaction and bounds on their own.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startStdioBridge, type StdioBridge } from '../../src/bridge/stdioBridge';
import { startAccessGate, type AccessGate } from '../../src/core/gate/accessGate';
import { Recorder, type NewClient } from '../../src/core/gate/recorder';
import { postJson } from '../support/origins';

const REPO = path.resolve(__dirname, '..', '..');
const EVERYTHING = path.join(REPO, 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js');
const closers: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
});

async function rig(options: ConstructorParameters<typeof Recorder>[0] = {}): Promise<{ gate: AccessGate; bridge: StdioBridge; recorder: Recorder; secret: string; clients: NewClient[] }> {
  const bridge = await startStdioBridge({ server: { name: 'everything', command: process.execPath, args: [EVERYTHING, 'stdio'] }, log: () => undefined });
  closers.push(() => bridge.close());
  let secrets: string[] = [];
  const recorder = new Recorder({ ...options, secrets: () => secrets });
  const gate = await startAccessGate({ origin: { host: '127.0.0.1', port: bridge.port }, handler: (req, res) => bridge.handle(req, res), onPass: (req, res, info) => recorder.tap(req, res, info) });
  closers.push(() => gate.close());
  const secret = gate.secretPath().slice(1);
  secrets = [secret];
  const clients: NewClient[] = [];
  recorder.onDidSeeClient((c) => clients.push(c));
  return { gate, bridge, recorder, secret, clients };
}

const post = postJson;

const settle = () => new Promise((r) => setTimeout(r, 50));

describe('inspector recorder (gate → bridge → server-everything)', () => {
  it('records each call of a real SDK client: client from initialize, method, tool, status, sizes; bodies without the secret; the new client announced once', async () => {
    const { gate, recorder, secret, clients } = await rig();
    const client = new Client({ name: 'claude-ai', version: '1.2' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${gate.port}/${secret}/mcp`), { requestInit: { headers: { 'cf-connecting-ip': '203.0.113.7', 'cf-ipcountry': 'DE' } } }));
    await client.callTool({ name: 'echo', arguments: { message: `my token is ${secret}` } });
    await client.listTools();
    await client.close();
    await settle();
    const calls = recorder.list();
    const methods = calls.map((c) => c.method);
    assert.ok(methods.includes('initialize') && methods.includes('notifications/initialized') && methods.includes('tools/list'), methods.join(', '));
    const echo = calls.find((c) => c.method === 'tools/call');
    assert.ok(echo);
    assert.equal(echo.name, 'echo');
    assert.equal(echo.client, 'claude-ai 1.2');
    assert.equal(echo.status, 200);
    assert.equal(echo.remote_ip, '203.0.113.7');
    assert.equal(echo.country, 'DE');
    assert.equal(echo.link, 'share secret');
    assert.equal(echo.error_code, null);
    assert.ok(echo.bytes_in > 0 && echo.bytes_out > 0);
    assert.match(echo.request_body ?? '', /my token is <secret>/);
    assert.ok(!JSON.stringify(calls).includes(secret), 'the share secret is nowhere in the record');
    assert.deepEqual(clients.map((c) => [c.client, c.country]), [['claude-ai 1.2', 'DE']], 'announced once, with its country');
  });

  it('a batch is split into its calls, each with its own answer; a JSON-RPC error code is kept; 2026-07-28 headers that disagree with the body are flagged', async () => {
    const { gate, recorder, secret } = await rig();
    const init = await post(gate.port, `/${secret}/mcp`, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '9' } } }));
    const session = String(init.headers['mcp-session-id']);
    const h = { 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' };
    await post(gate.port, `/${secret}/mcp`, JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }), h);
    const batch = JSON.stringify([
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { message: 'a' } } },
      { jsonrpc: '2.0', id: 3, method: 'no/such/method', params: {} },
      { jsonrpc: '2.0', id: 4, method: 'resources/read', params: { uri: 'demo://resource/static/document/architecture.md' } },
    ]);
    const br = await post(gate.port, `/${secret}/mcp`, batch, h);
    assert.equal(br.status, 200);
    await post(gate.port, `/${secret}/mcp`, JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'echo', arguments: { message: 'b' } } }), { ...h, 'mcp-method': 'tools/call', 'mcp-name': 'get-env' });
    // The client's answer to a server request (no method): named as such.
    await post(gate.port, `/${secret}/mcp`, JSON.stringify({ jsonrpc: '2.0', id: 'srv-1', result: { roots: [] } }), h);
    await settle();
    const calls = recorder.list();
    assert.equal(calls.at(-1)?.method, 'client response');
    calls.pop();
    const batchRows = calls.filter((c) => c.method === 'no/such/method' || (c.method === 'tools/call' && !c.header_mismatch) || c.method === 'resources/read');
    assert.deepEqual(batchRows.map((c) => [c.method, c.name, c.error_code]), [['tools/call', 'echo', null], ['no/such/method', null, -32601], ['resources/read', 'demo://resource/static/document/architecture.md', null]], `answer: ${JSON.stringify(br.body.replace(/"text":"(\\.|[^"\\])*"/g, "T"))}\nrecorded: ${JSON.stringify(batchRows[0]?.response_body?.replace(/"text":"(\\.|[^"\\])*"/g, "T"))}`);
    assert.ok(batchRows.every((c) => c.client === 'raw 9'), 'the client from its initialize, by session');
    const lying = calls.at(-1);
    assert.equal(lying?.header_mismatch, true, 'Mcp-Name says get-env, the body calls echo');
  });

  it('bounds: bodies cut at maxBodyBytes with their size; at most maxEntries per share; capture off keeps no body', async () => {
    const { gate, recorder, secret } = await rig({ maxBodyBytes: 64, maxEntries: 3 });
    for (let i = 0; i < 5; i++) await post(gate.port, `/${secret}/mcp`, JSON.stringify({ jsonrpc: '2.0', id: i, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: `c${i}`, version: '1' }, pad: 'x'.repeat(200) } }));
    await settle();
    const calls = recorder.list();
    assert.equal(calls.length, 3);
    const last = calls.at(-1);
    assert.ok(last && (last.request_body ?? '').length <= 64);
    assert.ok((last?.request_truncated_from ?? 0) > 200, 'the full size is noted');
    const off = await rig({ captureBodies: false });
    await post(off.gate.port, `/${off.secret}/mcp`, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }));
    await settle();
    assert.equal(off.recorder.list()[0]?.request_body, null);
    assert.equal(off.recorder.list()[0]?.method, 'initialize', 'still parsed, only not kept');
  });
});

describe('Recorder.redact', () => {
  it('replaces the gate secrets, Bearer values and sensitive keys; leaves the rest', () => {
    const r = new Recorder({ secrets: () => ['S3CR3T-0123456789abcdef'] });
    const out = r.redact(JSON.stringify({ url: 'https://x/S3CR3T-0123456789abcdef/mcp', headers: { Authorization: 'Bearer abcdefghijkl' }, api_key: 'k1', note: 'Bearer zyxwvutsrqpo', message: 'hello' }));
    assert.doesNotMatch(out, /S3CR3T|abcdefghijkl|zyxwvutsrqpo|"k1"/);
    assert.match(out, /<secret>/);
    assert.match(out, /"message":"hello"/);
  });
});

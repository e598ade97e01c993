// file-timeout: 120 s (real stdio servers per session, ~21 s alone; test/support/runUnit.ts)
/**
 * The stdio bridge with real servers from npm (server-everything, server-filesystem) and real
 * clients (SDK 1.x, SDK 2.x speaking 2026-07-28 first), plus raw requests for every HTTP rule.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, promises as fs, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema, LoggingMessageNotificationSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { reapChildren, type StdioServerDefinition } from '../../src/bridge/child';
import { startStdioBridge, type StdioBridge, type StdioBridgeOptions } from '../../src/bridge/stdioBridge';
import { REPO, isAlive, waitFor, waitGone } from '../support/proc';

const EVERYTHING: StdioServerDefinition = {
  name: 'everything',
  command: process.execPath,
  args: [path.join(REPO, 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js'), 'stdio'],
};
const work = mkdtempSync(path.join(tmpdir(), 'bridge-test-'));
const FILESYSTEM: StdioServerDefinition = {
  name: 'filesystem',
  command: process.execPath,
  args: [path.join(REPO, 'node_modules', '@modelcontextprotocol', 'server-filesystem', 'dist', 'index.js'), work],
};
writeFileSync(path.join(work, 'hello.txt'), 'hello from the bridge\n');

const bridges: StdioBridge[] = [];
const clients: Client[] = [];
after(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  await Promise.all(bridges.map((b) => b.close()));
  await fs.rm(work, { recursive: true, force: true });
});

const logs: string[] = [];
async function bridge(options: Partial<StdioBridgeOptions> & { server?: StdioServerDefinition } = {}): Promise<StdioBridge> {
  // Direct clients here; the gate's token is checked in its own test.
  const b = await startStdioBridge({ server: EVERYTHING, killGraceMs: 1000, accessToken: null, log: (l, m) => logs.push(`${l} ${m}`), ...options });
  bridges.push(b);
  return b;
}

async function connect(b: StdioBridge, name = 'test', capabilities: ConstructorParameters<typeof Client>[1] = {}): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name, version: '1.0.0' }, capabilities);
  const transport = new StreamableHTTPClientTransport(new URL(b.url + b.path));
  await client.connect(transport);
  clients.push(client);
  return { client, transport };
}

function text(r: unknown): string {
  return ((r as CallToolResult).content ?? []).map((c) => (c.type === 'text' ? c.text : '')).join('');
}

async function post(b: StdioBridge, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: string }> {
  const res = await fetch(b.url + b.path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: await res.text() };
}

const INIT = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } };

describe('stdio bridge: a real server through the SDK 1.x client', () => {
  it('lists tools and calls echo; the child gets none of our secrets', async () => {
    const b = await bridge({ baseEnv: { ...process.env, MCP_TUNNEL_SHARE_SECRET: 'x'.repeat(40), TUNNEL_TOKEN: 'tok', PLAIN_VAR: 'kept' } });
    const { client } = await connect(b);
    const tools = await client.listTools();
    assert.ok(tools.tools.some((t) => t.name === 'echo'));
    assert.equal(text(await client.callTool({ name: 'echo', arguments: { message: 'hi there' } })), 'Echo: hi there');
    const env = text(await client.callTool({ name: 'get-env', arguments: {} }));
    assert.match(env, /PLAIN_VAR/);
    assert.doesNotMatch(env, /MCP_TUNNEL_SHARE_SECRET|TUNNEL_TOKEN/);
  });

  it('passes sampling, elicitation and roots requests to the right client, and progress on the call stream', async () => {
    const b = await bridge();
    const client = new Client({ name: 'rich', version: '1.0.0' }, { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } });
    client.setRequestHandler(CreateMessageRequestSchema, () => ({ model: 'test-model', role: 'assistant', content: { type: 'text', text: 'sampled answer' } }));
    client.setRequestHandler(ElicitRequestSchema, () => ({ action: 'accept', content: { color: 'blue', name: 'Alice', check: true, email: 'a@example.com', homepage: 'https://example.com', birthdate: '2000-01-01', integer: 3, number: 1.5, enum: 'option1', untitledSingleSelectEnum: 'option1', untitledMultipleSelectEnum: ['option1'], titledSingleSelectEnum: 'option1', titledMultipleSelectEnum: ['option1'], legacyTitledEnum: 'option1' } }));
    client.setRequestHandler(ListRootsRequestSchema, () => ({ roots: [{ uri: 'file:///only/mine', name: 'mine' }] }));
    await client.connect(new StreamableHTTPClientTransport(new URL(b.url + b.path)));
    clients.push(client);
    const sampled = await client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'hello', maxTokens: 10 } });
    assert.match(JSON.stringify(sampled), /sampled answer/);
    const elicited = await client.callTool({ name: 'trigger-elicitation-request', arguments: {} });
    assert.match(JSON.stringify(elicited), /accept|Alice|blue/i);
    const roots = await client.callTool({ name: 'get-roots-list', arguments: {} });
    assert.match(JSON.stringify(roots), /only\/mine/);
    const progress: number[] = [];
    const long = await client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 0.5, steps: 3 } }, undefined, { onprogress: (p) => progress.push(p.progress) });
    assert.match(text(long), /completed/i);
    assert.deepEqual(progress, [1, 2, 3]);
  });

  it('two clients at once see no crosstalk: each its own child, roots and logging', async () => {
    const b = await bridge();
    const mk = async (name: string, root: string): Promise<{ client: Client; logs: string[] }> => {
      const client = new Client({ name, version: '1' }, { capabilities: { roots: {} } });
      client.setRequestHandler(ListRootsRequestSchema, () => ({ roots: [{ uri: `file:///${root}`, name: root }] }));
      const got: string[] = [];
      client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void got.push(JSON.stringify(n.params)));
      await client.connect(new StreamableHTTPClientTransport(new URL(b.url + b.path)));
      clients.push(client);
      return { client, logs: got };
    };
    const a = await mk('alice', 'alice-root');
    const c = await mk('carol', 'carol-root');
    assert.equal(b.sessionCount(), 2);
    const [ra, rc] = await Promise.all([a.client.callTool({ name: 'get-roots-list', arguments: {} }), c.client.callTool({ name: 'get-roots-list', arguments: {} })]);
    assert.match(JSON.stringify(ra), /alice-root/);
    assert.doesNotMatch(JSON.stringify(ra), /carol-root/);
    assert.match(JSON.stringify(rc), /carol-root/);
    assert.doesNotMatch(JSON.stringify(rc), /alice-root/);
    await a.client.setLoggingLevel('debug');
    await a.client.callTool({ name: 'toggle-simulated-logging', arguments: {} });
    const simulated = (l: string): boolean => !/Roots updated/.test(l);
    await waitFor(() => (a.logs.some(simulated) ? true : undefined), 15_000, 'a simulated log message for alice');
    // carol's child logs only about carol's own roots; alice's simulated logging never reaches carol
    assert.deepEqual(c.logs.filter(simulated), [], c.logs.join('\n'));
    assert.equal(text(await c.client.callTool({ name: 'echo', arguments: { message: 'c' } })), 'Echo: c');
  });

  it('shares server-filesystem: reads a file of the shared folder', async () => {
    const b = await bridge({ server: FILESYSTEM });
    const check = await b.check();
    assert.equal(check.ok, true, check.message);
    assert.ok((check.tools ?? 0) >= 5, `tools: ${check.tools}`);
    const { client } = await connect(b);
    const r = await client.callTool({ name: 'read_text_file', arguments: { path: path.join(work, 'hello.txt') } });
    assert.match(text(r), /hello from the bridge/);
  });
});

describe('stdio bridge: clients of the 2026-07-28 revision (SDK 2.x)', () => {
  it('the 2.x client, default and auto negotiation, lists tools and calls echo', async () => {
    const b = await bridge();
    const sdk2 = (await import('@modelcontextprotocol/client'));
    for (const versionNegotiation of [undefined, { mode: 'auto' as const }]) {
      const client = new sdk2.Client({ name: 'modern', version: '2' }, { capabilities: {}, ...(versionNegotiation ? { versionNegotiation } : {}) });
      await client.connect(new sdk2.StreamableHTTPClientTransport(new URL(b.url + b.path)));
      const tools = await client.listTools();
      assert.ok(tools.tools.some((t) => t.name === 'echo'), `tools with ${JSON.stringify(versionNegotiation)}`);
      const r = await client.callTool({ name: 'echo', arguments: { message: 'modern' } });
      assert.match(JSON.stringify(r), /Echo: modern/);
      await client.close();
    }
  });

  it('a sessionless first request gets 400 with UnsupportedProtocolVersion listing the 2025 revisions', async () => {
    const b = await bridge({ warmSpare: false });
    const r = await post(b, { jsonrpc: '2.0', id: 'p1', method: 'server/discover', params: { _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } } }, { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'server/discover' });
    assert.equal(r.status, 400);
    const body = JSON.parse(r.body) as { id: string; error: { code: number; data: { supported: string[] } } };
    assert.equal(body.id, 'p1');
    assert.equal(body.error.code, -32022);
    assert.ok(body.error.data.supported.includes('2025-11-25'));
    assert.equal(b.childCount(), 0, 'nothing spawned');
  });
});

describe('stdio bridge: answers of a batch', () => {
  it('a response that came before the switch to SSE is not lost: every id of the batch is answered once, in order of arrival', async () => {
    // A server that answers a batch's first call, then sends a notification (the switch to SSE), then the second call.
    const script = [
      "let buf = '';",
      "const out = (m) => process.stdout.write(JSON.stringify(m) + '\\n');",
      "process.stdin.on('data', (c) => { buf += c; let i; while ((i = buf.indexOf('\\n')) >= 0) { const line = buf.slice(0, i); buf = buf.slice(i + 1); if (!line) continue; const m = JSON.parse(line);",
      "  if (m.method === 'initialize') out({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'ordered', version: '1' } } });",
      "  else if (m.method === 'first') out({ jsonrpc: '2.0', id: m.id, error: { code: -32601, message: 'Method not found' } });",
      "  else if (m.method === 'second') { out({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'between' } }); out({ jsonrpc: '2.0', id: m.id, result: {} }); }",
      '} });',
    ].join('\n');
    const b = await bridge({ server: { name: 'ordered', command: process.execPath, args: ['-e', script] }, warmSpare: false });
    const init = await post(b, INIT);
    const session = init.headers.get('mcp-session-id') ?? '';
    const h = { 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' };
    const r = await post(b, [{ jsonrpc: '2.0', id: 'a', method: 'first' }, { jsonrpc: '2.0', id: 'b', method: 'second' }], h);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /text\/event-stream/);
    const ids = [...r.body.matchAll(/^data: (.*)$/gm)].map((m) => (JSON.parse(m[1] ?? '{}') as { id?: string }).id ?? 'notification');
    assert.deepEqual(ids, ['a', 'notification', 'b']);
  });
});

describe('stdio bridge: sessions, limits and the HTTP rules', () => {
  it('only its gate drives it: without its token 401 and nothing spawned; with it, a session', async () => {
    const b = await bridge({ accessToken: undefined, warmSpare: false }); // undefined: the default, a random token
    assert.ok(b.accessToken && b.accessToken.length >= 40);
    assert.equal((await post(b, INIT)).status, 401);
    assert.equal((await post(b, INIT, { authorization: 'Bearer wrong' })).status, 401);
    assert.equal(b.childCount(), 0);
    const ok = await post(b, INIT, { authorization: `Bearer ${b.accessToken}` });
    assert.equal(ok.status, 200, ok.body);
  });


  it('unknown or deleted session → 404 (never 400); a missing session on GET → 400; wrong method → 405', async () => {
    const b = await bridge({ warmSpare: false });
    const unknown = await post(b, { jsonrpc: '2.0', id: 2, method: 'tools/list' }, { 'mcp-session-id': 'no-such-session' });
    assert.equal(unknown.status, 404);
    const init = await post(b, INIT);
    assert.equal(init.status, 200);
    const sid = init.headers.get('mcp-session-id');
    assert.ok(sid);
    const list = await post(b, { jsonrpc: '2.0', id: 2, method: 'tools/list' }, { 'mcp-session-id': sid });
    assert.equal(list.status, 200);
    assert.match(list.body, /echo/);
    const del = await fetch(b.url + b.path, { method: 'DELETE', headers: { 'mcp-session-id': sid } });
    assert.equal(del.status, 200);
    assert.equal((await post(b, { jsonrpc: '2.0', id: 3, method: 'tools/list' }, { 'mcp-session-id': sid })).status, 404);
    await waitFor(() => (b.childCount() === 0 ? true : undefined), 5000, 'the child ended with its session');
    assert.equal((await fetch(b.url + b.path, { headers: { accept: 'text/event-stream' } })).status, 400);
    assert.equal((await fetch(b.url + b.path, { method: 'PUT' })).status, 405);
    assert.equal((await fetch(b.url + '/other', { method: 'POST' })).status, 404);
    assert.equal((await post(b, '{not json')).status, 400);
    assert.equal((await post(b, INIT, { 'content-type': 'text/plain' })).status, 415);
  });

  it('at most maxSessions: beyond, initialize gets 503 with a JSON-RPC error and nothing is spawned', async () => {
    const b = await bridge({ maxSessions: 2, warmSpare: false });
    assert.equal((await post(b, INIT)).status, 200);
    assert.equal((await post(b, INIT)).status, 200);
    assert.equal(b.childCount(), 2);
    const third = await post(b, INIT);
    assert.equal(third.status, 503);
    assert.match((JSON.parse(third.body) as { error: { message: string } }).error.message, /2 live sessions/);
    assert.equal(b.childCount(), 2);
  });

  it('20 sessions opened and abandoned: never more than maxSessions children, none after idle', async () => {
    const b = await bridge({ maxSessions: 4, idleTimeoutMs: 400, warmSpare: false });
    let peak = 0;
    for (let i = 0; i < 20; i++) {
      await post(b, INIT);
      peak = Math.max(peak, b.childCount());
    }
    assert.ok(peak <= 4, `peak ${peak}`);
    await waitFor(() => (b.sessionCount() === 0 && b.childCount() === 0 ? true : undefined), 10_000, 'idle sessions ended');
  });

  it('kill -9 of the child mid-call: the pending call gets an error naming the exit; a new session works', async () => {
    const b = await bridge();
    const { client } = await connect(b);
    const call = client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 5, steps: 5 } });
    await new Promise((r) => setTimeout(r, 300));
    const childPid = b.listSessions()[0]?.pid;
    assert.ok(childPid);
    process.kill(childPid, 'SIGKILL');
    await assert.rejects(call, /killed by SIGKILL/);
    await waitFor(() => (b.sessionCount() === 0 ? true : undefined), 5000, 'the session ended');
    const again = await connect(b);
    assert.equal(text(await again.client.callTool({ name: 'echo', arguments: { message: 'back' } })), 'Echo: back');
  });
});

describe('stdio bridge: fail fast at share time', () => {
  it('a good server: ok with its tool count', async () => {
    const b = await bridge({ warmSpare: false });
    const c = await b.check();
    assert.equal(c.ok, true, c.message);
    assert.ok((c.tools ?? 0) >= 10);
    await waitFor(() => (b.childCount() === 0 ? true : undefined), 5000, 'the check child ended');
  });

  it('a missing command: says so, with the fix', async () => {
    const b = await bridge({ server: { name: 'missing', command: 'no-such-mcp-server-here', args: [] }, warmSpare: false });
    const c = await b.check();
    assert.equal(c.ok, false);
    assert.match(c.message ?? '', /command not found.*no-such-mcp-server-here.*PATH/);
    assert.match(c.message ?? '', /full path/);
  });

  it('a server that crashes: exit code and its stderr', async () => {
    const b = await bridge({ server: { name: 'crashy', command: process.execPath, args: ['-e', 'console.error("boom: missing API_KEY"); process.exit(3)'] }, warmSpare: false });
    const c = await b.check();
    assert.equal(c.ok, false);
    assert.match(c.message ?? '', /exited with code 3/);
    assert.match(c.message ?? '', /boom: missing API_KEY/);
  });

  it('a server that never answers: a timeout, and the child is ended', async () => {
    const b = await bridge({ server: { name: 'mute', command: process.execPath, args: ['-e', 'setInterval(() => {}, 1000)'] }, warmSpare: false });
    const c = await b.check(500);
    assert.equal(c.ok, false);
    assert.match(c.message ?? '', /did not answer initialize within/);
    await waitFor(() => (b.childCount() === 0 ? true : undefined), 5000, 'the mute child ended');
  });
});

describe('stdio bridge: children never outlive the bridge', () => {
  it('close() ends every child (sessions and the spare)', async () => {
    const b = await bridge();
    await connect(b);
    await connect(b);
    await waitFor(() => (b.childCount() === 3 ? true : undefined), 10_000, 'two sessions and a spare');
    await b.close();
    assert.equal(b.childCount(), 0);
  });

  it('reapChildren ends a recorded child whose owner died, and leaves a reused PID alone', { skip: process.platform !== 'linux' ? 'start times come from /proc' : false }, async () => {
    const stateDir = mkdtempSync(path.join(tmpdir(), 'bridge-reap-'));
    const orphan = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { detached: true, stdio: 'ignore' });
    orphan.unref();
    const stranger = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { detached: true, stdio: 'ignore' });
    stranger.unref();
    const dead = spawn(process.execPath, ['-e', '0']);
    await new Promise((r) => dead.once('exit', r));
    const ticks = async (pid: number): Promise<string> => {
      const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
    };
    const rec = (id: string, pid: number, startTicks: string): string => JSON.stringify({ id, pid, ownerPid: dead.pid, argv: [process.execPath, '-e', 'x'], startedAt: Date.now(), startTicks });
    try {
      await fs.writeFile(path.join(stateDir, 'child-aaaaaaaaaaaa.json'), rec('aaaaaaaaaaaa', orphan.pid ?? 0, await ticks(orphan.pid ?? 0)));
      await fs.writeFile(path.join(stateDir, 'child-bbbbbbbbbbbb.json'), rec('bbbbbbbbbbbb', stranger.pid ?? 0, '1'));
      assert.equal(await reapChildren(stateDir), 1);
      assert.equal(await waitGone(orphan.pid ?? 0), true, 'the orphan was ended');
      assert.equal(isAlive(stranger.pid ?? 0), true, 'the reused PID was left alone');
      assert.deepEqual(await fs.readdir(stateDir), []);
    } finally {
      for (const p of [orphan, stranger]) {
        try {
          process.kill(p.pid ?? 0, 'SIGKILL');
        } catch {
          // gone
        }
      }
      await fs.rm(stateDir, { recursive: true, force: true });
    }
  });
});


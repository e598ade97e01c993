/**
 * `mcp-tunnel mcp` end to end: the real SDK Client drives the built CLI (dist/cli.js; build with
 * `node esbuild.mjs`) over stdio and over Streamable HTTP, with the fake cloudflared really
 * proxying its loopback "public" port to an origin that rejects foreign Host headers.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ResourceUpdatedNotificationSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { get, startStrictOrigin, type Origin } from '../support/origins';
import { FAKE_CLOUDFLARED, REPO, isAlive, publicPath, readFakeState, waitFor, waitGone } from '../support/proc';

const CLI = path.join(REPO, 'dist', 'cli.js');
/** Generous: two cores shared with other work. */
const STEP_MS = 20_000;

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]);
}

function exitOf(child: ChildProcess): Promise<Exit> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

async function call(client: Client, name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
  return (await client.callTool({ name, arguments: args })) as CallToolResult;
}

function text(result: CallToolResult): string {
  const first = result.content[0];
  assert.ok(first && first.type === 'text', 'first content is text');
  return first.text;
}

function structured(result: CallToolResult): Record<string, unknown> {
  assert.ok(result.structuredContent, `has structuredContent: ${JSON.stringify(result)}`);
  assert.deepEqual(JSON.parse(text(result)), result.structuredContent);
  return result.structuredContent;
}

async function readJson(client: Client, uri: string): Promise<Record<string, unknown>> {
  const res = await client.readResource({ uri });
  const c = res.contents[0];
  assert.ok(c && 'text' in c, 'text resource');
  return JSON.parse(c.text) as Record<string, unknown>;
}

/** run-*.json records the controller keeps while cloudflared runs. */
function runRecords(stateDir: string): string[] {
  try {
    return readdirSync(stateDir).filter((f) => f.startsWith('run-'));
  } catch {
    return [];
  }
}

/** `resources/updated` notifications, awaited by URI and predicate. */
class Updates {
  private readonly waiters: { uri: string; resolve: () => void }[] = [];
  readonly seen: string[] = [];

  constructor(client: Client) {
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
      this.seen.push(n.params.uri);
      for (const w of this.waiters.filter((x) => x.uri === n.params.uri)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve();
      }
    });
  }

  /** The next notification for `uri` (register before triggering it). */
  next(uri: string): Promise<void> {
    return new Promise((resolve) => this.waiters.push({ uri, resolve }));
  }
}

let work: string;
let origin: Origin;

function cliEnv(): Record<string, string> {
  return {
    PATH: process.env['PATH'] ?? '',
    HOME: work,
    MCP_TUNNEL_STATE_DIR: path.join(work, 'state'),
    FAKE_CLOUDFLARED_STATE_DIR: path.join(work, 'fake'),
    FAKE_CLOUDFLARED_NODE: process.execPath,
    MCP_TUNNEL_CLOUDFLARED_ENV: 'FAKE_CLOUDFLARED_*',
  };
}

describe('mcp-tunnel mcp (real CLI, real SDK client)', { concurrency: false }, () => {
  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'mcpt-mcpcli-'));
    origin = await startStrictOrigin();
  });
  after(async () => {
    await origin.close();
    rmSync(work, { recursive: true, force: true });
  });

  describe('stdio', { concurrency: false }, () => {
    let transport: StdioClientTransport;
    let client: Client;
    let child: ChildProcess;
    let exited: Promise<Exit>;
    let updates: Updates;
    let stderr = '';

    before(async () => {
      transport = new StdioClientTransport({ command: process.execPath, args: [CLI, 'mcp', '--cloudflared', FAKE_CLOUDFLARED], env: cliEnv(), stderr: 'pipe' });
      transport.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      client = new Client({ name: 'mcp-cli-test', version: '1.0.0' });
      updates = new Updates(client);
      await withTimeout(client.connect(transport), STEP_MS, 'initialize');
      // The transport keeps its ChildProcess private; the test needs its exit code.
      child = (transport as unknown as { _process: ChildProcess })._process;
      assert.ok(child?.pid, 'the CLI runs');
      exited = exitOf(child);
    });
    after(async () => {
      await client.close();
    });

    it('initialize: server info, capabilities; tools/list has the four tools', async () => {
      assert.equal(client.getServerVersion()?.name, 'mcp-tunnel');
      const caps = client.getServerCapabilities();
      assert.ok(caps?.tools, 'tools capability');
      assert.equal(caps?.resources?.subscribe, true);
      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((t) => t.name).sort(), ['get_tunnel_status', 'list_shares', 'start_tunnel', 'stop_tunnel']);
      const status = structured(await call(client, 'get_tunnel_status'));
      assert.equal(status['status'], 'stopped');
    });

    it('bad agent input: a cloud-metadata host is refused, naming the host rule', async () => {
      const r = await call(client, 'start_tunnel', { host: '169.254.169.254', port: origin.port });
      assert.equal(r.isError, true);
      assert.match(text(r), /host.*169\.254\.169\.254.*loopback/i);
      assert.equal(structured(await call(client, 'get_tunnel_status'))['status'], 'stopped', 'nothing started');
      assert.deepEqual(readdirSync(work).filter((f) => f === 'fake'), [], 'no cloudflared was run');
    });

    it('an agent asking for access "open" is refused (this host cannot ask the user), naming --allow-open; the schema says so', async () => {
      const { tools } = await client.listTools();
      const access = tools.find((t) => t.name === 'start_tunnel')?.inputSchema.properties?.['access'] as { description?: string } | undefined;
      assert.match(access?.description ?? '', /"open": anyone with the URL; refused by this server unless the user started it allowing open tunnels/);
      assert.doesNotMatch(access?.description ?? '', /asks the user/);
      const r = await call(client, 'start_tunnel', { port: origin.port, access: 'open' });
      assert.equal(r.isError, true);
      assert.match(text(r), /Refused: .*without the share secret.*restart `mcp-tunnel mcp` with --allow-open/);
      assert.equal(structured(await call(client, 'get_tunnel_status'))['status'], 'stopped', 'nothing started');
      assert.deepEqual(readdirSync(work).filter((f) => f === 'fake'), [], 'no cloudflared was run');
    });

    let pid: number;
    let url: string;

    it('start_tunnel: active, trycloudflare URL, mcp_url = url + share secret + /mcp (secret by default); only traffic with the secret reaches the strict origin', async () => {
      const r = await withTimeout(call(client, 'start_tunnel', { port: origin.port }), STEP_MS, 'start_tunnel');
      assert.equal(r.isError, undefined, text(r));
      const s = structured(r);
      assert.equal(s['status'], 'active');
      url = String(s['url']);
      assert.match(url, /^https:\/\/[a-z0-9-]+\.trycloudflare\.com$/);
      const mcpUrl = String(s['mcp_url']);
      assert.match(mcpUrl, new RegExp(`^${url}/[A-Za-z0-9_-]{43}/mcp$`));
      assert.equal(s['access'], 'secret');
      assert.equal(s['local_url'], `http://localhost:${origin.port}`);
      pid = Number(s['pid']);
      assert.ok(pid > 0 && isAlive(pid), 'cloudflared runs');
      await waitFor(() => (runRecords(path.join(work, 'state')).length === 1 ? true : undefined), 5000, 'a run record while it runs');

      const st = structured(await call(client, 'get_tunnel_status'));
      assert.equal(st['status'], 'active');
      assert.equal(st['active'], true);
      assert.equal(st['url'], url);
      assert.equal(st['mcp_url'], mcpUrl);
      assert.equal(st['pid'], pid);

      // Subscribe to the metrics before any traffic, so the poll that counts it notifies us.
      await client.subscribeResource({ uri: 'tunnel://metrics' });
      const fake = readFakeState(path.join(work, 'fake'), pid);
      assert.ok(fake, 'the fake cloudflared wrote its state');
      assert.equal(fake.url, url);
      const before = origin.hosts.length;
      assert.equal((await get(fake.publicPort, '/mcp?probe=0')).status, 401);
      assert.equal(origin.hosts.length, before, 'a request without the secret never reaches the origin');
      const res = await get(fake.publicPort, `${publicPath(mcpUrl)}?probe=1`);
      assert.equal(res.status, 200, res.body);
      assert.deepEqual(JSON.parse(res.body), { ok: true, path: '/mcp?probe=1', host: `localhost:${origin.port}` });
      assert.equal(origin.hosts.length, before + 1, 'the request reached the origin');
    });

    it('tunnel://metrics shows the request after a metrics poll', async () => {
      const deadline = Date.now() + STEP_MS;
      let m = await readJson(client, 'tunnel://metrics');
      // Both requests of the step before (the 401 and the 200), their statuses included: cloudflared
      // counts a request on arrival and its status when the response is done.
      const counted = (x: Record<string, unknown>) => Number(x['total_requests']) >= 2 && (x['responses_by_code'] as Record<string, number> | undefined)?.['200'] === 1;
      while (!counted(m)) {
        const left = deadline - Date.now();
        assert.ok(left > 0, `no request counted in time: ${JSON.stringify(m)}`);
        // Woken by the next metrics change (polled every 2 s); a short cap in case it came between.
        await withTimeout(updates.next('tunnel://metrics'), Math.min(left, 5000), 'metrics update').catch(() => undefined);
        m = await readJson(client, 'tunnel://metrics');
      }
      assert.equal(m['status'], 'active');
      assert.equal((m['responses_by_code'] as Record<string, number>)['401'], 1, 'the refused request is counted too');
      assert.equal(typeof m['read_at'], 'string');
      await client.unsubscribeResource({ uri: 'tunnel://metrics' });
    });

    it('subscribe tunnel://status, stop_tunnel: resources/updated arrives, cloudflared is gone', async () => {
      await client.subscribeResource({ uri: 'tunnel://status' });
      const updated = updates.next('tunnel://status');
      const r = await withTimeout(call(client, 'stop_tunnel'), STEP_MS, 'stop_tunnel');
      assert.equal(r.isError, undefined, text(r));
      assert.equal(structured(r)['status'], 'stopped');
      await withTimeout(updated, STEP_MS, 'resources/updated tunnel://status');
      assert.ok(await waitGone(pid, STEP_MS), 'cloudflared is gone after stop_tunnel');
      const status = await readJson(client, 'tunnel://status');
      assert.equal(status['status'], 'stopped');
      // The controller deletes the run record just after the exit, asynchronously.
      await waitFor(() => (runRecords(path.join(work, 'state')).length === 0 ? true : undefined), 5000, 'the run record to be removed');
    });

    it('closing the client (stdin end) stops a running tunnel, leaves no cloudflared, the CLI exits 0', async () => {
      const s = structured(await withTimeout(call(client, 'start_tunnel', { port: origin.port }), STEP_MS, 'second start_tunnel'));
      assert.equal(s['status'], 'active');
      assert.notEqual(s['url'], url, 'a new start gets a new URL');
      const pid2 = Number(s['pid']);
      assert.ok(isAlive(pid2));
      // What an MCP client does on close: end the server's stdin (no signal).
      child.stdin?.end();
      const exit = await withTimeout(exited, STEP_MS, 'the CLI to exit after stdin ended');
      assert.deepEqual(exit, { code: 0, signal: null }, stderr);
      assert.ok(await waitGone(pid2, 5000), 'cloudflared is gone with the CLI');
      assert.deepEqual(runRecords(path.join(work, 'state')), [], 'no run record left');
      assert.deepEqual(readdirSync(path.join(work, 'fake')).filter((f) => f.endsWith('.json')), [], 'the fake cloudflared removed its state: it exited');
    });
  });

  it('--allow-open: an agent may open a tunnel without the secret (the user allowed it up front); the schema says so', { timeout: 60_000 }, async () => {
    const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, 'mcp', '--allow-open', '--cloudflared', FAKE_CLOUDFLARED], env: cliEnv(), stderr: 'pipe' });
    const c = new Client({ name: 'mcp-cli-open-test', version: '1.0.0' });
    await withTimeout(c.connect(transport), STEP_MS, 'initialize');
    try {
      const { tools } = await c.listTools();
      const access = tools.find((t) => t.name === 'start_tunnel')?.inputSchema.properties?.['access'] as { description?: string } | undefined;
      assert.match(access?.description ?? '', /allowed here without asking/);
      const s = structured(await withTimeout(call(c, 'start_tunnel', { port: origin.port, access: 'open' }), STEP_MS, 'start_tunnel open'));
      assert.equal(s['status'], 'active');
      assert.equal(s['access'], 'open');
      assert.equal(s['mcp_url'], `${String(s['url'])}/mcp`);
      const pid = Number(s['pid']);
      assert.equal(structured(await withTimeout(call(c, 'stop_tunnel'), STEP_MS, 'stop_tunnel'))['status'], 'stopped');
      assert.ok(await waitGone(pid, STEP_MS));
    } finally {
      await c.close();
    }
  });

  it('shares over MCP: a second start_tunnel adds a share to the same tunnel; list_shares, tunnel://shares and stop_tunnel({share_id}) act on one', { timeout: 90_000 }, async () => {
    const second = await startStrictOrigin();
    const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, 'mcp', '--cloudflared', FAKE_CLOUDFLARED], env: cliEnv(), stderr: 'pipe' });
    const c = new Client({ name: 'mcp-cli-shares-test', version: '1.0.0' });
    await withTimeout(c.connect(transport), STEP_MS, 'initialize');
    try {
      const one = structured(await withTimeout(call(c, 'start_tunnel', { port: origin.port }), STEP_MS, 'first start_tunnel'));
      const two = structured(await withTimeout(call(c, 'start_tunnel', { port: second.port }), STEP_MS, 'second start_tunnel'));
      assert.equal(two['status'], 'active');
      assert.equal(two['pid'], one['pid'], 'one cloudflared');
      assert.equal(two['url'], one['url'], 'one public host');
      assert.match(String(one['share_id']), /^sh-[0-9a-f]{8}$/);
      assert.notEqual(two['share_id'], one['share_id']);
      assert.notEqual(two['mcp_url'], one['mcp_url']);
      assert.equal(two['local_url'], `http://localhost:${second.port}`);
      const again = structured(await call(c, 'start_tunnel', { port: second.port }));
      assert.equal(again['share_id'], two['share_id'], 'the same target returns its share');
      const listed = structured(await call(c, 'list_shares'));
      const shares = listed['shares'] as Array<{ id: string; mcp_url: string }>;
      assert.deepEqual(shares.map((x) => x.id), [one['share_id'], two['share_id']]);
      const res = await readJson(c, 'tunnel://shares');
      assert.deepEqual((res['shares'] as Array<{ id: string }>).map((x) => x.id), shares.map((x) => x.id));
      const single = await readJson(c, `tunnel://shares/${String(two['share_id'])}`);
      assert.equal(single['mcp_url'], two['mcp_url']);
      const fake = readFakeState(path.join(work, 'fake'), Number(one['pid']))!;
      assert.equal((await get(fake.publicPort, publicPath(String(one['mcp_url'])))).status, 200);
      assert.equal((await get(fake.publicPort, publicPath(String(two['mcp_url'])))).status, 200);
      // Stop the first share alone: its URL is refused, the second goes on.
      const stopped = await call(c, 'stop_tunnel', { share_id: one['share_id'] });
      assert.equal(stopped.isError, undefined, text(stopped));
      assert.match(text(stopped), /The other shares go on/);
      assert.equal((await get(fake.publicPort, publicPath(String(one['mcp_url'])))).status, 401);
      assert.equal((await get(fake.publicPort, publicPath(String(two['mcp_url'])))).status, 200);
      assert.equal(structured(await call(c, 'get_tunnel_status'))['mcp_url'], two['mcp_url'], 'the tunnel now describes the share left');
      const unknown = await call(c, 'stop_tunnel', { share_id: 'sh-nope' });
      assert.equal(unknown.isError, true);
      assert.match(text(unknown), /No share "sh-nope".*list_shares/);
      assert.equal(structured(await withTimeout(call(c, 'stop_tunnel'), STEP_MS, 'stop_tunnel'))['status'], 'stopped');
      assert.ok(await waitGone(Number(one['pid']), STEP_MS));
    } finally {
      await c.close();
      await second.close();
    }
  });

  it('start_tunnel with tools / read_only: the share carries the policy and the tunnel refuses other tools without reaching the server; bad input names the fix; a later call cannot change it', { timeout: 90_000 }, async () => {
    const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, 'mcp', '--cloudflared', FAKE_CLOUDFLARED], env: cliEnv(), stderr: 'pipe' });
    const c = new Client({ name: 'mcp-cli-policy-test', version: '1.0.0' });
    await withTimeout(c.connect(transport), STEP_MS, 'initialize');
    try {
      const bad = await call(c, 'start_tunnel', { port: origin.port, tools: 'echo' });
      assert.equal(bad.isError, true);
      assert.match(text(bad), /Invalid tool policy: tools must be a list of tool names.*\["echo"\]/);
      const s = structured(await withTimeout(call(c, 'start_tunnel', { port: origin.port, tools: ['echo'] }), STEP_MS, 'start_tunnel'));
      assert.equal(s['status'], 'active');
      assert.deepEqual(s['policy'], { tools: ['echo'], read_only: false, summary: '1 tool (echo)' });
      const fake = readFakeState(path.join(work, 'fake'), Number(s['pid']))!;
      const before = origin.hosts.length;
      const refused = await new Promise<string>((resolve, reject) => {
        const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'rm', arguments: {} } });
        const req = request({ host: '127.0.0.1', port: fake.publicPort, method: 'POST', path: publicPath(String(s['mcp_url'])), headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' } }, (res) => {
          let t = '';
          res.on('data', (d: Buffer) => (t += d.toString()));
          res.on('end', () => resolve(t));
        });
        req.on('error', reject);
        req.end(body);
      });
      assert.match(refused, /tool \\"rm\\" is not shared/);
      assert.equal(origin.hosts.length, before, 'the origin never saw the refused call');
      const again = structured(await call(c, 'start_tunnel', { port: origin.port, read_only: true }));
      assert.deepEqual(again['policy'], s['policy'], 'unchanged');
      assert.match(String(again['message']), /already shared with the policy "1 tool \(echo\)"; that is unchanged/);
      const listed = (structured(await call(c, 'list_shares'))['shares'] as Array<{ policy: unknown }>)[0];
      assert.deepEqual(listed?.policy, s['policy']);
      assert.equal(structured(await withTimeout(call(c, 'stop_tunnel'), STEP_MS, 'stop_tunnel'))['status'], 'stopped');
    } finally {
      await c.close();
    }
  });

  describe('--http', { concurrency: false }, () => {
    const token = randomBytes(24).toString('base64url');
    let child: ChildProcess;
    let exited: Promise<Exit>;
    let out = '';
    let err = '';
    let endpoint: URL;

    before(async () => {
      child = spawn(process.execPath, [CLI, 'mcp', '--http', '--cloudflared', FAKE_CLOUDFLARED], {
        env: { ...cliEnv(), MCP_TUNNEL_TOKEN: token },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
      exited = exitOf(child);
      const line = await waitFor(() => /^MCP endpoint: (\S+)$/m.exec(out)?.[1], STEP_MS, 'the MCP endpoint line');
      endpoint = new URL(line);
    });
    after(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    });

    it('prints a loopback endpoint and, with MCP_TUNNEL_TOKEN set, never the token', () => {
      assert.match(endpoint.href, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
      assert.ok(!out.includes(token) && !err.includes(token), 'the token is not printed');
      assert.doesNotMatch(out, /Token:/);
    });

    it('without the Authorization header: 401', async () => {
      const r = await post(endpoint, {});
      assert.equal(r.status, 401);
      const wrong = await post(endpoint, { Authorization: `Bearer ${token}x` });
      assert.equal(wrong.status, 401);
    });

    let pid: number;

    it('a client with the bearer token: get_tunnel_status, start_tunnel', async () => {
      const transport = new StreamableHTTPClientTransport(endpoint, { requestInit: { headers: { Authorization: `Bearer ${token}` } } });
      const client = new Client({ name: 'mcp-cli-http-test', version: '1.0.0' });
      await withTimeout(client.connect(transport), STEP_MS, 'initialize over HTTP');
      try {
        assert.equal(client.getServerVersion()?.name, 'mcp-tunnel');
        const st = structured(await call(client, 'get_tunnel_status'));
        assert.equal(st['status'], 'stopped');
        assert.equal(st['active'], false);
        const s = structured(await withTimeout(call(client, 'start_tunnel', { port: origin.port, host: '127.0.0.1' }), STEP_MS, 'start_tunnel over HTTP'));
        assert.equal(s['status'], 'active');
        assert.match(String(s['mcp_url']), new RegExp(`^${String(s['url'])}/[A-Za-z0-9_-]{43}/mcp$`));
        pid = Number(s['pid']);
        assert.ok(isAlive(pid));
        const bad = await call(client, 'start_tunnel', { host: '169.254.169.254' });
        assert.equal(bad.isError, true);
      } finally {
        await transport.terminateSession().catch(() => undefined);
        await client.close();
      }
    });

    it('SIGTERM: exit 0, the tunnel it ran is stopped, nothing left', async () => {
      assert.ok(isAlive(pid), 'the tunnel outlives the HTTP session');
      child.kill('SIGTERM');
      const exit = await withTimeout(exited, STEP_MS, 'the CLI to exit after SIGTERM');
      assert.deepEqual(exit, { code: 0, signal: null }, err);
      assert.ok(await waitGone(pid, 5000), 'cloudflared is gone');
      assert.deepEqual(runRecords(path.join(work, 'state')), []);
      await assert.rejects(post(endpoint, { Authorization: `Bearer ${token}` }), /ECONNREFUSED/);
    });
  });
});

function post(url: URL, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', agent: false, headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

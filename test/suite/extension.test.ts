// Extension-host suite: the real extension in a real VS Code, against the fake cloudflared.
// The runner gives the extension host MCP_TUNNEL_FAKE_CLOUDFLARED (the fake's path) and
// FAKE_CLOUDFLARED_STATE_DIR (where the fake records its public port).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { suite, suiteSetup, suiteTeardown, teardown, test } from 'mocha';
import * as vscode from 'vscode';
import type { McpTunnelExtensionApi } from '../../src/extension';
import { waitFor as pollFor } from '../support/wait';

const EXTENSION_ID = 'mcp-tunnel.mcp-tunnel';
const FAKE = process.env['MCP_TUNNEL_FAKE_CLOUDFLARED'] ?? path.resolve(__dirname, '..', '..', '..', 'test', 'fixtures', 'cloudflared');
const cfg = () => vscode.workspace.getConfiguration('mcpTunnel');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
function waitFor<T>(fn: () => T | undefined | false | Promise<T | undefined | false>, ms = 10_000, what = 'condition'): Promise<T> {
  return pollFor(fn, ms, what, 200);
}
function request(port: number, p: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: p, method: init.method ?? 'GET', headers: init.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

suite('MCP Tunnel in VS Code', () => {
  let api: McpTunnelExtensionApi;
  let origin: http.Server;
  let originPort: number;
  const hosts: string[] = [];

  suiteSetup(async () => {
    origin = http.createServer((req, res) => {
      hosts.push(req.headers.host ?? '');
      const ok = req.headers.host === `localhost:${originPort}` || req.headers.host === `127.0.0.1:${originPort}`;
      res.writeHead(ok ? 200 : 403).end(ok ? 'hello from the origin' : 'foreign host');
    });
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    originPort = (origin.address() as AddressInfo).port;
    await cfg().update('cloudflaredPath', FAKE, vscode.ConfigurationTarget.Global);
    await cfg().update('defaultPort', originPort, vscode.ConfigurationTarget.Global);
    await cfg().update('stopGracePeriod', 1, vscode.ConfigurationTarget.Global);
    const ext = vscode.extensions.getExtension<McpTunnelExtensionApi>(EXTENSION_ID);
    assert.ok(ext, 'extension installed');
    api = await ext.activate();
  });

  teardown(async () => {
    await api.controller.stop();
  });

  suiteTeardown(async () => {
    origin.closeAllConnections();
    origin.close();
    for (const k of ['cloudflaredPath', 'defaultPort', 'stopGracePeriod', 'access']) await cfg().update(k, undefined, vscode.ConfigurationTarget.Global);
  });

  test('activates and registers every command', async () => {
    const all = await vscode.commands.getCommands(true);
    const manifest = (vscode.extensions.getExtension(EXTENSION_ID)!.packageJSON as { contributes: { commands: { command: string; title: string; category: string }[] } }).contributes.commands;
    for (const { command } of manifest) assert.ok(all.includes(command), `${command} registered`);
    // Titles come from package.nls.json: VS Code replaced every %key% (the English bundle here).
    for (const { command, title, category } of manifest) assert.ok(title && !/%/.test(title) && category === 'MCP Tunnel', `${command}: title "${title}", category "${category}"`);
    assert.equal(manifest.find((c) => c.command === 'mcpTunnel.start')?.title, 'Start Tunnel');
    assert.equal(api.controller.state.status, 'stopped');
    assert.equal(api.statusBarText(), '$(cloud) MCP Tunnel');
    assert.deepEqual(api.tree.rows(), [], 'stopped: the welcome view shows instead of rows');
  });

  test('a workspace .vscode/settings.json cannot redirect a tunnel: target, URL host, access and the rest are machine-scoped', async () => {
    // The runner wrote a hostile .vscode/settings.json into the opened folder (see runExtensionTests.ts).
    const folder = vscode.workspace.workspaceFolders?.[0];
    assert.ok(folder, 'a folder is open');
    const hostile = JSON.parse(fs.readFileSync(path.join(folder.uri.fsPath, '.vscode', 'settings.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(hostile['mcpTunnel.defaultHost'], '169.254.169.254');
    const c = api.config();
    assert.equal(c.startTimeoutMs, 77_000, 'the workspace file is read: its window-scoped startTimeout applies');
    assert.deepEqual(c.target, { host: 'localhost', port: originPort, path: '/mcp', access: 'secret' });
    assert.equal(c.tunnelMode, 'quick');
    assert.equal(c.namedHostname, '');
    assert.deepEqual(c.allowedHosts, []);
    assert.equal(c.hostHeader, 'origin');
    assert.equal(c.protocol, 'auto');
    assert.equal(c.logLevel, 'info');
    assert.equal(c.autoRestart, true);
    assert.equal(c.mcpConfirmStart, true);
    assert.equal(c.cloudflaredPath, FAKE);
    // Start Tunnel exposes the user's loopback target, at a trycloudflare.com URL.
    const state = await vscode.commands.executeCommand<{ status: string } | undefined>('mcpTunnel.start');
    assert.equal(state?.status, 'active', JSON.stringify(api.controller.state));
    const snap = api.controller.snapshot();
    assert.equal(snap.local_url, `http://localhost:${originPort}`);
    assert.equal(snap.access, 'secret');
    await vscode.commands.executeCommand('mcpTunnel.copyMcpUrl');
    const copied = new URL(await vscode.env.clipboard.readText());
    assert.match(copied.hostname, /^[a-z-]+\.trycloudflare\.com$/, `the copied MCP URL names no other host: ${copied.href}`);
    assert.equal(copied.href, snap.mcp_url);
    await vscode.commands.executeCommand('mcpTunnel.copyClientConfig', 'vscode');
    assert.doesNotMatch(await vscode.env.clipboard.readText(), /attacker\.example|169\.254/);
    // The cloud metadata address is refused from command arguments too (not in the user's allowedHosts).
    await api.controller.stop();
    assert.equal(await vscode.commands.executeCommand('mcpTunnel.start', { host: '169.254.169.254', port: 80 }), undefined);
    assert.equal(api.controller.state.status, 'stopped', 'nothing started for a non-loopback host');
  });

  test('start and stop through the commands (secret mode, the default); status bar and tree follow; only traffic with the share secret reaches the origin', async () => {
    assert.equal(api.config().target.access, 'secret');
    const state = await vscode.commands.executeCommand<{ status: string } | undefined>('mcpTunnel.start');
    assert.equal(state?.status, 'active', JSON.stringify(api.controller.state));
    const snap = api.controller.snapshot();
    assert.match(snap.url ?? '', /^https:\/\/[a-z-]+\.trycloudflare\.com$/);
    assert.equal(snap.local_url, `http://localhost:${originPort}`);
    assert.equal(snap.access, 'secret');
    const secret = /^https:\/\/[^/]+\/([A-Za-z0-9_-]{43})\/mcp$/.exec(snap.mcp_url ?? '')?.[1];
    assert.ok(secret, `the MCP URL carries the share secret: ${snap.mcp_url}`);
    const shortHost = new URL(snap.url!).hostname.replace('.trycloudflare.com', '');
    assert.match(api.statusBarText(), new RegExp(`^\\$\\(cloud-upload\\) ${shortHost.slice(0, 10)}.* · <1m$`));
    // One tunnel node; under it the tunnel's facts and one node per share (a lone one too).
    const [tunnel] = api.tree.rows();
    assert.equal(tunnel?.id, 'tunnel');
    assert.equal(tunnel?.description, `Active · ${new URL(snap.url!).host}`);
    const share = api.controller.listShares()[0];
    assert.ok(share, 'the tunnel has its share');
    const byId = () => Object.fromEntries(api.tree.allRows().map((r) => [r.id, r]));
    const rows = Object.fromEntries(api.tree.allRows().map((r) => [r.id, r.description]));
    assert.deepEqual(api.tree.shareRows().map((r) => r.id), [`share:${share.id}`], 'a lone share has its node under the tunnel');
    assert.equal(rows[`${share.id}:access`], 'Secret link required');
    assert.equal(byId()[`${share.id}:access`]?.contextValue, 'shareAccessSecret', 'rotate is on the share\'s Access row');
    assert.equal(rows['url'], snap.url);
    assert.equal(rows[`${share.id}:mcpUrl`], `${snap.url}/••••••/mcp`, 'the tree hides the secret');
    assert.equal(byId()[`${share.id}:mcpUrl`]?.value, snap.mcp_url, 'its Copy action has the full URL');
    assert.equal(rows[`${share.id}:local`], `http://localhost:${originPort}/mcp`);
    assert.equal(rows['pid'], String(snap.pid));
    assert.equal(rows['uptime'], '<1m');
    assert.match(rows['cloudflared'] ?? '', /^2026\.8\.2 /);
    assert.ok(alive(snap.pid!));

    const fake = JSON.parse(fs.readFileSync(path.join(process.env['FAKE_CLOUDFLARED_STATE_DIR'] ?? os.tmpdir(), `${snap.pid}.json`), 'utf8')) as { publicPort: number };
    const before = hosts.length;
    assert.equal((await request(fake.publicPort, '/mcp')).status, 401);
    assert.equal(hosts.length, before, 'a request without the secret never reaches the origin');
    const res = await request(fake.publicPort, `/${secret}/mcp`);
    assert.equal(res.status, 200);
    assert.equal(hosts.at(-1), `localhost:${originPort}`);
    assert.equal((await request(fake.publicPort, '/mcp', { headers: { authorization: `Bearer ${secret}` } })).status, 200);
    // Metrics are read only while the view shows them: show it.
    await vscode.commands.executeCommand('mcpTunnel.status.focus');
    await waitFor(() => api.tree.allRows().find((r) => r.id === 'requests'), 8000, 'metrics row');
    assert.equal(api.tree.allRows().find((r) => r.id === 'refused')?.description, '1 without a valid secret');

    await vscode.commands.executeCommand('mcpTunnel.copyMcpUrl');
    assert.equal(await vscode.env.clipboard.readText(), snap.mcp_url);
    // Client configs: the header where the client takes headers, the secret path where it takes only a URL.
    assert.equal(await vscode.commands.executeCommand('mcpTunnel.copyClientConfig', 'vscode'), 'vscode');
    assert.deepEqual(JSON.parse(await vscode.env.clipboard.readText()), { servers: { 'tunneled-mcp': { type: 'http', url: `${snap.url}/mcp`, headers: { Authorization: `Bearer ${secret}` } } } });
    await vscode.commands.executeCommand('mcpTunnel.copyClientConfig', 'url');
    assert.equal(await vscode.env.clipboard.readText(), snap.mcp_url);

    // Rotate: the old secret stops working at once, the new one works, the copies follow.
    assert.equal(await vscode.commands.executeCommand('mcpTunnel.rotateSecret'), true);
    const rotated = api.controller.snapshot().mcp_url!;
    assert.notEqual(rotated, snap.mcp_url);
    assert.equal((await request(fake.publicPort, `/${secret}/mcp`)).status, 401);
    assert.equal((await request(fake.publicPort, new URL(rotated).pathname)).status, 200);
    await vscode.commands.executeCommand('mcpTunnel.copyMcpUrl');
    assert.equal(await vscode.env.clipboard.readText(), rotated);

    await vscode.commands.executeCommand('mcpTunnel.stop');
    assert.equal(api.controller.state.status, 'stopped');
    assert.equal(api.statusBarText(), '$(cloud) MCP Tunnel');
    await waitFor(() => !alive(snap.pid!), 3000, 'cloudflared to exit');
  });

  test('two servers shared at once: each reachable only with its own secret; rotate one (the other works), stop one, Stop Tunnel ends cloudflared', async () => {
    const secondHosts: string[] = [];
    const second = http.createServer((req, res) => {
      secondHosts.push(req.headers.host ?? '');
      res.writeHead(200).end('hello from the second origin');
    });
    await new Promise<void>((r) => second.listen(0, '127.0.0.1', r));
    const secondPort = (second.address() as AddressInfo).port;
    try {
      assert.equal((await vscode.commands.executeCommand<{ status: string } | undefined>('mcpTunnel.start'))?.status, 'active');
      const pid = api.controller.snapshot().pid!;
      // Start Tunnel with another target while one runs: a second share on the same tunnel.
      assert.equal((await vscode.commands.executeCommand<{ status: string } | undefined>('mcpTunnel.start', { port: secondPort }))?.status, 'active');
      assert.equal(api.controller.snapshot().pid, pid, 'no second cloudflared');
      const [a, b] = api.controller.listShares();
      assert.ok(a && b, 'two shares');
      assert.equal(b.name, `localhost:${secondPort}/mcp`);
      assert.match(api.statusBarText(), / · 2 shares · <1m$/);
      const nodes = await waitFor(() => (api.tree.shareRows().length === 2 ? api.tree.shareRows() : undefined), 5000, 'two share nodes');
      assert.deepEqual(nodes.map((n) => n.label), [a.name, b.name]);
      assert.match(api.tree.rows()[0]?.description ?? '', /^Active · .* · 2 shares$/, 'the tunnel node counts its shares');
      assert.equal(nodes[1]?.contextValue, 'share shareWithSecret');
      assert.match(nodes[1]?.children?.find((r) => r.label === 'MCP URL')?.description ?? '', /\/••••••\/mcp$/);
      const fake = JSON.parse(fs.readFileSync(path.join(process.env['FAKE_CLOUDFLARED_STATE_DIR'] ?? os.tmpdir(), `${pid}.json`), 'utf8')) as { publicPort: number };
      const pathOf = (u: string | null) => new URL(u ?? 'http://x/').pathname;
      assert.equal((await request(fake.publicPort, pathOf(a.mcp_url))).body, 'hello from the origin');
      assert.equal((await request(fake.publicPort, pathOf(b.mcp_url))).body, 'hello from the second origin');
      assert.equal((await request(fake.publicPort, '/mcp')).status, 401);
      // Copy and client config of one share: its own URL and secret, its own server name.
      assert.equal(await vscode.commands.executeCommand('mcpTunnel.copyShareMcpUrl', b.id), b.mcp_url);
      assert.equal(await vscode.env.clipboard.readText(), b.mcp_url);
      assert.equal(await vscode.commands.executeCommand('mcpTunnel.copyShareClientConfig', b.id, 'vscode'), 'vscode');
      const secretB = pathOf(b.mcp_url).split('/')[1];
      assert.deepEqual(JSON.parse(await vscode.env.clipboard.readText()), { servers: { [`tunneled-mcp-${secondPort}`]: { type: 'http', url: `${api.controller.snapshot().url}/mcp`, headers: { Authorization: `Bearer ${secretB}` } } } });
      // Rotate B alone.
      assert.equal(await vscode.commands.executeCommand('mcpTunnel.rotateShareSecret', nodes[1]), true);
      const b2 = api.controller.listShares().find((x) => x.id === b.id)!;
      assert.notEqual(b2.mcp_url, b.mcp_url);
      assert.equal((await request(fake.publicPort, pathOf(b.mcp_url))).status, 401);
      assert.equal((await request(fake.publicPort, pathOf(b2.mcp_url))).status, 200);
      assert.equal((await request(fake.publicPort, pathOf(a.mcp_url))).status, 200, 'the other share is untouched');
      // Stop A alone: B goes on, and the tunnel now describes B.
      assert.equal(await vscode.commands.executeCommand('mcpTunnel.stopShare', a.id), true);
      assert.equal((await request(fake.publicPort, pathOf(a.mcp_url))).status, 401);
      assert.equal((await request(fake.publicPort, pathOf(b2.mcp_url))).status, 200);
      assert.equal(api.controller.snapshot().mcp_url, b2.mcp_url);
      assert.deepEqual(api.tree.shareRows().map((r) => r.label), [b.name], 'one share left: its node, still under the tunnel');
      // Stop Tunnel: every share and cloudflared.
      await vscode.commands.executeCommand('mcpTunnel.stop');
      await waitFor(() => !alive(pid), 5000, 'cloudflared to exit');
      assert.deepEqual(api.controller.listShares(), []);
    } finally {
      second.closeAllConnections();
      second.close();
    }
  });

  test('Share MCP Server… shares a stdio server from .vscode/mcp.json through the bridge: reachable only with its secret, its tools listed through the tunnel; a changed definition is shown and Restart Share runs it under the same link; Stop Share ends its processes', async () => {
    // The reachability doctor goes "through the internet": the fake's public port, fixed for this run.
    const publicPort = await new Promise<number>((resolve) => {
      const probe = http.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    process.env['FAKE_CLOUDFLARED_PUBLIC_PORT'] = String(publicPort);
    process.env['MCP_TUNNEL_DOCTOR_CONNECT_TO'] = `*=http://127.0.0.1:${publicPort}`;
    const id = await Promise.resolve(vscode.commands.executeCommand<string | undefined>('mcpTunnel.shareMcpServer', 'everything')).finally(() => delete process.env['FAKE_CLOUDFLARED_PUBLIC_PORT']);
    assert.ok(id, 'a share id');
    try {
      // Once active, the share is checked from the internet side by itself: its Internet row says so.
      const internet = await waitFor(() => api.tree.allRows().find((r) => r.id === `${id}:internet` && r.icon === 'pass'), 30_000, 'the Internet row to say reachable');
      assert.match(internet.description, /^Reachable from the internet · \d+ ms/);
      const checked = await vscode.commands.executeCommand<Array<{ state: string; ok: boolean; rtt_ms: number | null }>>('mcpTunnel.checkTunnel', id);
      assert.equal(checked?.[0]?.state, 'ok', JSON.stringify(checked));
      assert.ok((checked[0]?.rtt_ms ?? -1) >= 0);
      await waitFor(() => /\b0 sessions/.test(api.controller.listShares().find((s) => s.id === id)?.detail ?? '') || undefined, 10_000, "the doctor's session to end");
    } finally {
      delete process.env['MCP_TUNNEL_DOCTOR_CONNECT_TO'];
    }
    const share = api.controller.listShares().find((s) => s.id === id);
    assert.ok(share);
    assert.equal(share.kind, 'stdio');
    assert.equal(share.access, 'secret');
    assert.match(share.command ?? '', /server-everything/);
    assert.match(share.detail ?? '', /1\d tools/);
    const snap = api.controller.snapshot();
    const fake = JSON.parse(fs.readFileSync(path.join(process.env['FAKE_CLOUDFLARED_STATE_DIR'] ?? os.tmpdir(), `${snap.pid}.json`), 'utf8')) as { publicPort: number };
    const mcpPath = new URL(share.mcp_url ?? '').pathname;
    const secret = mcpPath.split('/')[1] ?? '';
    const init = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'suite', version: '1' } } });
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    assert.equal((await request(fake.publicPort, '/mcp', { method: 'POST', headers, body: init })).status, 401, 'no secret: 401');
    const first = await request(fake.publicPort, mcpPath, { method: 'POST', headers, body: init });
    assert.equal(first.status, 200, first.body);
    const session = String(first.headers['mcp-session-id'] ?? '');
    assert.ok(session, 'a session id');
    // The header form works too (what Copy MCP Client Config gives header-capable clients).
    const list = await request(fake.publicPort, '/mcp', { method: 'POST', headers: { ...headers, authorization: `Bearer ${secret}`, 'mcp-session-id': session }, body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }) });
    assert.equal(list.status, 200, list.body);
    assert.match(list.body, /"echo"/);
    await waitFor(() => /1 session/.test(api.controller.listShares().find((s) => s.id === id)?.detail ?? '') || undefined, 5000, 'the session counted on the share');
    assert.ok(api.tree.allRows().some((r) => /everything/.test(r.label ?? '') || /everything/.test(String(r.description ?? ''))), 'the tree names it');
    // The inspector: the calls above, with the client from its initialize, under Activity.
    const activity = await waitFor(() => api.tree.allRows().find((r) => r.id === `${id}:activity`), 5000, 'the Activity row');
    assert.match(String(activity.description), /^\d+ calls · last tools\/list by suite 1$/);
    assert.ok((activity.children ?? []).some((c) => /tools\/list/.test(c.label ?? '') && /200 · suite 1/.test(String(c.description))), JSON.stringify(activity.children));
    assert.ok(api.controller.activity(id).every((c) => !JSON.stringify(c).includes(secret)), 'no secret recorded');

    // Its definition changes in mcp.json: the share says so; Restart Share runs the new one under the same link.
    const mcpJson = path.join(vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? '', '.vscode', 'mcp.json');
    const original = fs.readFileSync(mcpJson, 'utf8');
    try {
      fs.writeFileSync(mcpJson, original.replace('"type": "stdio",', '"type": "stdio", "env": { "MCPT_SUITE_REVISION": "2" },'));
      await waitFor(() => /changed in Workspace .*restart to apply/.test(api.controller.listShares().find((s) => s.id === id)?.detail ?? '') || undefined, 10_000, 'the share to say its definition changed');
      assert.equal(await vscode.commands.executeCommand('mcpTunnel.restartShare', id), true);
      const restarted = api.controller.listShares().find((s) => s.id === id);
      assert.equal(restarted?.mcp_url, share.mcp_url, 'the same link');
      assert.doesNotMatch(restarted?.detail ?? '', /changed/);
      const old = await request(fake.publicPort, mcpPath, { method: 'POST', headers: { ...headers, 'mcp-session-id': session }, body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list' }) });
      assert.equal(old.status, 404, 'the old session ended with the old server: clients initialize again');
      const again = await request(fake.publicPort, mcpPath, { method: 'POST', headers, body: init });
      assert.equal(again.status, 200, again.body);
      const env = await request(fake.publicPort, mcpPath, { method: 'POST', headers: { ...headers, 'mcp-session-id': String(again.headers['mcp-session-id'] ?? '') }, body: JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'get-env', arguments: {} } }) });
      assert.match(env.body, /MCPT_SUITE_REVISION/, 'the new definition runs');
    } finally {
      fs.writeFileSync(mcpJson, original);
    }

    // VS Code's own MCP client, configured with what Copy MCP Client Config gives (the URL's public
    // host played by the fake cloudflared's public port), lists the shared server's tools.
    await vscode.commands.executeCommand('mcpTunnel.copyShareClientConfig', id, 'vscode');
    const copied = JSON.parse(await vscode.env.clipboard.readText()) as { servers: Record<string, { type: string; url: string; headers?: Record<string, string> }> };
    const [entryName, entry] = Object.entries(copied.servers)[0] ?? [];
    assert.ok(entryName && entry, JSON.stringify(copied));
    assert.equal(entry.headers?.['Authorization'], `Bearer ${secret}`, 'the secret as a bearer header');
    const before = api.controller.listShares().find((s) => s.id === id)?.requests ?? 0;
    try {
      // Only this server in the file, so every `…_echo` tool VS Code lists comes through the tunnel.
      fs.writeFileSync(mcpJson, JSON.stringify({ servers: { [entryName]: { ...entry, url: entry.url.replace(/^https:\/\/[^/]+/, `http://127.0.0.1:${fake.publicPort}`) } } }, null, 2));
      const echo = await waitFor(async () => {
        await vscode.commands.executeCommand('workbench.mcp.startServer', '*', { autoTrustChanges: true, waitForLiveTools: true });
        return vscode.lm.tools.find((t) => t.name.endsWith('_echo'));
      }, 30_000, "VS Code's MCP client to list the shared server's tools");
      assert.ok(vscode.lm.tools.filter((t) => !t.name.includes('mcp-tunnel')).length >= 10, vscode.lm.tools.map((t) => t.name).join(', '));
      assert.match(echo.name, /^mcp_/);
      const after = api.controller.listShares().find((s) => s.id === id);
      assert.ok((after?.requests ?? 0) >= before + 2, `VS Code's initialize and tools/list went through the gate (${before} -> ${after?.requests})`);
    } finally {
      fs.writeFileSync(mcpJson, original);
    }
    // Choose Shared Tools… (with its arguments: no picker): read-only hides the server's write tools
    // from a remote client and refuses their calls; the tree says so; Open Inspector opens its page.
    assert.equal(await vscode.commands.executeCommand('mcpTunnel.chooseShareTools', id, { readOnly: true }), 'read-only tools');
    assert.equal(api.tree.allRows().find((r) => r.id === `${id}:tools`)?.description, 'read-only tools only');
    const ro = await request(fake.publicPort, mcpPath, { method: 'POST', headers, body: init });
    const roSession = { ...headers, 'mcp-session-id': String(ro.headers['mcp-session-id'] ?? '') };
    const roList = await request(fake.publicPort, mcpPath, { method: 'POST', headers: roSession, body: JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/list' }) });
    assert.match(roList.body, /"echo"/);
    assert.doesNotMatch(roList.body, /toggle-simulated-logging/, 'a write tool is hidden');
    const write = await request(fake.publicPort, mcpPath, { method: 'POST', headers: roSession, body: JSON.stringify({ jsonrpc: '2.0', id: 6, method: 'tools/call', params: { name: 'toggle-simulated-logging', arguments: {} } }) });
    assert.match(write.body, /tool \\"toggle-simulated-logging\\" is not shared: this share is read-only/);
    assert.equal(await vscode.commands.executeCommand('mcpTunnel.openInspector', id), id);
    assert.equal(await vscode.commands.executeCommand('mcpTunnel.chooseShareTools', id, { tools: null, readOnly: false }), '');
    assert.equal(api.tree.allRows().find((r) => r.id === `${id}:tools`), undefined, 'every tool again: no Tools row');
    await vscode.commands.executeCommand('workbench.action.closeActiveEditor');
    await vscode.commands.executeCommand('mcpTunnel.stopShare', id);
    assert.equal(api.controller.state.status, 'stopped', 'its last share stopped the tunnel');
  });

  test("agents: share_mcp_server is refused unless the user's machine setting allows it (the workspace's true does not count), naming the setting", async () => {
    const host = await api.mcp.ensureHost();
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${host.token}` };
    const rpc = async (body: object, session?: string) => {
      const r = await request(host.port, '/mcp', { method: 'POST', headers: { ...headers, ...(session ? { 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' } : {}) }, body: JSON.stringify(body) });
      const data = /^data: (.*)$/m.exec(r.body)?.[1] ?? r.body;
      return { status: r.status, session: String(r.headers['mcp-session-id'] ?? session ?? ''), json: JSON.parse(data || '{}') as { result?: { tools?: Array<{ name: string }>; isError?: boolean; content?: Array<{ text?: string }> } } };
    };
    const init = await rpc({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'suite-agent', version: '1' } } });
    assert.equal(init.status, 200);
    await rpc({ jsonrpc: '2.0', method: 'notifications/initialized' }, init.session);
    const tools = await rpc({ jsonrpc: '2.0', id: 2, method: 'tools/list' }, init.session);
    assert.ok(tools.json.result?.tools?.some((t) => t.name === 'share_mcp_server'), 'the tool is listed (it says what it needs)');
    const call = await rpc({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'share_mcp_server', arguments: { name: 'everything' } } }, init.session);
    assert.equal(call.json.result?.isError, true);
    assert.match(call.json.result?.content?.[0]?.text ?? '', /mcpTunnel\.mcp\.allowStdioShares/);
    assert.deepEqual(api.controller.listShares(), [], 'nothing shared');
  });

  test('Create Link for a Recipient…: its own MCP URL (in the tree, masked as a row you copy), recorded by its label; Revoke Link… makes it answer 401 "revoked"; the share goes on', async () => {
    assert.equal((await vscode.commands.executeCommand<{ status: string } | undefined>('mcpTunnel.start'))?.status, 'active');
    try {
      const share = api.controller.listShares()[0];
      assert.ok(share?.mcp_url);
      const linkId = await vscode.commands.executeCommand<string | undefined>('mcpTunnel.createShareLink', share.id, { label: 'Alice', expiry: '1h' });
      assert.ok(linkId);
      const links = api.tree.allRows().find((r) => r.id === `${share.id}:links`);
      assert.equal(links?.description, '1 recipient link');
      const row = links?.children?.[0];
      assert.equal(row?.label, 'Alice');
      assert.match(String(row?.description), /^until /);
      const linkUrl = row?.value ?? '';
      assert.ok(linkUrl.startsWith(api.controller.snapshot().url ?? '-') && linkUrl !== share.mcp_url);
      const fake = JSON.parse(fs.readFileSync(path.join(process.env['FAKE_CLOUDFLARED_STATE_DIR'] ?? os.tmpdir(), `${api.controller.snapshot().pid}.json`), 'utf8')) as { publicPort: number };
      assert.equal((await request(fake.publicPort, new URL(linkUrl).pathname)).status, 200);
      await waitFor(() => api.controller.activity(share.id).some((c) => c.link === 'link "Alice"') || undefined, 5000, 'the call recorded under its link');
      // The link's own client config (its row's menu): its secret, not the share's.
      assert.equal(await vscode.commands.executeCommand('mcpTunnel.copyShareClientConfig', row, 'vscode'), 'vscode');
      const cfg = JSON.parse(await vscode.env.clipboard.readText()) as { servers: Record<string, { headers?: Record<string, string> }> };
      const [cfgName, cfgEntry] = Object.entries(cfg.servers)[0] ?? [];
      assert.match(String(cfgName), /-alice$/);
      assert.equal(cfgEntry?.headers?.['Authorization'], `Bearer ${new URL(linkUrl).pathname.split('/')[1] ?? ''}`);
      assert.equal(await vscode.commands.executeCommand('mcpTunnel.revokeShareLink', row), true);
      const refused = await request(fake.publicPort, new URL(linkUrl).pathname);
      assert.equal(refused.status, 401);
      assert.match(refused.body, /this link was revoked/);
      assert.equal((await request(fake.publicPort, new URL(share.mcp_url).pathname)).status, 200, 'the share secret still works');
      assert.equal(api.tree.allRows().find((r) => r.id === `${share.id}:links`), undefined, 'no links, no row');
    } finally {
      await vscode.commands.executeCommand('mcpTunnel.stop');
    }
  });

  test('Share For…: the share stops by itself at its time; the view has a Stops row, the status bar the time left; "Until I stop it" clears it', async () => {
    assert.equal((await vscode.commands.executeCommand<{ status: string } | undefined>('mcpTunnel.start'))?.status, 'active');
    try {
      const share = api.controller.listShares()[0];
      assert.ok(share);
      const stopsAt = await vscode.commands.executeCommand<string | null>('mcpTunnel.setShareLifetime', share.id, { afterMinutes: 90 });
      assert.ok(stopsAt && Math.abs(Date.parse(stopsAt) - (Date.now() + 90 * 60_000)) < 10_000, String(stopsAt));
      await waitFor(() => (/\$\(watch\) 1h (29|30)m$/.test(api.statusBarText()) ? true : undefined), 5000, `the time left in the status bar, got "${api.statusBarText()}"`);
      assert.match(String(api.tree.allRows().find((r) => r.id === `${share.id}:stops`)?.description), /^in 1h (29|30)m \(at /);
      assert.equal(await vscode.commands.executeCommand('mcpTunnel.setShareLifetime', share.id, { afterMinutes: 0 }), null);
      assert.equal(api.tree.allRows().find((r) => r.id === `${share.id}:stops`), undefined);
      // A short one: it stops by itself, and the tunnel with it (its last share).
      await vscode.commands.executeCommand('mcpTunnel.setShareLifetime', share.id, { afterMinutes: 0.03 });
      await waitFor(() => (api.controller.state.status === 'stopped' ? true : undefined), 10_000, 'the share to stop by itself');
    } finally {
      await vscode.commands.executeCommand('mcpTunnel.stop');
    }
  });

  test("Share MCP Server… with an http server from mcp.json: its configured headers reach it only when ticked, and never the client", async () => {
    const seen: Array<string | undefined> = [];
    const keyed = http.createServer((req, res) => {
      seen.push(req.headers['x-api-key'] as string | undefined);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
    await new Promise<void>((r) => keyed.listen(0, '127.0.0.1', r));
    const port = (keyed.address() as AddressInfo).port;
    const mcpJson = path.join(vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? '', '.vscode', 'mcp.json');
    const original = fs.readFileSync(mcpJson, 'utf8');
    try {
      fs.writeFileSync(mcpJson, original.replace('"servers": {', `"servers": { "keyed": { "type": "http", "url": "http://127.0.0.1:${port}/mcp", "headers": { "X-Api-Key": "suite-key-1" } },`));
      const state = await vscode.commands.executeCommand<{ status: string } | undefined>('mcpTunnel.shareMcpServer', 'keyed', { headers: ['X-Api-Key'] });
      assert.equal(state?.status, 'active', JSON.stringify(api.controller.state));
      const share = api.controller.listShares().find((s) => s.local_url === `http://127.0.0.1:${port}`);
      assert.ok(share?.mcp_url);
      const fake = JSON.parse(fs.readFileSync(path.join(process.env['FAKE_CLOUDFLARED_STATE_DIR'] ?? os.tmpdir(), `${api.controller.snapshot().pid}.json`), 'utf8')) as { publicPort: number };
      const r = await request(fake.publicPort, new URL(share.mcp_url).pathname, { headers: { 'x-api-key': 'from-the-internet' } });
      assert.equal(r.status, 200, r.body);
      assert.deepEqual(seen, ['suite-key-1'], 'the configured header, in place of the client\'s');
    } finally {
      fs.writeFileSync(mcpJson, original);
      await vscode.commands.executeCommand('mcpTunnel.stop');
      keyed.closeAllConnections();
      keyed.close();
    }
  });

  test('access "open": the plain URL works for anyone; the status bar and the tree warn; nothing to rotate', async () => {
    await cfg().update('access', 'open', vscode.ConfigurationTarget.Global);
    try {
      await waitFor(() => api.config().target.access === 'open', 3000, 'the setting to apply');
      const state = await vscode.commands.executeCommand<{ status: string } | undefined>('mcpTunnel.start');
      assert.equal(state?.status, 'active', JSON.stringify(api.controller.state));
      const snap = api.controller.snapshot();
      assert.equal(snap.access, 'open');
      assert.equal(snap.mcp_url, `${snap.url}/mcp`);
      assert.match(api.statusBarText(), /^\$\(unlock\) .* · open · <1m$/);
      const access = api.tree.allRows().find((r) => r.id.endsWith(':access'));
      assert.equal(access?.description, 'Open: anyone with the URL');
      assert.equal(access?.color, 'problemsWarningIcon.foreground');
      const fake = JSON.parse(fs.readFileSync(path.join(process.env['FAKE_CLOUDFLARED_STATE_DIR'] ?? os.tmpdir(), `${snap.pid}.json`), 'utf8')) as { publicPort: number };
      assert.equal((await request(fake.publicPort, '/mcp')).status, 200);
      assert.equal(await vscode.commands.executeCommand('mcpTunnel.rotateSecret'), undefined);
      assert.equal(api.controller.snapshot().mcp_url, snap.mcp_url);
      // Switching the setting back: the running tunnel keeps its mode; Restart never weakens access.
      await cfg().update('access', 'secret', vscode.ConfigurationTarget.Global);
      await waitFor(() => api.config().target.access === 'secret', 3000, 'the setting to apply');
      assert.equal(api.controller.snapshot().access, 'open');
      const restarted = await vscode.commands.executeCommand<{ status: string } | undefined>('mcpTunnel.restart');
      assert.equal(restarted?.status, 'active');
      assert.equal(api.controller.snapshot().access, 'secret');
    } finally {
      await cfg().update('access', undefined, vscode.ConfigurationTarget.Global);
    }
  });

  test('Start Tunnel with arguments (keybindings, other extensions): validated like agent input; the rest from the settings', async () => {
    assert.equal(await vscode.commands.executeCommand('mcpTunnel.start', { host: '169.254.169.254' }), undefined);
    assert.equal(await vscode.commands.executeCommand('mcpTunnel.start', { access: 'public' }), undefined);
    assert.equal(api.controller.state.status, 'stopped', 'bad arguments start nothing');
    const state = await vscode.commands.executeCommand<{ status: string } | undefined>('mcpTunnel.start', { path: '/other/mcp', access: 'open' });
    assert.equal(state?.status, 'active', JSON.stringify(api.controller.state));
    const snap = api.controller.snapshot();
    assert.equal(snap.local_mcp_url, `http://localhost:${originPort}/other/mcp`);
    assert.equal(snap.access, 'open');
    assert.equal(snap.mcp_url, `${snap.url}/other/mcp`);
  });

  test('Show QR Code opens a webview of the MCP URL; stopping the tunnel closes it', async () => {
    const state = await vscode.commands.executeCommand<{ status: string }>('mcpTunnel.start');
    assert.equal(state.status, 'active');
    const url = await vscode.commands.executeCommand<string>('mcpTunnel.showQr');
    assert.equal(url, api.controller.snapshot().mcp_url);
    const qrTab = () => vscode.window.tabGroups.all.flatMap((g) => g.tabs).find((t) => t.label === 'MCP Tunnel: QR Code');
    await waitFor(() => qrTab(), 5000, 'the QR tab');
    await vscode.commands.executeCommand('mcpTunnel.stop');
    await waitFor(() => !qrTab(), 5000, 'the QR tab to close');
  });

  test('cloudflared missing: the cause in the status bar and the result; the view falls back to the install guidance', async () => {
    await cfg().update('cloudflaredPath', path.join(os.tmpdir(), 'no-such-dir', 'cloudflared'), vscode.ConfigurationTarget.Global);
    try {
      await waitFor(() => api.config().cloudflaredPath.includes('no-such-dir'), 3000, 'setting applied');
      const state = await vscode.commands.executeCommand<{ status: string; error?: { code: string; message: string } }>('mcpTunnel.start');
      assert.equal(state.status, 'failed');
      assert.equal(state.error?.code, 'not-found');
      assert.match(state.error?.message ?? '', /mcpTunnel\.cloudflaredPath/);
      assert.equal(api.statusBarText(), '$(error) Tunnel failed');
      assert.deepEqual(api.tree.rows(), [], 'the view shows the install guidance instead of rows');
      assert.equal(await api.checkCloudflared(), undefined);
      // The walkthrough's "Check for cloudflared": nothing found, and it says so.
      assert.equal(await vscode.commands.executeCommand<boolean>('mcpTunnel.findCloudflared'), false);
    } finally {
      await cfg().update('cloudflaredPath', FAKE, vscode.ConfigurationTarget.Global);
      await waitFor(() => api.config().cloudflaredPath === FAKE, 3000, 'setting restored');
    }
    assert.equal((await api.checkCloudflared())?.version, '2026.8.2');
    assert.equal(await vscode.commands.executeCommand<boolean>('mcpTunnel.findCloudflared'), true, 'Check for cloudflared finds the fake');
  });

  test('invalid settings: a warning naming the setting, and the default is used', async () => {
    await cfg().update('defaultPort', 70000, vscode.ConfigurationTarget.Global);
    await cfg().update('protocol', 'carrier-pigeon', vscode.ConfigurationTarget.Global);
    try {
      await waitFor(() => api.configProblems().length >= 2 || undefined, 3000, 'problems');
      const names = api.configProblems().map((p) => p.setting);
      assert.ok(names.includes('mcpTunnel.defaultPort'), names.join());
      assert.ok(names.includes('mcpTunnel.protocol'), names.join());
      assert.equal(api.config().target.port, 8002);
      assert.equal(api.config().protocol, 'auto');
    } finally {
      await cfg().update('protocol', undefined, vscode.ConfigurationTarget.Global);
      await cfg().update('defaultPort', originPort, vscode.ConfigurationTarget.Global);
    }
    await waitFor(() => api.config().target.port === originPort, 3000, 'port restored');
  });

  test('the MCP server definition: loopback URL with a bearer token; the SDK loads only now', async () => {
    const def = (await api.mcp.resolveMcpServerDefinition());
    assert.equal(def.label, 'MCP Tunnel');
    const url = new URL(def.uri.toString());
    assert.equal(url.hostname, '127.0.0.1');
    const auth = def.headers['Authorization'] ?? '';
    assert.match(auth, /^Bearer \S{32,}$/);
    const init = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } });
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const denied = await request(Number(url.port), url.pathname, { method: 'POST', headers, body: init });
    assert.equal(denied.status, 401);
    const ok = await request(Number(url.port), url.pathname, { method: 'POST', headers: { ...headers, authorization: auth }, body: init });
    assert.equal(ok.status, 200, ok.body);
    assert.match(ok.body, /"name":"mcp-tunnel"/);
  });

  test("VS Code's own MCP client discovers the tools; get_tunnel_status through vscode.lm.invokeTool", async function () {
    this.timeout(60_000);
    await waitFor(() => true, 100);
    await vscode.commands.executeCommand('workbench.mcp.startServer', '*', { waitForLiveTools: true });
    const tools = await waitFor(() => {
      const t = vscode.lm.tools.filter((x) => /tunnel/.test(x.name));
      return t.length >= 3 ? t : undefined;
    }, 30_000, 'MCP tools in vscode.lm.tools');
    const names = tools.map((t) => t.name).sort();
    for (const n of ['get_tunnel_status', 'start_tunnel', 'stop_tunnel']) assert.ok(names.some((x) => x.endsWith(n)), `${n} in ${names.join()}`);
    const status = tools.find((t) => t.name.endsWith('get_tunnel_status'))!;
    const result = await vscode.lm.invokeTool(status.name, { input: {}, toolInvocationToken: undefined });
    const text = result.content.map((p) => (p instanceof vscode.LanguageModelTextPart ? p.value : '')).join('');
    assert.match(text, /"status":\s*"stopped"/);
  });

  test('deactivate stops cloudflared and leaves no process', async () => {
    const state = await vscode.commands.executeCommand<{ status: string }>('mcpTunnel.start');
    assert.equal(state.status, 'active');
    const pid = api.controller.snapshot().pid!;
    const ext = vscode.extensions.getExtension(EXTENSION_ID)!;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require(path.join(ext.extensionPath, 'dist', 'extension.js')) as { deactivate(): Promise<void> };
    const t0 = Date.now();
    await mod.deactivate();
    assert.ok(Date.now() - t0 < 5000, 'within VS Code’s deactivate deadline');
    assert.ok(!alive(pid), 'cloudflared is gone');
  });
});

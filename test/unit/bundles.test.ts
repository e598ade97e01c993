/**
 * The bundles loaded on first use (dist/gate.js, dist/mcp.js) have their own copy of every module
 * they share with the bundle that loads them: a token drawn at module load, or a class checked with
 * `instanceof`, differs across the two. These tests load the built bundles beside objects from the
 * sources (the loading bundle's copies) and check that what crosses the seam is still understood.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type * as GateBundle from '../../src/core/gate/accessGate';
import type * as McpBundle from '../../src/mcp/index';
import { isSelfCheck, selfCheckHeaders } from '../../src/core/util/selfCheck';
import { get, startStrictOrigin, type Origin } from '../support/origins';
import { FakeController } from '../support/fakeController';
import { FAKE_CLOUDFLARED, REPO, waitFor } from '../support/proc';

// eslint-disable-next-line @typescript-eslint/no-require-imports -- the built bundle, as the extension loads it
const gateBundle = require(path.join(REPO, 'dist', 'gate.js')) as typeof GateBundle;
// eslint-disable-next-line @typescript-eslint/no-require-imports -- the built bundle, as the extension loads it
const mcpBundle = require(path.join(REPO, 'dist', 'mcp.js')) as typeof McpBundle;

const closers: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
});

describe('bundles loaded on first use', () => {
  it("dist/gate.js knows the monitor's reachability checks by the caller's token: not counted as requests", async () => {
    const origin: Origin = await startStrictOrigin();
    closers.push(() => origin.close());
    const gate = await gateBundle.startAccessGate({ origin: { host: 'localhost', port: origin.port }, routeId: 'one', isSelfCheck });
    closers.push(() => gate.close());
    const secret = gate.secretPath();
    assert.equal((await get(gate.port, `${secret}/mcp`, selfCheckHeaders())).status, 200);
    assert.equal(origin.hosts.length, 1, 'the check reached the origin');
    assert.equal(gate.routeStats('one')?.passed, 0, "the check is not a request (a new share's node says 0 requests)");
    assert.deepEqual(gate.stats, { passed: 0, rejected: 0 });
    assert.equal((await get(gate.port, `${secret}/mcp`)).status, 200);
    assert.equal(gate.routeStats('one')?.passed, 1, 'traffic is counted');
  });

  it("dist/mcp.js answers start_tunnel's busy case with its own advice when the controller's TunnelBusyError is another bundle's class", async () => {
    const server = mcpBundle.createTunnelMcpServer(new FakeController(), { version: '0.1.0-test' });
    const client = new Client({ name: 'test', version: '1.0.0' });
    const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
    await server.connect(serverTransport);
    await client.connect(clientTransport);
    closers.push(() => client.close());
    const call = async (args: Record<string, unknown>) => (await client.callTool({ name: 'start_tunnel', arguments: args })) as CallToolResult;
    assert.equal((await call({})).isError, undefined);
    const busy = await call({ port: 9000 });
    assert.equal(busy.isError, true);
    const first = busy.content[0];
    assert.ok(first?.type === 'text');
    assert.match(first.text, /^A tunnel to http:\/\/localhost:8002\/mcp is already running\..* Stop that share first \(stop_tunnel with its share_id from list_shares\)/s);
  });

  it("dist/mcp.js keeps zod's English messages (the build gives z.locales English only): a malformed request is told what is wrong", async () => {
    // In a process of its own: zod keeps its locale in a global that this process's zod (the
    // sources' SDK) has already set to English, which would hide the bundle's.
    const home = mkdtempSync(path.join(tmpdir(), 'mcpt-bundles-'));
    closers.push(() => Promise.resolve(rmSync(home, { recursive: true, force: true })));
    const child = spawn(process.execPath, [path.join(REPO, 'dist', 'cli.js'), 'mcp', '--cloudflared', FAKE_CLOUDFLARED], {
      env: { PATH: process.env['PATH'] ?? '', HOME: home, MCP_TUNNEL_STATE_DIR: path.join(home, 'state') },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const exited = new Promise((r) => child.once('exit', r));
    closers.push(() => (child.kill('SIGTERM'), exited));
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const send = (m: object): boolean => child.stdin.write(`${JSON.stringify(m)}\n`);
    send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
    send({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { arguments: {} } });
    const answer = await waitFor(() => out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id?: number; error?: { message: string } }).find((m) => m.id === 2), 20_000, 'the answer to the malformed call');
    assert.ok(answer.error, `an error answer, got ${JSON.stringify(answer)}`);
    assert.match(answer.error.message, /Invalid input: expected string, received undefined/);
    assert.match(answer.error.message, /"name"/);
  });
});

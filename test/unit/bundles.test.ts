/**
 * The bundles loaded on first use (dist/gate.js, dist/mcp.js) have their own copy of every module
 * they share with the bundle that loads them: a token drawn at module load, or a class checked with
 * `instanceof`, differs across the two. These tests load the built bundles beside objects from the
 * sources (the loading bundle's copies) and check that what crosses the seam is still understood.
 */
import assert from 'node:assert/strict';
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
import { REPO } from '../support/proc';

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
});

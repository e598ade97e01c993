/** The MCP server over a fake controller, through a real SDK Client on an in-memory pair. */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { ReadBuffer, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ResourceUpdatedNotificationSchema, type CallToolResult, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { validateTarget } from '../../src/core/model/target';
import type { TunnelTarget } from '../../src/core/model/tunnelState';
import { serveStdio } from '../../src/mcp/index';
import { createTunnelMcpServer, type TunnelMcpServerOptions } from '../../src/mcp/tunnelMcpServer';
import type { ReachabilityResult } from '../../src/core/doctor/reachability';
import { Emitter } from '../../src/core/util/events';
import { FAKE_PID, FAKE_SHARE_PATH, FAKE_URL, FakeController } from '../support/fakeController';

async function connect(controller = new FakeController(), options: Partial<TunnelMcpServerOptions> = {}) {
  const server = createTunnelMcpServer(controller, { version: '0.1.0-test', ...options });
  const client = new Client({ name: 'test', version: '1.0.0' });
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
  await server.connect(serverTransport);
  await client.connect(clientTransport);
  // listTools lets the Client cache each tool's outputSchema and validate structuredContent.
  await client.listTools();
  return { controller, server, client };
}

async function call(client: Client, name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
  return (await client.callTool({ name, arguments: args })) as CallToolResult;
}

function text(result: CallToolResult): string {
  const first = result.content[0];
  assert.ok(first && first.type === 'text', 'first content is text');
  return first.text;
}

/** structuredContent, after checking that the text content carries the same JSON. */
function structured(result: CallToolResult): Record<string, unknown> {
  assert.ok(result.structuredContent, 'has structuredContent');
  assert.deepEqual(JSON.parse(text(result)), result.structuredContent);
  return result.structuredContent;
}

async function readJson(client: Client, uri: string): Promise<Record<string, unknown>> {
  const res = await client.readResource({ uri });
  const c = res.contents[0];
  assert.ok(c && 'text' in c, 'text resource');
  assert.equal(c.uri, uri);
  assert.equal(c.mimeType, 'application/json');
  return JSON.parse(c.text) as Record<string, unknown>;
}

function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

void describe('validateTarget', () => {
  void it('fills defaults and canonicalizes loopback spellings', () => {
    assert.deepEqual(validateTarget({}), { ok: true, target: { host: 'localhost', port: 8002, path: '/mcp' } });
    for (const [host, canonical] of [['LOCALHOST', 'localhost'], ['127.0.0.1', '127.0.0.1'], ['127.1', '127.0.0.1'], ['127.9.8.7', '127.9.8.7'], ['::1', '::1'], ['[::1]', '::1'], ['0:0:0:0:0:0:0:1', '::1']] as const) {
      const v = validateTarget({ host });
      assert.ok(v.ok, host);
      assert.equal(v.target.host, canonical);
    }
    const v = validateTarget({ port: '3000' });
    assert.ok(v.ok);
    assert.equal(v.target.port, 3000);
  });

  void it('rejects disguised non-loopback hosts and URL tricks', () => {
    for (const host of ['0xa9fea9fe', '2852039166', '10.1', 'localhost.', 'foo.localhost', 'localhost:80', 'localhost@evil.com', 'evil.com#', '::ffff:a9fe:a9fe', '', ' localhost']) {
      const v = validateTarget({ host });
      assert.equal(v.ok, false, host);
      assert.equal(!v.ok && v.field, 'host');
    }
  });
});

void describe('createTunnelMcpServer', () => {
  void it('lists four tools with titles, honest annotations, input and output schemas', async () => {
    const { client } = await connect();
    const { tools } = await client.listTools();
    const byName = new Map(tools.map((t) => [t.name, t]));
    assert.deepEqual([...byName.keys()].sort(), ['get_tunnel_status', 'list_shares', 'start_tunnel', 'stop_tunnel']);
    for (const t of tools) {
      assert.ok(t.title, `${t.name} has a title`);
      assert.ok((t.description ?? '').length > 40, `${t.name} has a description`);
      assert.equal(t.outputSchema?.type, 'object', `${t.name} has an outputSchema`);
      assert.ok(t.annotations, `${t.name} has annotations`);
    }
    const start = byName.get('start_tunnel')!;
    assert.equal(start.annotations?.openWorldHint, true);
    assert.equal(start.annotations?.destructiveHint, false);
    assert.equal(start.annotations?.readOnlyHint, false);
    assert.deepEqual(Object.keys(start.outputSchema?.properties ?? {}).sort(), ['access', 'local_url', 'mcp_url', 'message', 'pid', 'policy', 'share_id', 'status', 'url']);
    const props = start.inputSchema.properties as Record<string, Record<string, unknown>>;
    assert.equal(props['port']?.['type'], 'integer');
    assert.equal(props['port']?.['maximum'], 65535);
    assert.equal(props['host']?.['type'], 'string');
    assert.equal(props['path']?.['type'], 'string');
    assert.deepEqual(props['access']?.['enum'], ['secret', 'open']);
    assert.equal(props['tools']?.['type'], 'array');
    assert.equal(props['read_only']?.['type'], 'boolean');
    assert.equal(start.inputSchema.required, undefined, 'every start_tunnel argument is optional');
    assert.equal(byName.get('get_tunnel_status')!.annotations?.readOnlyHint, true);
    assert.equal(byName.get('stop_tunnel')!.annotations?.idempotentHint, true);
    assert.equal(byName.get('stop_tunnel')!.annotations?.readOnlyHint, false);
    assert.deepEqual(
      Object.keys(byName.get('get_tunnel_status')!.outputSchema?.properties ?? {}).sort(),
      ['access', 'active', 'last_error', 'local_url', 'mcp_url', 'pid', 'reachable', 'started_at', 'status', 'uptime_seconds', 'url'],
    );
    await client.close();
  });

  void it('get_tunnel_status reports a stopped tunnel', async () => {
    const { client } = await connect();
    const r = await call(client, 'get_tunnel_status');
    assert.equal(r.isError, undefined);
    assert.deepEqual(structured(r), {
      status: 'stopped', active: false, url: null, mcp_url: null, local_url: null, pid: null, access: null, uptime_seconds: 0, started_at: null, reachable: null, last_error: null,
    });
    await client.close();
  });

  void it('start_tunnel waits until active and returns the public MCP URL; status and stop follow', async () => {
    const { client, controller } = await connect();
    const r = await call(client, 'start_tunnel', {});
    assert.equal(r.isError, undefined);
    const s = structured(r);
    assert.equal(s['status'], 'active');
    assert.equal(s['url'], FAKE_URL);
    assert.equal(s['mcp_url'], `${FAKE_URL}/mcp`);
    assert.equal(s['local_url'], 'http://localhost:8002');
    assert.equal(s['pid'], FAKE_PID);
    assert.match(String(s['message']), /stop_tunnel/);
    assert.deepEqual(controller.states.map((x) => x.status), ['starting', 'connecting', 'active']);
    assert.deepEqual(controller.startCalls, [{ host: 'localhost', port: 8002, path: '/mcp' }]);

    const st = structured(await call(client, 'get_tunnel_status'));
    assert.equal(st['status'], 'active');
    assert.equal(st['active'], true);
    assert.equal(st['mcp_url'], `${FAKE_URL}/mcp`);
    assert.equal(typeof st['started_at'], 'string');

    const stop = await call(client, 'stop_tunnel');
    assert.equal(stop.isError, undefined);
    const so = structured(stop);
    assert.equal(so['status'], 'stopped');
    assert.match(String(so['message']), /stopped/i);
    const again = await call(client, 'stop_tunnel');
    assert.equal(again.isError, undefined, 'stopping nothing is not an error');
    assert.equal(structured(again)['status'], 'stopped');
    assert.equal(controller.stopCalls, 1);
    await client.close();
  });

  void it('start_tunnel passes host, port and path, and reports connecting when the edge is late', async () => {
    const controller = new FakeController();
    controller.nextOutcome = 'connecting';
    const { client } = await connect(controller);
    const s = structured(await call(client, 'start_tunnel', { port: 3000, host: '127.0.0.1', path: '/api/mcp' }));
    assert.equal(s['status'], 'connecting');
    assert.equal(s['mcp_url'], `${FAKE_URL}/api/mcp`);
    assert.equal(s['local_url'], 'http://127.0.0.1:3000');
    assert.match(String(s['message']), /get_tunnel_status/);
    assert.deepEqual(controller.startCalls, [{ host: '127.0.0.1', port: 3000, path: '/api/mcp' }]);
    await client.close();
  });

  void it('start_tunnel twice with the same target returns the same tunnel; another target says to stop first', async () => {
    const { client, controller } = await connect();
    const first = structured(await call(client, 'start_tunnel', { port: 8002 }));
    const second = structured(await call(client, 'start_tunnel', { port: 8002, host: 'localhost', path: '/mcp' }));
    assert.deepEqual(second, first);
    assert.equal(controller.states.filter((s) => s.status === 'starting').length, 1);
    const other = await call(client, 'start_tunnel', { port: 9000 });
    assert.equal(other.isError, true);
    assert.match(text(other), /stop/i);
    assert.match(text(other), /stop_tunnel/);
    assert.equal(controller.state.status, 'active', 'the live tunnel is untouched');
    await client.close();
  });

  void it('a failed start is an error that carries the status and the reason', async () => {
    const controller = new FakeController();
    controller.nextOutcome = { fail: { code: 'not-found', message: 'cloudflared was not found. Install it or set its path.', lastLines: [] } };
    const { client } = await connect(controller);
    const r = await call(client, 'start_tunnel');
    assert.equal(r.isError, true);
    const s = structured(r);
    assert.equal(s['status'], 'failed');
    assert.match(String(s['message']), /cloudflared was not found/);
    const st = structured(await call(client, 'get_tunnel_status'));
    assert.deepEqual(st['last_error'], { code: 'not-found', message: 'cloudflared was not found. Install it or set its path.', exit_code: null, signal: null });
    await client.close();
  });

  void it('rejects bad input with an error naming the field and what is allowed', async () => {
    const { client, controller } = await connect();
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ port: 0 }, /port.*1 to 65535/],
      [{ port: 65536 }, /port.*1 to 65535/],
      [{ port: 80.5 }, /port.*integer.*1 to 65535/],
      [{ port: 'abc' }, /port.*"abc".*1 to 65535/],
      [{ port: true }, /port.*1 to 65535/],
      [{ host: '10.0.0.1' }, /host.*10\.0\.0\.1.*loopback.*localhost.*127\.0\.0\.1.*::1/i],
      [{ host: '169.254.169.254' }, /host.*169\.254\.169\.254.*loopback/i],
      [{ host: 'example.com' }, /host.*example\.com.*loopback/i],
      [{ host: 'http://localhost:8002' }, /host.*hostname or IP address/],
      [{ host: 42 }, /host.*string/],
      [{ path: 'mcp' }, /path.*start with "\/"/],
      [{ path: '/a b' }, /path.*whitespace/],
      [{ path: '/\u0000' }, /path.*control/],
      [{ path: `/${'a'.repeat(2999)}` }, /path.*3000 characters.*2048/],
      [{ access: 'public' }, /access "public".*"secret".*"open"/],
      [{ access: true }, /access boolean.*"secret".*"open"/],
    ];
    for (const [args, expected] of cases) {
      const r = await call(client, 'start_tunnel', args);
      assert.equal(r.isError, true, JSON.stringify(args));
      assert.match(text(r), expected, JSON.stringify(args));
    }
    assert.equal(controller.startCalls.length, 0, 'the controller never saw bad input');
    await client.close();
  });

  void it('allowedHosts lets the user permit a non-loopback host', async () => {
    const { client, controller } = await connect(undefined, { allowedHosts: ['10.0.0.1', 'Example.COM'] });
    const r = await call(client, 'start_tunnel', { host: '10.0.0.1', port: 8080 });
    assert.equal(r.isError, undefined);
    assert.equal(structured(r)['local_url'], 'http://10.0.0.1:8080');
    await call(client, 'stop_tunnel');
    const r2 = await call(client, 'start_tunnel', { host: 'example.com' });
    assert.equal(r2.isError, undefined);
    const denied = await call(client, 'start_tunnel', { host: '169.254.169.254' });
    assert.equal(denied.isError, true);
    assert.match(text(denied), /allowed hosts \(10\.0\.0\.1, Example\.COM\)/);
    assert.deepEqual(controller.startCalls.map((t) => t.host), ['10.0.0.1', 'example.com']);
    await client.close();
  });

  void it('access "open" follows the host\'s policy, and the schema says which: ask (with a prompt), allow, refuse (the default without a prompt)', async () => {
    const accessText = async (client: Client) => {
      const { tools } = await client.listTools();
      return String((tools.find((t) => t.name === 'start_tunnel')?.inputSchema.properties?.['access'] as { description?: string } | undefined)?.description);
    };
    // No prompt to ask with, no policy given: refused, naming the fix the host gave.
    const refused = await connect(undefined, { openRefusedFix: 'pass --allow-open' });
    assert.match(await accessText(refused.client), /refused by this server/);
    const r = await call(refused.client, 'start_tunnel', { access: 'open' });
    assert.equal(r.isError, true);
    assert.match(text(r), /Refused: .*pass --allow-open/);
    assert.deepEqual(refused.controller.startCalls, [], 'nothing started');
    assert.equal(structured(await call(refused.client, 'start_tunnel', { access: 'secret' }))['status'], 'active', 'secret is still fine');
    await refused.client.close();
    const allowed = await connect(undefined, { openAccess: 'allow' });
    assert.match(await accessText(allowed.client), /allowed here without asking/);
    assert.equal(structured(await call(allowed.client, 'start_tunnel', { access: 'open' }))['access'], 'open');
    await allowed.client.close();
    const asking = await connect(undefined, { confirmStart: () => Promise.resolve(false) });
    assert.match(await accessText(asking.client), /the user is asked first/);
    assert.match(text(await call(asking.client, 'start_tunnel', { access: 'open' })), /declined/);
    await asking.client.close();
  });

  void it('allowedHosts given as a function is read at each call: a host the user removes is refused at once', async () => {
    let hosts = ['10.0.0.1'];
    const { client, controller } = await connect(undefined, { allowedHosts: () => hosts, howToAllowHost: 'add it to the setting X' });
    assert.equal((await call(client, 'start_tunnel', { host: '10.0.0.1' })).isError, undefined);
    await call(client, 'stop_tunnel');
    hosts = [];
    const denied = await call(client, 'start_tunnel', { host: '10.0.0.1' });
    assert.equal(denied.isError, true);
    assert.match(text(denied), /only be exposed if the user chooses to: add it to the setting X/);
    assert.deepEqual((await readJson(client, 'tunnel://config'))['allowed_hosts'], []);
    assert.equal(controller.startCalls.length, 1);
    await client.close();
  });

  void it('start_tunnel access: "secret" returns the MCP URL with the share secret; the mode reaches the controller and the consent prompt', async () => {
    const asked: TunnelTarget[] = [];
    const { client, controller } = await connect(undefined, { confirmStart: (t) => (asked.push(t), Promise.resolve(true)) });
    const s = structured(await call(client, 'start_tunnel', { access: 'secret' }));
    assert.equal(s['status'], 'active');
    assert.equal(s['access'], 'secret');
    assert.equal(s['mcp_url'], `${FAKE_URL}${FAKE_SHARE_PATH}/mcp`);
    assert.match(String(s['message']), /share secret/);
    assert.equal(structured(await call(client, 'get_tunnel_status'))['access'], 'secret');
    // The same target in the other mode is a different tunnel: stop first.
    const other = await call(client, 'start_tunnel', { access: 'open' });
    assert.equal(other.isError, true);
    assert.match(text(other), /already running in secret mode.*open mode.*stop_tunnel/s);
    await call(client, 'stop_tunnel');
    const o = structured(await call(client, 'start_tunnel', { access: 'open' }));
    assert.equal(o['access'], 'open');
    assert.equal(o['mcp_url'], `${FAKE_URL}/mcp`);
    assert.match(String(o['message']), /Anyone with this URL/);
    assert.deepEqual(controller.startCalls.map((t) => t.access), ['secret', 'open']);
    assert.deepEqual(asked.map((t) => t.access), ['secret', 'open']);
    await client.close();
  });

  void it('asks for consent before exposing a new target, and reports a refusal', async () => {
    const asked: TunnelTarget[] = [];
    let answer = false;
    const confirmStart = (t: TunnelTarget): Promise<boolean> => {
      asked.push(t);
      return Promise.resolve(answer);
    };
    const { client, controller } = await connect(undefined, { confirmStart });
    const declined = await call(client, 'start_tunnel', { port: 8002 });
    assert.equal(declined.isError, true);
    assert.match(text(declined), /The user declined to expose http:\/\/localhost:8002\/mcp/);
    assert.equal(controller.startCalls.length, 0);
    answer = true;
    assert.equal((await call(client, 'start_tunnel', { port: 8002 })).isError, undefined);
    assert.equal((await call(client, 'start_tunnel', { port: 8002 })).isError, undefined);
    assert.equal(asked.length, 2, 'no second prompt for the target already live');
    assert.deepEqual(asked[0], { host: 'localhost', port: 8002, path: '/mcp' });
    await client.close();
  });

  void it('lists and reads the six JSON resources', async () => {
    const { client } = await connect();
    const { resources } = await client.listResources();
    assert.deepEqual(resources.map((r) => r.uri).sort(), ['tunnel://activity', 'tunnel://config', 'tunnel://metrics', 'tunnel://shares', 'tunnel://status', 'tunnel://url']);
    for (const r of resources) assert.equal(r.mimeType, 'application/json');

    const stopped = await readJson(client, 'tunnel://url');
    assert.deepEqual(stopped, { available: false, url: null, mcp_url: null });
    await call(client, 'start_tunnel');

    const status = await readJson(client, 'tunnel://status');
    for (const k of ['status', 'active', 'url', 'mcp_url', 'local_url', 'pid', 'uptime_seconds', 'started_at', 'edge_locations', 'last_error']) assert.ok(k in status, `status.${k}`);
    assert.equal(status['status'], 'active');
    assert.equal(status['active'], true);
    assert.deepEqual(await readJson(client, 'tunnel://url'), { available: true, url: FAKE_URL, mcp_url: `${FAKE_URL}/mcp` });
    const config = await readJson(client, 'tunnel://config');
    for (const k of ['status', 'pid', 'url', 'local_url', 'cloudflared_version', 'cloudflared_path', 'metrics_address']) assert.ok(k in config, `config.${k}`);
    assert.equal(config['cloudflared_version'], '2026.8.2');
    assert.equal(config['metrics_address'], '127.0.0.1:20241');
    assert.deepEqual(config['target'], { host: 'localhost', port: 8002, path: '/mcp', access: null });
    const metrics = await readJson(client, 'tunnel://metrics');
    for (const k of ['status', 'active', 'uptime_seconds', 'total_requests', 'request_errors', 'concurrent_requests', 'responses_by_code', 'edge_locations']) assert.ok(k in metrics, `metrics.${k}`);
    assert.equal(metrics['total_requests'], 0);
    assert.deepEqual(metrics['edge_locations'], ['ams01']);
    await client.close();
  });

  void it('reachable: what the doctor found for the first share, in get_tunnel_status and tunnel://status, with resources/updated when it changes', async () => {
    const controller = new FakeController();
    const box: { current?: ReachabilityResult } = {};
    const changed = new Emitter<unknown>();
    const reachability = { result: (id: string) => (id === controller.listShares()[0]?.id ? box.current : undefined), onDidChange: changed.event };
    const { client } = await connect(controller, { reachability });
    await call(client, 'start_tunnel');
    assert.equal(structured(await call(client, 'get_tunnel_status'))['reachable'], null, 'not checked yet');
    const updates: string[] = [];
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
      updates.push(n.params.uri);
    });
    await client.subscribeResource({ uri: 'tunnel://status' });
    const current: ReachabilityResult = { state: 'host-rejected', ok: false, message: 'The local server rejected the tunnelled Host (403).', fix: 'Set mcpTunnel.hostHeader to "origin".', status: 403, rtt_ms: 40, first_event_ms: null, checked_at: '2026-12-03T07:00:00.000Z', host: 'x.trycloudflare.com' };
    box.current = current;
    changed.fire(undefined);
    await tick();
    assert.deepEqual(updates, ['tunnel://status']);
    const { host: _host, ...expected } = current;
    assert.deepEqual(structured(await call(client, 'get_tunnel_status'))['reachable'], expected);
    assert.deepEqual((await readJson(client, 'tunnel://status'))['reachable'], expected);
    await client.close();
  });

  void it('sends resources/updated to subscribers on state and metrics changes, and drops listeners on close', async () => {
    const controller = new FakeController();
    const before = controller.listenerCount;
    const { client } = await connect(controller);
    const updates: string[] = [];
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
      updates.push(n.params.uri);
    });
    assert.equal(controller.listenerCount, before, 'no listener until something is subscribed');
    await client.subscribeResource({ uri: 'tunnel://status' });
    await client.subscribeResource({ uri: 'tunnel://metrics' });
    assert.ok(controller.listenerCount > before);

    await call(client, 'start_tunnel');
    await tick();
    assert.ok(updates.includes('tunnel://status'), `status update in ${JSON.stringify(updates)}`);
    assert.ok(!updates.includes('tunnel://url'), 'unsubscribed URIs are not sent');

    updates.length = 0;
    controller.setMetrics({ totalRequests: 5, requestErrors: 1, concurrentRequests: 0, responsesByCode: { '200': 4, '500': 1 }, edgeLocations: ['ams01'], readyConnections: 4, readAt: Date.now() });
    await tick();
    assert.deepEqual(updates, ['tunnel://metrics']);
    const m = await readJson(client, 'tunnel://metrics');
    assert.equal(m['total_requests'], 5);
    assert.deepEqual(m['responses_by_code'], { '200': 4, '500': 1 });

    updates.length = 0;
    controller.setMetrics({ totalRequests: 5, requestErrors: 1, concurrentRequests: 0, responsesByCode: { '200': 4, '500': 1 }, edgeLocations: ['ams01'], readyConnections: 4, readAt: Date.now() + 5000 });
    await tick();
    assert.equal(updates.length, 0, 'a poll that changed nothing sends nothing');

    await client.unsubscribeResource({ uri: 'tunnel://metrics' });
    await client.subscribeResource({ uri: 'tunnel://url' });
    updates.length = 0;
    await call(client, 'stop_tunnel');
    await tick();
    assert.ok(updates.includes('tunnel://status') && updates.includes('tunnel://url') && !updates.includes('tunnel://metrics'), JSON.stringify(updates));

    await assert.rejects(client.subscribeResource({ uri: 'tunnel://nope' }), /Unknown resource.*tunnel:\/\/status/);
    await client.close();
    await tick();
    assert.equal(controller.listenerCount, before, 'listeners are back after close');
  });

  void it('unsubscribing everything releases the controller listeners', async () => {
    const controller = new FakeController();
    const { client } = await connect(controller);
    await client.subscribeResource({ uri: 'tunnel://status' });
    assert.equal(controller.stateEmitter.listenerCount, 1);
    await client.unsubscribeResource({ uri: 'tunnel://status' });
    assert.equal(controller.listenerCount, 0);
    await client.close();
  });

  void it('serveStdio serves over streams and ends with its input', async () => {
    const controller = new FakeController();
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const served = await serveStdio(controller, { version: '0.1.0-test', stdin, stdout });
    const client = new Client({ name: 'test', version: '1.0.0' });
    await client.connect(streamClientTransport(stdout, stdin));
    await client.subscribeResource({ uri: 'tunnel://status' });
    const r = await call(client, 'get_tunnel_status');
    assert.equal(structured(r)['status'], 'stopped');
    assert.equal(controller.listenerCount, 2);
    stdin.end();
    await served.closed;
    assert.equal(controller.listenerCount, 0);
    await client.close();
  });
});

/** A client transport over a pair of streams, framed like stdio (one JSON message per line). */
function streamClientTransport(input: PassThrough, output: PassThrough): Transport {
  const buffer = new ReadBuffer();
  const t: Transport = {
    start: () => {
      input.on('data', (chunk: Buffer) => {
        buffer.append(chunk);
        for (let m = buffer.readMessage(); m !== null; m = buffer.readMessage()) t.onmessage?.(m);
      });
      return Promise.resolve();
    },
    send: (message: JSONRPCMessage) => {
      if (!output.writableEnded) output.write(serializeMessage(message));
      return Promise.resolve();
    },
    close: () => {
      input.removeAllListeners('data');
      t.onclose?.();
      return Promise.resolve();
    },
  };
  return t;
}

void describe('share_mcp_server', () => {
  void it('exists only when the host provides shareServer; passes the name; a refusal is an error result with its reason; a share comes back structured', async () => {
    const without = await connect();
    assert.ok(!(await without.client.listTools()).tools.some((t) => t.name === 'share_mcp_server'), 'the CLI host has no such tool');
    const asked: string[] = [];
    const { client } = await connect(new FakeController(), {
      shareServer: (name) => {
        asked.push(name);
        return Promise.resolve(
          name === 'fs'
            ? { ok: true, share_id: 'sh-0000abcd', name: 'fs', command: 'npx -y @modelcontextprotocol/server-filesystem /tmp', tools: 14, mcp_url: 'https://x.trycloudflare.com/s3cr3t/mcp' }
            : { ok: false, message: 'Agents may not share MCP servers from mcp.json on this machine: … mcpTunnel.mcp.allowStdioShares …' },
        );
      },
    });
    const tool = (await client.listTools()).tools.find((t) => t.name === 'share_mcp_server');
    assert.match(tool?.description ?? '', /mcpTunnel\.mcp\.allowStdioShares/, 'the agent is told what it needs');
    const ok = await call(client, 'share_mcp_server', { name: 'fs' });
    assert.equal(ok.isError, undefined);
    assert.deepEqual(structured(ok), { share_id: 'sh-0000abcd', name: 'fs', command: 'npx -y @modelcontextprotocol/server-filesystem /tmp', tools: 14, mcp_url: 'https://x.trycloudflare.com/s3cr3t/mcp' });
    const refused = await call(client, 'share_mcp_server', { name: 'other' });
    assert.equal(refused.isError, true);
    assert.match(text(refused), /allowStdioShares/);
    const bad = await call(client, 'share_mcp_server', { name: 42 });
    assert.equal(bad.isError, true);
    assert.match(text(bad), /Invalid name/);
    assert.deepEqual(asked, ['fs', 'other']);
  });
});

void describe('tunnel://activity', () => {
  void it("lists the recorded calls without bodies (all, and one share's); a subscriber is told when calls come", async () => {
    const controller = new FakeController();
    const { client } = await connect(controller);
    await call(client, 'start_tunnel');
    const shareId = controller.listShares()[0]?.id ?? '';
    const updates: string[] = [];
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void updates.push(n.params.uri));
    await client.subscribeResource({ uri: 'tunnel://activity' });
    await client.subscribeResource({ uri: `tunnel://shares/${shareId}/activity` });
    const call1 = { id: 'a-1', at: Date.parse('2026-12-02T10:00:00Z'), share_id: shareId, link: 'share secret', client: 'claude-ai 1.2', remote_ip: '203.0.113.7', country: 'DE', from_tunnel: true, http_method: 'POST', status: 200, method: 'tools/call', name: 'echo', error_code: null, tool_error: false, duration_ms: 1.5, bytes_in: 90, bytes_out: 120, events: null, session: 's', header_mismatch: false, request_body: '{"secret-ish":"body"}', response_body: '{}', request_truncated_from: null, response_truncated_from: null };
    controller.recorded.push(call1, { ...call1, id: 'a-2', share_id: 'sh-other', name: 'get-env' });
    controller.activityEmitter.fire();
    await new Promise((r) => setTimeout(r, 400));
    assert.deepEqual(updates.sort(), ['tunnel://activity', `tunnel://shares/${shareId}/activity`].sort(), 'one update each, after the debounce');
    const all = await readJson(client, 'tunnel://activity');
    assert.equal(all['recorded'], 2);
    const calls = all['calls'] as Array<Record<string, unknown>>;
    assert.deepEqual(calls.map((c) => c['name']), ['echo', 'get-env']);
    assert.equal(calls[0]?.['at'], '2026-12-02T10:00:00.000Z');
    assert.ok(!('request_body' in (calls[0] ?? {})) && !('response_body' in (calls[0] ?? {})), 'no bodies');
    const one = await readJson(client, `tunnel://shares/${shareId}/activity`);
    assert.deepEqual((one['calls'] as Array<Record<string, unknown>>).map((c) => c['id']), ['a-1']);
    await assert.rejects(client.readResource({ uri: 'tunnel://shares/sh-nope/activity' }), /No share "sh-nope"/);
    await client.close();
  });
});

/**
 * Load: 200 concurrent `tools/call get_tunnel_status` (plus `resources/read`) over the HTTP host
 * from real SDK clients (20 clients × 10 calls each, all in flight at once). Asserts correctness
 * only (0 errors, every answer right); the p50/p99 printed are informational (see test/bench).
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startHttpHost } from '../../src/mcp/httpHost';
import { FAKE_PID, FAKE_URL, FakeController } from '../support/fakeController';

const CLIENTS = 20;
const CALLS_PER_CLIENT = 10;
const READS_PER_CLIENT = 2;

function pct(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
}

describe('load: concurrent MCP calls over the HTTP host', () => {
  it(`${CLIENTS * CALLS_PER_CLIENT} concurrent tools/call (+ ${CLIENTS * READS_PER_CLIENT} resources/read) from ${CLIENTS} SDK clients: 0 errors`, async () => {
    const controller = new FakeController();
    const startedAt = Date.now() - 5000;
    controller.setState({
      status: 'active',
      target: { host: 'localhost', port: 8002, path: '/mcp' },
      startedAt,
      pid: FAKE_PID,
      url: FAKE_URL,
      connectedAt: startedAt + 1000,
      connections: [{ connIndex: 0, location: 'ams01', protocol: 'quic' }],
    });
    const errors: string[] = [];
    const host = await startHttpHost(controller, { serverOptions: { version: 'load' }, log: (level, msg) => level === 'error' && errors.push(msg) });
    const auth = { Authorization: `Bearer ${host.token}` };
    const clients: { client: Client; transport: StreamableHTTPClientTransport }[] = [];
    try {
      const tc = performance.now();
      await Promise.all(
        Array.from({ length: CLIENTS }, async (_, i) => {
          const transport = new StreamableHTTPClientTransport(new URL(host.url), { requestInit: { headers: auth } });
          const client = new Client({ name: `load-${i}`, version: '1.0.0' });
          await client.connect(transport);
          await client.listTools(); // caches the output schemas: every structuredContent is validated
          clients.push({ client, transport });
        }),
      );
      const connectMs = performance.now() - tc;
      assert.equal(host.sessionCount, CLIENTS);

      const round = async (label: string): Promise<{ calls: number[]; reads: number[]; wall: number }> => {
        const calls: number[] = [];
        const reads: number[] = [];
        const t0 = performance.now();
        const settled = await Promise.allSettled(
          clients.flatMap(({ client }) => [
            ...Array.from({ length: CALLS_PER_CLIENT }, async () => {
              const t = performance.now();
              const r = (await client.callTool({ name: 'get_tunnel_status', arguments: {} })) as CallToolResult;
              calls.push(performance.now() - t);
              assert.ok(!r.isError, JSON.stringify(r.content));
              assert.equal(r.structuredContent?.['status'], 'active');
              assert.equal(r.structuredContent?.['url'], FAKE_URL);
              assert.equal(r.structuredContent?.['mcp_url'], `${FAKE_URL}/mcp`);
              assert.equal(r.structuredContent?.['pid'], FAKE_PID);
            }),
            ...Array.from({ length: READS_PER_CLIENT }, async () => {
              const t = performance.now();
              const res = await client.readResource({ uri: 'tunnel://status' });
              reads.push(performance.now() - t);
              const c = res.contents[0];
              assert.ok(c && 'text' in c);
              const snap = JSON.parse(c.text) as { status: string; url: string };
              assert.equal(snap.status, 'active');
              assert.equal(snap.url, FAKE_URL);
            }),
          ]),
        );
        const wall = performance.now() - t0;
        for (const s of settled) if (s.status === 'rejected') errors.push(`${label}: ${String(s.reason)}`);
        return { calls: calls.sort((a, b) => a - b), reads: reads.sort((a, b) => a - b), wall };
      };

      const cold = await round('cold');
      const warm = await round('warm');
      const fmt = (xs: number[]) => `p50 ${pct(xs, 50).toFixed(1)} ms, p99 ${pct(xs, 99).toFixed(1)} ms, max ${pct(xs, 100).toFixed(1)} ms`;
      console.log(
        [
          `load: ${CLIENTS} SDK clients connected in ${connectMs.toFixed(0)} ms; ${CLIENTS * CALLS_PER_CLIENT} tools/call + ${CLIENTS * READS_PER_CLIENT} resources/read in flight at once`,
          `  round 1 (cold): ${cold.calls.length} calls ${fmt(cold.calls)}; ${cold.reads.length} reads ${fmt(cold.reads)}; wall ${cold.wall.toFixed(0)} ms`,
          `  round 2 (warm): ${warm.calls.length} calls ${fmt(warm.calls)}; ${warm.reads.length} reads ${fmt(warm.reads)}; wall ${warm.wall.toFixed(0)} ms`,
          `  errors: ${errors.length}`,
        ].join('\n'),
      );
      assert.deepEqual(errors, []);
      for (const r of [cold, warm]) {
        assert.equal(r.calls.length, CLIENTS * CALLS_PER_CLIENT);
        assert.equal(r.reads.length, CLIENTS * READS_PER_CLIENT);
      }
      assert.equal(host.sessionCount, CLIENTS);
    } finally {
      for (const { client, transport } of clients) {
        await transport.terminateSession().catch(() => undefined);
        await client.close();
      }
      await host.close();
    }
    assert.equal(host.sessionCount, 0);
    assert.equal(controller.listenerCount, 0);
  });
});

/**
 * The "extension host" of the benchmark: a plain Node process (forked with IPC and --expose-gc)
 * that activates dist/extension.js against the stub `vscode`, and on request starts a live tunnel
 * (fake cloudflared), the access gate, the extension's own MCP HTTP host (dist/mcp.js, loaded the
 * way VS Code's first resolve loads it) and the bare SDK reference server; it reports its memory.
 */
import { Agent, createServer, request, type Server } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Server as NetServer } from 'node:net';
import { startAccessGate, type AccessGate } from '../../src/core/gate/accessGate';
import { Recorder } from '../../src/core/gate/recorder';
import type { TunnelApi } from '../../src/core/model/tunnelState';
import { createVscodeStub, fakeContext, installVscodeStub } from './vscodeStub';

export type HostRequest =
  | { cmd: 'activate'; extensionPath: string; storageDir: string; settings: Record<string, unknown> }
  | { cmd: 'mem'; gc: boolean }
  | { cmd: 'cpu' }
  | { cmd: 'sampleStart'; intervalMs: number }
  | { cmd: 'sampleStop' }
  | { cmd: 'startGate'; originPort: number; routes?: number; inspect?: boolean; tools?: string[] }
  | { cmd: 'fillRecorder'; port: number; secret: string; calls: number }
  | { cmd: 'startBareProxy'; originPort: number }
  | { cmd: 'startPipe'; originPort: number }
  | { cmd: 'startTunnel'; host: string; port: number; path: string }
  | { cmd: 'startMcpHost' }
  | { cmd: 'startBare'; bareMcpPath: string }
  | { cmd: 'shutdown' };

export interface MemSample {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
}

interface ExtensionModule {
  activate(ctx: unknown): { controller: TunnelApi; mcp: { ensureHost(): Promise<{ port: number; token: string; close(): Promise<void> }> } };
  deactivate?(): Promise<void>;
}

let ext: ExtensionModule | undefined;
let api: ReturnType<ExtensionModule['activate']> | undefined;
let gate: AccessGate | undefined;
/** Gates with many routes (the 100-share comparison). */
const gates: AccessGate[] = [];
let bareProxy: Server | undefined;
let pipeServer: NetServer | undefined;
let recorder: Recorder | undefined;
let bare: { port: number; close(): Promise<void> } | undefined;
let sampler: NodeJS.Timeout | undefined;
let samples: MemSample[] = [];
let missing: Set<string> = new Set();

const gc = (globalThis as { gc?: () => void }).gc;

function mem(): MemSample {
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external };
}

function need<T>(v: T | undefined, what: string): T {
  if (v === undefined) throw new Error(`${what} first`);
  return v;
}

async function handle(req: HostRequest): Promise<unknown> {
  switch (req.cmd) {
    case 'activate': {
      const stub = createVscodeStub({ settings: req.settings });
      missing = stub.missing;
      installVscodeStub(stub);
      const t0 = performance.now();
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      ext = require(req.extensionPath) as ExtensionModule;
      const t1 = performance.now();
      api = ext.activate(fakeContext(req.storageDir, '0.1.0', stub.missing));
      return { requireMs: t1 - t0, activateMs: performance.now() - t1 };
    }
    case 'mem':
      if (req.gc && gc) {
        gc();
        gc();
      }
      return mem();
    case 'cpu': {
      const u = process.cpuUsage();
      return u.user + u.system;
    }
    case 'sampleStart':
      samples = [mem()];
      sampler = setInterval(() => samples.push(mem()), req.intervalMs);
      return undefined;
    case 'sampleStop':
      if (sampler) clearInterval(sampler);
      sampler = undefined;
      samples.push(mem());
      return samples;
    case 'startGate': {
      // `routes` shares on one gate, all to the origin; the secret returned is the last one's.
      // `inspect`: with the inspector's recorder tapping every exchange (10 000 calls kept).
      const rec = req.inspect ? (recorder = new Recorder({ maxEntries: 10_000 })) : undefined;
      // `tools`: with a tool policy (an allowlist): every body read and judged, every answer filtered.
      const g = await startAccessGate({ origin: { host: '127.0.0.1', port: req.originPort }, ...(rec ? { onPass: (q, r, info) => rec.tap(q, r, info) } : {}), ...(req.tools ? { policy: { tools: req.tools } } : {}) });
      for (let i = 1; i < (req.routes ?? 1); i++) g.addRoute({ id: `r${i}`, origin: { host: '127.0.0.1', port: req.originPort } });
      const ids = g.routeIds();
      const secret = g.routeSecretPath(ids[ids.length - 1] ?? '')?.slice(1) ?? '';
      if ((req.routes && req.routes > 1) || req.inspect || req.tools) gates.push(g);
      else gate = g;
      return { port: g.port, secret };
    }
    case 'fillRecorder': {
      // 10 000 MCP-sized calls (a tools/call body, a JSON answer) recorded: the heap they add.
      const rec = need(recorder, 'startGate with inspect');
      rec.clear();
      const settle = async (): Promise<number> => {
        await new Promise((r) => setTimeout(r, 100));
        gc?.();
        gc?.();
        return process.memoryUsage().heapUsed;
      };
      const before = await settle();
      const agent = new Agent({ keepAlive: true, maxSockets: 8 });
      const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { message: 'x'.repeat(120) } } });
      let sent = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (sent < req.calls) {
            sent++;
            await new Promise<void>((resolve, reject) => {
              const q = request({ host: '127.0.0.1', port: req.port, method: 'POST', path: `/${req.secret}/mcp`, agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'user-agent': 'bench' } }, (res) => {
                res.resume();
                res.on('end', resolve);
              });
              q.on('error', reject);
              q.end(body);
            });
          }
        }),
      );
      agent.destroy();
      const recorded = rec.list().length;
      const after = await settle();
      return { recorded, heapDelta: after - before };
    }
    case 'startBareProxy': {
      // The reference for the gate: the least a Node reverse proxy does (no checks, headers as is).
      const agent = new Agent({ keepAlive: true });
      const originPort = req.originPort;
      const server = createServer((inc, res) => {
        const up = request({ host: '127.0.0.1', port: originPort, method: inc.method, path: inc.url, headers: inc.headers, agent }, (ures) => {
          res.writeHead(ures.statusCode ?? 502, ures.headers);
          ures.pipe(res);
        });
        up.on('error', () => res.destroy());
        inc.pipe(up);
      });
      bareProxy = server;
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      return { port: (server.address() as AddressInfo).port };
    }
    case 'startPipe': {
      // What a hop can cost at least: a raw TCP pipe to the origin, one origin connection per client one.
      const originPort = req.originPort;
      const server = createNetServer((c) => {
        const u = connect({ host: '127.0.0.1', port: originPort, noDelay: true });
        c.setNoDelay(true);
        c.pipe(u);
        u.pipe(c);
        c.on('error', () => u.destroy());
        u.on('error', () => c.destroy());
      });
      pipeServer = server;
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      return { port: (server.address() as AddressInfo).port };
    }
    case 'startTunnel': {
      const s = await need(api, 'activate').controller.start({ host: req.host, port: req.port, path: req.path });
      return { status: s.status, pid: 'pid' in s ? s.pid : undefined };
    }
    case 'startMcpHost': {
      // What VS Code's first resolveMcpServerDefinition does: loads dist/mcp.js, starts the host.
      const host = await need(api, 'activate').mcp.ensureHost();
      return { port: host.port, token: host.token };
    }
    case 'startBare': {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const mod = require(req.bareMcpPath) as { startBareMcp(): Promise<{ port: number; close(): Promise<void> }> };
      bare = await mod.startBareMcp();
      return { port: bare.port };
    }
    case 'shutdown':
      await bare?.close();
      await gate?.close();
      await Promise.all(gates.map((g) => g.close()));
      bareProxy?.closeAllConnections();
      bareProxy?.close();
      pipeServer?.close();
      await ext?.deactivate?.();
      return { missingApi: [...missing].sort() };
  }
}

process.on('message', (msg: { id: number; req: HostRequest }) => {
  handle(msg.req).then(
    (result) => {
      process.send?.({ id: msg.id, ok: true, result });
      if (msg.req.cmd === 'shutdown') setTimeout(() => process.exit(0), 50);
    },
    (err: unknown) => process.send?.({ id: msg.id, ok: false, error: err instanceof Error ? err.stack ?? err.message : String(err) }),
  );
});
process.on('disconnect', () => {
  void (async () => {
    await ext?.deactivate?.();
    process.exit(0);
  })();
});
process.send?.({ ready: true });

/**
 * Load and latency tools on plain node:http with keep-alive agents, loopback only: a closed-loop
 * load generator (N connections, each sending its next request when the last one ended, for a
 * fixed time), an SSE first-event probe, and a raw MCP Streamable-HTTP client.
 */
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';

const HOST = '127.0.0.1';

export interface LoadResult {
  requests: number;
  errors: number;
  non2xx: number;
  elapsedMs: number;
  rps: number;
  latencies: number[];
}

function once(agent: Agent, port: number, path: string, headers: Record<string, string>, body?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: HOST, port, path, headers, agent, ...(body !== undefined ? { method: 'POST' } : {}) }, (res) => {
      res.on('data', () => undefined);
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** `connections` concurrent keep-alive connections hammering GET `path` (POST `body` when given) for `durationMs`. */
export async function loadTest(o: { port: number; path: string; headers?: Record<string, string>; body?: string; connections: number; durationMs: number }): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: o.connections, maxFreeSockets: o.connections });
  const headers = { ...(o.headers ?? {}), ...(o.body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(o.body)) } : {}) };
  const latencies: number[] = [];
  let errors = 0;
  let non2xx = 0;
  const start = performance.now();
  const end = start + o.durationMs;
  const worker = async (): Promise<void> => {
    while (performance.now() < end) {
      const t = performance.now();
      try {
        const status = await once(agent, o.port, o.path, headers, o.body);
        if (status < 200 || status >= 300) non2xx++;
        else latencies.push(performance.now() - t);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: o.connections }, worker));
  const elapsedMs = performance.now() - start;
  agent.destroy();
  return { requests: latencies.length, errors, non2xx, elapsedMs, rps: (latencies.length * 1000) / elapsedMs, latencies };
}

/**
 * Open loop at a fixed rate: `rate` requests/s spread over `connections` keep-alive connections
 * (all opened first, used round-robin), so latency is the servers' own and not queueing behind
 * a saturated closed loop. Latency runs from the moment each request is sent.
 */
export async function rateTest(o: { port: number; path: string; headers?: Record<string, string>; connections: number; rate: number; durationMs: number }): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: o.connections, maxFreeSockets: o.connections, scheduling: 'fifo' });
  const headers = o.headers ?? {};
  await Promise.all(Array.from({ length: o.connections }, () => once(agent, o.port, o.path, headers).catch(() => 0)));
  const latencies: number[] = [];
  let errors = 0;
  let non2xx = 0;
  let sent = 0;
  const total = Math.round((o.rate * o.durationMs) / 1000);
  const inflight = new Set<Promise<void>>();
  const start = performance.now();
  const fire = (): void => {
    const t = performance.now();
    const p: Promise<void> = once(agent, o.port, o.path, headers).then(
      (status) => {
        if (status < 200 || status >= 300) non2xx++;
        else latencies.push(performance.now() - t);
      },
      () => void errors++,
    );
    inflight.add(p);
    void p.finally(() => inflight.delete(p));
  };
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * o.rate) / 1000));
      while (sent < due) {
        sent++;
        fire();
      }
      if (sent >= total) {
        clearInterval(tick);
        resolve();
      }
    }, 1);
  });
  await Promise.all([...inflight]);
  const elapsedMs = performance.now() - start;
  agent.destroy();
  return { requests: latencies.length, errors, non2xx, elapsedMs, rps: (latencies.length * 1000) / elapsedMs, latencies };
}

/** Time from sending GET `path` to the first `data:` of the event stream (ms). */
export function sseFirstEvent(agent: Agent, port: number, path: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = performance.now();
    let first: number | undefined;
    let buf = '';
    const req = request({ host: HOST, port, path, headers: { accept: 'text/event-stream', ...headers }, agent }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`SSE answered ${res.statusCode}`));
        return;
      }
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (first !== undefined) return;
        buf += c;
        if (buf.includes('data:')) first = performance.now() - t;
      });
      res.on('end', () => (first === undefined ? reject(new Error('SSE ended without an event')) : resolve(first)));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** A JSON-RPC client over MCP Streamable HTTP (POST, SSE or JSON answers), one session. */
export class RawMcpClient {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1 });
  private sessionId: string | undefined;
  private nextId = 1;

  constructor(
    readonly port: number,
    private readonly token?: string,
    private readonly path = '/mcp',
  ) {}

  private post(body: unknown): Promise<{ status: number; sessionId: string | undefined; text: string }> {
    const data = JSON.stringify(body);
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'content-length': String(Buffer.byteLength(data)),
    };
    if (this.token) headers['authorization'] = `Bearer ${this.token}`;
    if (this.sessionId) {
      headers['mcp-session-id'] = this.sessionId;
      headers['mcp-protocol-version'] = '2025-06-18';
    }
    return new Promise((resolve, reject) => {
      const req = request({ host: HOST, port: this.port, method: 'POST', path: this.path, headers, agent: this.agent }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          const sid = res.headers['mcp-session-id'];
          resolve({ status: res.statusCode ?? 0, sessionId: typeof sid === 'string' ? sid : undefined, text });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(data);
    });
  }

  async initialize(): Promise<void> {
    const r = await this.post({
      jsonrpc: '2.0',
      id: this.nextId++,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench', version: '1.0.0' } },
    });
    if (r.status !== 200 || !r.sessionId) throw new Error(`initialize answered ${r.status}: ${r.text.slice(0, 200)}`);
    this.sessionId = r.sessionId;
    const n = await this.post({ jsonrpc: '2.0', method: 'notifications/initialized' });
    if (n.status !== 202) throw new Error(`notifications/initialized answered ${n.status}`);
  }

  /** One request; returns the result's text (SSE `data:` or JSON body). Throws on an error answer. */
  async call(method: string, params: Record<string, unknown>): Promise<string> {
    const r = await this.post({ jsonrpc: '2.0', id: this.nextId++, method, params });
    if (r.status !== 200 || !r.text.includes('"result"') || r.text.includes('"isError":true')) throw new Error(`${method} answered ${r.status}: ${r.text.slice(0, 300)}`);
    return r.text;
  }

  /** DELETE the session (as a polite client does), then close the connection. */
  async terminate(): Promise<void> {
    if (this.sessionId) {
      const headers: Record<string, string> = { 'mcp-session-id': this.sessionId };
      if (this.token) headers['authorization'] = `Bearer ${this.token}`;
      await new Promise<void>((resolve) => {
        const req = request({ host: HOST, port: this.port, method: 'DELETE', path: this.path, headers, agent: this.agent }, (res) => {
          res.resume();
          res.on('end', resolve);
        });
        req.on('error', () => resolve());
        req.end();
      });
    }
    this.close();
  }

  close(): void {
    this.agent.destroy();
  }
}

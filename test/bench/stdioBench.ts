/**
 * Section 7 of `npm run bench`: the stdio bridge beside the peers people chain today and the
 * floor, in the same run, on the same server (server-everything's `echo`) and the same client
 * (the MCP SDK 1.x `Client`, one per session):
 *   - direct: the client spawns the server itself over stdio (the floor: no HTTP at all)
 *   - ours: the bridge (src/bridge) in its own process; "ours + gate": the same through the
 *     access gate, as a stdio share runs behind the tunnel
 *   - supergateway@4.0.0 `--outputTransport streamableHttp --stateful`
 *   - mcp-proxy@6.7.19 `--server stream`
 * The peers are pinned in test/bench/peers/ and installed there (`npm ci`) on the first run.
 * Figures per target: time to the first result of a new session (spawn + initialize + a call),
 * tools/call p50/p99 and calls/s at concurrency 1 (one session) and 16 (16 sessions, each calling in
 * a closed loop), and the resident memory an idle session adds (the server process's whole tree,
 * from /proc: Linux only).
 */
import { execFile, fork, spawn, type ChildProcess } from 'node:child_process';
import { setMaxListeners } from 'node:events';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { freePort } from '../support/origins';
import { RawMcpClient } from './load';
import { fmt, median, quantile, summarize, type Row } from './stats';
import { sleep } from '../support/wait';

const REPO = path.resolve(__dirname, '..', '..');
const PEERS = path.join(__dirname, 'peers');
const EVERYTHING = path.join(REPO, 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js');
const SERVER = { command: process.execPath, args: [EVERYTHING, 'stdio'] };

export const STDIO_CFG = {
  firstResultRuns: 5,
  /** Between two new sessions: long enough for a server to settle (and our spare to be ready). */
  firstResultGapMs: 1500,
  warmupCalls: 200,
  c1Rounds: 3,
  c1Ms: 2000,
  sessions: 16,
  c16Rounds: 2,
  c16Ms: 3000,
};

const MB = 1024 * 1024;

type TargetName = 'direct' | 'ours' | 'ours + gate' | 'supergateway 4.0.0' | 'mcp-proxy 6.7.19';

interface Session {
  client: Client;
  /** The PID of the server child, when the client spawned it (direct). */
  pid?: number;
  end(): Promise<void>;
}

/** What the raw client (below) needs: where to POST, and the bearer token if any. */
interface RawEndpoint {
  port: number;
  path: string;
  token?: string;
}

interface BridgeTarget {
  name: TargetName;
  raw?: RawEndpoint;
  /** The process whose tree holds the server children (none for direct: the bench's own). */
  rootPid?: number;
  open(): Promise<Session>;
  stop(): Promise<void>;
}

export interface TargetFigures {
  name: TargetName;
  firstResult: number[];
  c1: { p50: number[]; p99: number[]; rate: number[] };
  c16: { p50: number[]; p99: number[]; rate: number[] };
  /** c16 again with the least client there is (raw HTTP or raw stdio): the bridge, not the SDK client, is then the bottleneck. */
  raw16: { p50: number[]; rate: number[]; bridgeCpu: number[] };
  /** CPU per call (µs) at c16: the bridge's own process (children not counted), and the client's (the bench). */
  bridgeCpu: number[];
  clientCpu: number[];
  /** Resident memory one idle session adds (MB), and the server child's own RSS (MB). */
  perSession?: number;
  childRss?: number[];
  error?: string | undefined;
}

async function openClient(transport: StdioClientTransport | StreamableHTTPClientTransport): Promise<Client> {
  const client = new Client({ name: 'mcp-tunnel-bench', version: '1.0.0' });
  await client.connect(transport);
  return client;
}

const echo = (c: Client) => c.callTool({ name: 'echo', arguments: { message: 'bench' } });

function directTarget(): BridgeTarget {
  return {
    name: 'direct',
    async open() {
      const transport = new StdioClientTransport({ ...SERVER, stderr: 'ignore' });
      const client = await openClient(transport);
      return { client, ...(transport.pid !== null ? { pid: transport.pid } : {}), end: () => client.close() };
    },
    async stop() {},
  };
}

function httpTarget(name: TargetName, url: string, headers: Record<string, string>, proc: ChildProcess): BridgeTarget {
  const u = new URL(url);
  const bearer = headers['authorization']?.replace(/^Bearer /, '');
  return {
    name,
    raw: { port: Number(u.port), path: u.pathname, ...(bearer ? { token: bearer } : {}) },
    ...(proc.pid !== undefined ? { rootPid: proc.pid } : {}),
    async open() {
      const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
      const client = await openClient(transport);
      // Node's fetch removes the listener it adds to this signal per request only when the request
      // is garbage-collected, so a fast loop trips the max-listeners warning: not a leak (checked
      // with --expose-gc), and the same for every target. Quiet it.
      const ac = (transport as unknown as { _abortController?: AbortController })._abortController;
      if (ac) setMaxListeners(0, ac.signal);
      return {
        client,
        async end() {
          await transport.terminateSession().catch(() => undefined);
          await client.close();
        },
      };
    },
    stop: () => stopProcess(proc),
  };
}

function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const force = setTimeout(() => killTree(proc.pid), 3000);
    proc.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    proc.kill('SIGTERM');
  });
}

/** SIGKILL a process and everything under it (peers' children must not outlive the bench). */
export function killTree(pid: number | undefined): void {
  if (pid === undefined) return;
  for (const p of [...descendants(pid), pid].reverse()) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** Until something answers HTTP on the port (any status). */
async function waitListening(port: number, proc: ChildProcess, what: string): Promise<void> {
  const until = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${what} exited (${proc.exitCode}) before listening`);
    const up = await new Promise<boolean>((resolve) => {
      const req = request({ host: '127.0.0.1', port, path: '/', method: 'GET', timeout: 500 }, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
      req.end();
    });
    if (up) return;
    if (Date.now() > until) throw new Error(`${what} did not listen on ${port} within 20 s`);
    await sleep(100);
  }
}

function peerBin(pkg: string, rel: string): string {
  return path.join(PEERS, 'node_modules', pkg, rel);
}

/** `npm ci` in test/bench/peers/ when the pinned peers are not there yet. */
async function installPeers(log: (s: string) => void): Promise<void> {
  if (existsSync(peerBin('supergateway', 'package.json')) && existsSync(peerBin('mcp-proxy', 'package.json'))) return;
  log('installing the peers (npm ci in test/bench/peers)…');
  await new Promise<void>((resolve, reject) => {
    execFile(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['ci', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: PEERS, timeout: 180_000 }, (err, _o, stderr) =>
      err ? reject(new Error(`npm ci in test/bench/peers failed: ${stderr.trim().split('\n').pop() ?? err.message}`)) : resolve(),
    );
  });
}

async function startOurs(harness: string, track: (c: ChildProcess) => ChildProcess): Promise<BridgeTarget[]> {
  const proc = track(fork(harness, [SERVER.command, ...SERVER.args], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }));
  const info = await new Promise<{ bridgePort: number; token: string; gatePort: number; secret: string }>((resolve, reject) => {
    proc.once('message', (m) => resolve(m as { bridgePort: number; token: string; gatePort: number; secret: string }));
    proc.once('exit', (code) => reject(new Error(`the bridge harness exited (${code})`)));
  });
  const ours = httpTarget('ours', `http://127.0.0.1:${info.bridgePort}/mcp`, { authorization: `Bearer ${info.token}` }, proc);
  const gated = httpTarget('ours + gate', `http://127.0.0.1:${info.gatePort}/${info.secret}/mcp`, {}, proc);
  // One process serves both: stop it once.
  return [{ ...ours, stop: async () => {} }, gated];
}

async function startSupergateway(track: (c: ChildProcess) => ChildProcess): Promise<BridgeTarget> {
  const port = await freePort();
  const cmd = [SERVER.command, ...SERVER.args].map((a) => JSON.stringify(a)).join(' ');
  const proc = track(
    spawn(process.execPath, [peerBin('supergateway', 'dist/index.js'), '--stdio', cmd, '--outputTransport', 'streamableHttp', '--stateful', '--port', String(port), '--logLevel', 'none'], {
      stdio: ['ignore', 'ignore', 'ignore'],
    }),
  );
  await waitListening(port, proc, 'supergateway');
  return httpTarget('supergateway 4.0.0', `http://127.0.0.1:${port}/mcp`, {}, proc);
}

async function startMcpProxy(track: (c: ChildProcess) => ChildProcess): Promise<BridgeTarget> {
  const port = await freePort();
  const proc = track(
    spawn(process.execPath, [peerBin('mcp-proxy', 'dist/bin/mcp-proxy.mjs'), '--server', 'stream', '--host', '127.0.0.1', '--port', String(port), '--', SERVER.command, ...SERVER.args], {
      stdio: ['ignore', 'ignore', 'ignore'],
    }),
  );
  await waitListening(port, proc, 'mcp-proxy');
  return httpTarget('mcp-proxy 6.7.19', `http://127.0.0.1:${port}/mcp`, {}, proc);
}

/** The least a stdio client does: newline-delimited JSON-RPC to a child it spawns, answers by id. */
class RawStdioClient {
  private readonly proc = spawn(SERVER.command, SERVER.args, { stdio: ['pipe', 'pipe', 'ignore'] });
  private buf = '';
  private nextId = 1;
  private readonly pending = new Map<number, (line: string) => void>();

  constructor() {
    this.proc.stdout.setEncoding('utf8');
    this.proc.stdout.on('data', (chunk: string) => {
      this.buf += chunk;
      for (let nl = this.buf.indexOf('\n'); nl >= 0; nl = this.buf.indexOf('\n')) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const id = (JSON.parse(line) as { id?: unknown }).id;
        if (typeof id !== 'number') continue;
        this.pending.get(id)?.(line);
        this.pending.delete(id);
      }
    });
  }

  private send(method: string, params?: Record<string, unknown>): Promise<string> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.proc.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', id, method, params })}\n`);
    });
  }

  async initialize(): Promise<void> {
    await this.send('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench', version: '1.0.0' } });
    this.proc.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' })}\n`);
  }

  async call(method: string, params: Record<string, unknown>): Promise<string> {
    const line = await this.send(method, params);
    if (!line.includes('"result"') || line.includes('"isError":true')) throw new Error(`${method}: ${line.slice(0, 300)}`);
    return line;
  }

  terminate(): Promise<void> {
    this.proc.kill('SIGTERM');
    return Promise.resolve();
  }
}

type RawClient = Pick<RawStdioClient, 'initialize' | 'call' | 'terminate'>;

async function rawLoop(clients: RawClient[], ms: number): Promise<{ latencies: number[]; rate: number; calls: number }> {
  const latencies: number[] = [];
  const t0 = performance.now();
  const until = t0 + ms;
  let calls = 0;
  const params = { name: 'echo', arguments: { message: 'bench' } };
  await Promise.all(
    clients.map(async (c) => {
      while (performance.now() < until) {
        const t = performance.now();
        await c.call('tools/call', params);
        latencies.push(performance.now() - t);
        calls++;
      }
    }),
  );
  return { latencies, rate: calls / ((performance.now() - t0) / 1000), calls };
}

// ---------------------------------------------------------------------------------------------
// /proc

function parentOf(pid: string): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

function descendants(root: number): number[] {
  if (process.platform !== 'linux') return [];
  const kids = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const ppid = parentOf(d);
    if (ppid === undefined) continue;
    const list = kids.get(ppid) ?? [];
    list.push(Number(d));
    kids.set(ppid, list);
  }
  const out: number[] = [];
  const queue = [...(kids.get(root) ?? [])];
  while (queue.length) {
    const p = queue.shift() as number;
    out.push(p);
    queue.push(...(kids.get(p) ?? []));
  }
  return out;
}

function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

const treeRss = (root: number) => [root, ...descendants(root)].reduce((n, p) => n + rssOf(p), 0);

// ---------------------------------------------------------------------------------------------

/** utime + stime of one process (µs), from /proc (not its children). */
function cpuOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * (1e6 / 100);
  } catch {
    return NaN;
  }
}

const clientCpu = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

async function closedLoop(sessions: Session[], ms: number): Promise<{ latencies: number[]; rate: number; calls: number }> {
  const latencies: number[] = [];
  const t0 = performance.now();
  const until = t0 + ms;
  let calls = 0;
  await Promise.all(
    sessions.map(async (s) => {
      while (performance.now() < until) {
        const t = performance.now();
        await echo(s.client);
        latencies.push(performance.now() - t);
        calls++;
      }
    }),
  );
  return { latencies, rate: calls / ((performance.now() - t0) / 1000), calls };
}

const empty = () => ({ firstResult: [], c1: { p50: [], p99: [], rate: [] }, c16: { p50: [], p99: [], rate: [] }, bridgeCpu: [], clientCpu: [], raw16: { p50: [], rate: [], bridgeCpu: [] } });

async function measure(t: BridgeTarget, log: (s: string) => void): Promise<TargetFigures> {
  const f: TargetFigures = { name: t.name, ...empty() };
  const C = STDIO_CFG;
  log(`stdio bridges: ${t.name}: first result × ${C.firstResultRuns}, c1, c${C.sessions}…`);
  await sleep(C.firstResultGapMs);
  for (let i = 0; i < C.firstResultRuns; i++) {
    const t0 = performance.now();
    const s = await t.open();
    await echo(s.client);
    f.firstResult.push(performance.now() - t0);
    await s.end();
    await sleep(C.firstResultGapMs);
  }

  const one = await t.open();
  for (let i = 0; i < C.warmupCalls; i++) await echo(one.client);
  for (let r = 0; r < C.c1Rounds; r++) {
    const { latencies, rate } = await closedLoop([one], C.c1Ms);
    f.c1.p50.push(quantile(latencies, 0.5));
    f.c1.p99.push(quantile(latencies, 0.99));
    f.c1.rate.push(rate);
  }
  await one.end();

  await sleep(C.firstResultGapMs);
  const before = t.rootPid !== undefined ? treeRss(t.rootPid) : 0;
  const many = await Promise.all(Array.from({ length: C.sessions }, () => t.open()));
  try {
    await Promise.all(many.map(async (s) => {
      for (let i = 0; i < C.warmupCalls / 10; i++) await echo(s.client);
    }));
    for (let r = 0; r < C.c16Rounds; r++) {
      const b0 = t.rootPid !== undefined ? cpuOf(t.rootPid) : NaN;
      const k0 = clientCpu();
      const { latencies, rate, calls } = await closedLoop(many, C.c16Ms);
      f.bridgeCpu.push(((t.rootPid !== undefined ? cpuOf(t.rootPid) : NaN) - b0) / calls);
      f.clientCpu.push((clientCpu() - k0) / calls);
      f.c16.p50.push(quantile(latencies, 0.5));
      f.c16.p99.push(quantile(latencies, 0.99));
      f.c16.rate.push(rate);
    }
    await sleep(1000);
    if (process.platform === 'linux') {
      if (t.rootPid !== undefined) f.perSession = (treeRss(t.rootPid) - before) / C.sessions / MB;
      const pids = many.map((s) => s.pid).filter((p): p is number => p !== undefined);
      if (pids.length) f.childRss = pids.map((p) => rssOf(p) / MB);
    }
  } finally {
    await Promise.allSettled(many.map((s) => s.end()));
  }

  await sleep(C.firstResultGapMs);
  const raw = t.raw;
  const rawClients: RawClient[] = Array.from({ length: C.sessions }, () => (raw ? new RawMcpClient(raw.port, raw.token, raw.path) : new RawStdioClient()));
  try {
    await Promise.all(rawClients.map((c) => c.initialize()));
    await rawLoop(rawClients, 500);
    for (let r = 0; r < C.c16Rounds; r++) {
      const b0 = t.rootPid !== undefined ? cpuOf(t.rootPid) : NaN;
      const { latencies, rate, calls } = await rawLoop(rawClients, C.c16Ms);
      f.raw16.bridgeCpu.push(((t.rootPid !== undefined ? cpuOf(t.rootPid) : NaN) - b0) / calls);
      f.raw16.p50.push(quantile(latencies, 0.5));
      f.raw16.rate.push(rate);
    }
  } finally {
    await Promise.allSettled(rawClients.map((c) => c.terminate()));
  }
  return f;
}

/**
 * Runs every target in turn (one at a time, so none competes with another for the 2 cores) and
 * returns the rows of section 7.
 */
export async function stdioBridgeBench(opts: { bridgeHarness: string; log: (s: string) => void; track: (c: ChildProcess) => ChildProcess }): Promise<{ rows: Row[]; raw: TargetFigures[] }> {
  const { log, track } = opts;
  const figures: TargetFigures[] = [];
  const starters: Array<[TargetName[], () => Promise<BridgeTarget[]>]> = [
    [['direct'], () => Promise.resolve([directTarget()])],
    [['ours', 'ours + gate'], () => startOurs(opts.bridgeHarness, track)],
    [['supergateway 4.0.0'], async () => [await startSupergateway(track)]],
    [['mcp-proxy 6.7.19'], async () => [await startMcpProxy(track)]],
  ];
  let peersError: string | undefined;
  try {
    await installPeers(log);
  } catch (err) {
    peersError = (err as Error).message;
  }
  const only = process.env['STDIO_BENCH_ONLY']?.split(',');
  for (const [names, start] of starters) {
    if (only && !names.some((n) => only.some((o) => n.startsWith(o)))) continue;
    if (peersError && !names.some((n) => n === 'direct' || n.startsWith('ours'))) {
      for (const name of names) figures.push({ name, ...empty(), error: peersError });
      continue;
    }
    let targets: BridgeTarget[] = [];
    try {
      targets = await start();
      for (const t of targets) figures.push(await measure(t, log));
    } catch (err) {
      for (const name of names) if (!figures.some((f) => f.name === name)) figures.push({ name, ...empty(), error: (err as Error).message.split('\n')[0] });
    } finally {
      for (const t of targets) {
        await t.stop();
        killTree(t.rootPid);
      }
    }
  }
  return { rows: rowsOf(figures), raw: figures };
}

function rowsOf(figures: TargetFigures[]): Row[] {
  const C = STDIO_CFG;
  const by = (n: TargetName) => figures.find((f) => f.name === n);
  const peers = (['supergateway 4.0.0', 'mcp-proxy 6.7.19'] as const).map(by).filter((f): f is TargetFigures => f !== undefined && !f.error);
  const best = (pick: (f: TargetFigures) => number[], higher: boolean): { name: string; value: number } | undefined => {
    const vals = peers.map((f) => ({ name: f.name, value: median(pick(f)) })).filter((v) => Number.isFinite(v.value));
    if (!vals.length) return undefined;
    return vals.reduce((a, b) => ((higher ? b.value > a.value : b.value < a.value) ? b : a));
  };
  const floor = by('direct');
  const rows: Row[] = [];
  const ms = 'ms';
  const S = summarize;
  // 7 for the header, then 7<target letter><figure number>: 7b3 is the third figure of the second target.
  let group = '';
  let n = 0;
  const id = () => (group ? `7${group}${++n}` : '7');

  rows.push({
    id: id(),
    figure: `stdio bridges: server-everything echo, SDK 1.x client, c1 = 1 session, c${C.sessions} = ${C.sessions} sessions (children)`,
    unit: '',
    note: `each target alone on the machine in turn; first result: ${C.firstResultRuns} new sessions ${C.firstResultGapMs} ms apart (connect + initialize + one call); c1: ${C.c1Rounds} rounds × ${C.c1Ms / 1000} s closed loop after ${C.warmupCalls} warm-up calls; c${C.sessions}: ${C.c16Rounds} rounds × ${C.c16Ms / 1000} s, every session calling in a closed loop; per-session memory: RSS of the server process's whole tree (/proc) with ${C.sessions} idle sessions minus before they opened, divided by ${C.sessions}`,
  });
  for (const [i, f] of figures.entries()) {
    group = 'abcdefghij'[i] ?? 'z';
    n = 0;
    if (f.error) {
      rows.push({ id: id(), figure: `  ${f.name}`, unit: '', note: `not measured: ${f.error}` });
      continue;
    }
    const isOurs = f.name.startsWith('ours');
    const vsPeer = (pick: (x: TargetFigures) => number[], higher: boolean) => {
      const b = best(pick, higher);
      if (!b) return {};
      const v = median(pick(f));
      return { reference: { label: `best peer (${b.name.split(' ')[0]})`, value: b.value }, ratio: v / b.value, ratioKind: 'ratio' as const };
    };
    const floorRef = (pick: (x: TargetFigures) => number[]) => (floor && f !== floor ? { reference: { label: 'direct stdio', value: median(pick(floor)) }, ratio: median(pick(f)) / median(pick(floor)), ratioKind: 'ratio' as const } : {});
    const first = vsPeer((x) => x.firstResult, false);
    const child = floor?.childRss?.length ? median(floor.childRss) : undefined;
    const shared = f.perSession !== undefined && child !== undefined && f.perSession < child / 2;
    rows.push({
      id: id(),
      ...(shared ? { note: `${f.name} runs one server child for all its sessions (an idle session adds ${fmt(f.perSession, 'MB')}, a child is ${fmt(child, 'MB')}): nothing to spawn for a new session, and nothing kept apart between clients` } : {}),
      figure: `  ${f.name}: first result of a new session`,
      unit: ms,
      value: S(f.firstResult),
      ...(isOurs ? first : floorRef((x) => x.firstResult)),
      ...(isOurs && first.reference ? { target: '≤ best peer', met: median(f.firstResult) <= first.reference.value } : {}),
    });
    rows.push({ id: id(), figure: `  ${f.name}: c1 tools/call p50`, unit: ms, value: S(f.c1.p50), ...floorRef((x) => x.c1.p50), ...(isOurs ? { target: '≤ 2 ms', met: median(f.c1.p50) <= 2 } : {}) });
    rows.push({ id: id(), figure: `  ${f.name}: c1 tools/call p99`, unit: ms, value: S(f.c1.p99), ...floorRef((x) => x.c1.p99) });
    const c1 = vsPeer((x) => x.c1.rate, true);
    rows.push({ id: id(), figure: `  ${f.name}: c1 calls/s`, unit: 'calls/s', value: S(f.c1.rate), ...(isOurs ? c1 : floorRef((x) => x.c1.rate)), ...(isOurs && c1.ratio !== undefined ? { target: '≥ 3× best peer', met: c1.ratio >= 3 } : {}) });
    rows.push({ id: id(), figure: `  ${f.name}: c${C.sessions} tools/call p50 / p99`, unit: ms, value: S(f.c16.p50), note: `p99 ${fmt(median(f.c16.p99), ms)}`, ...floorRef((x) => x.c16.p50) });
    const c16 = vsPeer((x) => x.c16.rate, true);
    rows.push({ id: id(), figure: `  ${f.name}: c${C.sessions} calls/s`, unit: 'calls/s', value: S(f.c16.rate), ...(isOurs ? c16 : floorRef((x) => x.c16.rate)), ...(isOurs && c16.ratio !== undefined ? { target: '≥ 3× best peer', met: c16.ratio >= 3 } : {}) });
    if (f.name !== 'direct') {
      const cpu = vsPeer((x) => x.bridgeCpu, false);
      rows.push({ id: id(), figure: `  ${f.name}: bridge process CPU per call, c${C.sessions}`, unit: 'µs', value: S(f.bridgeCpu), ...(isOurs ? cpu : {}), note: `the bridge's own process (its server children not counted), from /proc; the client (the bench, ${C.sessions} SDK clients) spent ${fmt(median(f.clientCpu))} µs per call` });
    }
    const raw16 = vsPeer((x) => x.raw16.rate, true);
    rows.push({
      id: id(),
      figure: `  ${f.name}: c${C.sessions} calls/s, least client (raw ${f.name === 'direct' ? 'stdio' : 'HTTP'})`,
      unit: 'calls/s',
      value: S(f.raw16.rate),
      ...(isOurs ? raw16 : floorRef((x) => x.raw16.rate)),
      ...(isOurs && raw16.ratio !== undefined ? { target: '≥ 3× best peer', met: raw16.ratio >= 3 } : {}),
      note: `p50 ${fmt(median(f.raw16.p50), ms)}${f.name !== 'direct' ? `, bridge process CPU ${fmt(median(f.raw16.bridgeCpu))} µs per call` : ''}; the same ${C.sessions} sessions driven by a few lines of node:http (or of stdin/stdout) instead of the SDK client, which spends ~0.4 ms of CPU per call and so, on 2 cores, is the bottleneck above`,
    });
    if (f.childRss?.length) rows.push({ id: id(), figure: `  ${f.name}: RSS of one server child`, unit: 'MB', value: S(f.childRss) });
    if (f.perSession !== undefined && f.name !== 'ours + gate') {
      rows.push({
        id: id(),
        figure: `  ${f.name}: memory per idle session`,
        unit: 'MB',
        value: S([f.perSession]),
        ...(child !== undefined ? { reference: { label: 'one child', value: child }, ratio: f.perSession - child, ratioKind: 'diff' as const } : {}),
        ...(isOurs && child !== undefined ? { target: '≤ child + 2 MB', met: f.perSession <= child + 2 } : {}),
      });
    }
  }
  return rows;
}

/** Bundles the bridge harness (as bench.ts does with the others) into `outdir`. */
export async function buildBridgeHarness(outdir: string): Promise<string> {
  const esbuild = await import('esbuild');
  await esbuild.build({
    entryPoints: { bridge: path.join(__dirname, 'bridgeChild.ts') },
    outdir,
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    minify: true,
    logLevel: 'error',
  });
  return path.join(outdir, 'bridge.js');
}

// `node --import tsx test/bench/stdioBench.ts`: this section alone, as a table. `npm run bench`
// runs it so too, in a process of its own (`--json`: rows on stdout), before the other sections:
// the SDK clients then share no heap and no cores with what those leave behind.
if (require.main === module) {
  void (async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const os = await import('node:os');
    const { renderTable } = await import('./stats');
    const json = process.argv.includes('--json');
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'mcpt-stdio-bench-'));
    const kids = new Set<ChildProcess>();
    const t0 = performance.now();
    const log = (s: string) => process.stderr.write(`[stdio bench ${((performance.now() - t0) / 1000).toFixed(1)}s] ${s}\n`);
    try {
      const bridgeHarness = await buildBridgeHarness(tmp);
      const result = await stdioBridgeBench({ bridgeHarness, log, track: (c) => (kids.add(c), c) });
      process.stdout.write(json ? `${JSON.stringify(result)}\n` : `\n${renderTable(result.rows)}\n`);
    } catch (err) {
      process.stderr.write(`stdio bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    } finally {
      for (const k of kids) killTree(k.pid);
      rmSync(tmp, { recursive: true, force: true });
    }
  })();
}

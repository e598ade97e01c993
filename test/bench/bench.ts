/**
 * `npm run bench`: builds the production bundle and the VSIX, then measures (each figure the median
 * of repeated runs, with its spread, and where it has one the ratio to a reference measured in the
 * same run):
 *   1. URL latency: the fake cloudflared's stamp beside the URL line -> the controller's state event
 *   2. start -> active and stop -> exited against the fake, our overhead vs. the child's own time
 *   3. activation: load + activate() of dist/extension.js (stub vscode), code loaded, VSIX size
 *   4. MCP round trip over the loopback HTTP host vs. a bare SDK server
 *   5. access gate: throughput and latency through the gate vs. straight to the origin (100 conns)
 *   6. memory of a host process with a live tunnel, idle and under that load
 *   7. the stdio bridge vs supergateway, mcp-proxy and direct stdio (stdioBench.ts, run first in
 *      a process of its own; alone: `node --import tsx test/bench/stdioBench.ts`)
 * Prints a table and writes bench-results.json. Loopback only; every child is ended by its pid.
 * BENCH_PROFILE=1 writes CPU profiles of the activation and host processes to
 * $TMPDIR/mcp-tunnel-bench-profiles/ (open them in Chrome DevTools or VS Code).
 */
import { execFile, fork, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import * as esbuild from 'esbuild';
import { findCloudflared } from '../../src/core/cloudflared/locate';
import { spawnProcess, type SpawnFn } from '../../src/core/supervisor/processRunner';
import { TunnelController } from '../../src/core/tunnelController';
import type { HostRequest, MemSample } from './hostChild';
import { loadTest, RawMcpClient, rateTest, sseFirstEvent, type LoadResult } from './load';
import { fmt, median, quantile, renderTable, summarize, type Row } from './stats';
import { sleep } from '../support/wait';

const REPO = path.resolve(__dirname, '..', '..');
const FAKE_CLOUDFLARED = path.join(REPO, 'test', 'fixtures', process.platform === 'win32' ? 'cloudflared.cmd' : 'cloudflared');
// cloudflared gets only the environment it needs; the fake's variables are passed on by name.
process.env['MCP_TUNNEL_CLOUDFLARED_ENV'] ??= 'FAKE_CLOUDFLARED_*';
const PROFILE = process.env['BENCH_PROFILE'] === '1';
const PROFILE_DIR = path.join(os.tmpdir(), 'mcp-tunnel-bench-profiles');

const CFG = {
  activationRuns: 20,
  activationColdRuns: 8,
  cycles: 25,
  loadRounds: 4,
  loadMs: 3000,
  /** The fixed-rate rounds offer this fraction of the gate's saturation throughput. */
  rateFraction: 0.25,
  /** CPU per request of the "working origin" scenario (ms). */
  workMs: 1,
  workRounds: 3,
  warmupMs: 1000,
  /** Each round of the concurrency-1/16 measure (issue 12's figures). */
  concMs: 2000,
  connections: 100,
  sseIdleSamples: 40,
  mcpRounds: 8,
  mcpCallsPerRound: 150,
  mcpWarmup: 300,
};

const now = (): number => performance.timeOrigin + performance.now();
const KB = 1024;
const MB = 1024 * 1024;

const loads: { phase: string; at: string; loadavg: number[] }[] = [];
function markLoad(phase: string): void {
  loads.push({ phase, at: new Date().toISOString(), loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100) });
}

const children = new Set<ChildProcess>();
function track<T extends ChildProcess>(c: T): T {
  children.add(c);
  c.once('exit', () => children.delete(c));
  return c;
}
function killChildren(): void {
  for (const c of children) if (c.pid !== undefined && c.exitCode === null) process.kill(c.pid, 'SIGKILL');
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    track(
      execFile(cmd, args, { cwd: REPO, timeout: timeoutMs, maxBuffer: 16 * MB }, (err, stdout, stderr) => {
        if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${stderr}`));
        else resolve({ stdout, stderr });
      }),
    );
  });
}

/** A section run as `node --import tsx <file> --json`: its stdout's last line; its progress on our stderr. */
function runSection(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = track(spawn(process.execPath, ['--import', 'tsx', file, '--json'], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] }));
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => (code === 0 ? resolve(out.trim().split('\n').pop() ?? '') : reject(new Error(`${path.basename(file)} exited with code ${code}`))));
  });
}

let profiles = 0;
const profArgs = (name: string): string[] => (PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${name}-${++profiles}.cpuprofile`] : []);

// ---------------------------------------------------------------------------------------------
// Build

interface Built {
  dist: string;
  extensionBytes: number;
  mcpBytes: number;
  cliBytes: number;
  harness: { activate: string; host: string; origin: string; bareMcp: string };
  buildMs: number;
}

async function build(tmp: string): Promise<Built> {
  const t = performance.now();
  const dist = path.join(tmp, 'dist');
  mkdirSync(dist, { recursive: true });
  // Other work may run a dev build of dist/ meanwhile: take a copy of the production files, retry once.
  for (let attempt = 0; ; attempt++) {
    await run(process.execPath, ['esbuild.mjs', '--production'], 120_000);
    for (const f of ['extension.js', 'mcp.js', 'cli.js']) copyFileSync(path.join(REPO, 'dist', f), path.join(dist, f));
    // Bundles the extension loads on first use (the gate on the first start, the reachability check once a tunnel is up).
    for (const f of ['doctor.js', 'panels.js', 'gate.js']) if (existsSync(path.join(REPO, 'dist', f))) copyFileSync(path.join(REPO, 'dist', f), path.join(dist, f));
    const dev = ['extension.js', 'mcp.js'].some((f) => readFileSync(path.join(dist, f), 'utf8').includes('//# sourceMappingURL='));
    if (!dev) break;
    if (attempt > 0) throw new Error('dist/ keeps being rebuilt in development mode by another process');
  }
  const buildMs = performance.now() - t;
  const out = path.join(tmp, 'harness');
  await esbuild.build({
    entryPoints: {
      activate: path.join(__dirname, 'activateChild.ts'),
      host: path.join(__dirname, 'hostChild.ts'),
      origin: path.join(__dirname, 'originChild.ts'),
      bareMcp: path.join(__dirname, 'bareMcp.ts'),
    },
    outdir: out,
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    minify: true,
    external: ['vscode'],
    logLevel: 'error',
  });
  const size = (f: string) => statSync(path.join(dist, f)).size;
  return {
    dist,
    extensionBytes: size('extension.js'),
    mcpBytes: size('mcp.js'),
    cliBytes: size('cli.js'),
    harness: { activate: path.join(out, 'activate.js'), host: path.join(out, 'host.js'), origin: path.join(out, 'origin.js'), bareMcp: path.join(out, 'bareMcp.js') },
    buildMs,
  };
}

/** vsce packages dist/ as it finds it: `devBuild` says another process rebuilt it meanwhile. */
async function packageVsix(tmp: string): Promise<{ bytes: number; ms: number; devBuild: boolean }> {
  const out = path.join(tmp, 'x.vsix');
  const t = performance.now();
  await run(process.platform === 'win32' ? 'npx.cmd' : 'npx', ['vsce', 'package', '--no-dependencies', '-o', out], 180_000);
  const devBuild = readFileSync(path.join(REPO, 'dist', 'extension.js'), 'utf8').includes('//# sourceMappingURL=');
  return { bytes: statSync(out).size, ms: performance.now() - t, devBuild };
}

// ---------------------------------------------------------------------------------------------
// 3. Activation

interface ActivationRun {
  mode: 'warm' | 'cold';
  requireMs: number;
  activateMs: number;
  totalMs: number;
  modules: { file: string; bytes: number }[];
  loadedBytes: number;
  forbidden: string[];
  missingApi: string[];
}

/** Fresh processes, alternating warm and cold builtins (see activateChild.ts); the first warms the disk cache. */
async function activation(b: Built, tmp: string): Promise<ActivationRun[]> {
  const runs: ActivationRun[] = [];
  const storage = path.join(tmp, 'activation-storage');
  const plan: ('warm' | 'cold')[] = ['warm'];
  for (let i = 0; i < CFG.activationRuns; i++) {
    plan.push('warm');
    if (i % Math.ceil(CFG.activationRuns / CFG.activationColdRuns) === 0) plan.push('cold');
  }
  for (const [i, mode] of plan.entries()) {
    const args = [...(i > 0 ? profArgs(`activation-${mode}`) : []), b.harness.activate, path.join(b.dist, 'extension.js'), storage, mode];
    const { stdout } = await run(process.execPath, args, 30_000);
    const r = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as ActivationRun;
    if (i > 0) runs.push(r);
  }
  return runs;
}

// ---------------------------------------------------------------------------------------------
// 1 + 2. Start / stop cycles against the fake cloudflared

interface Cycle {
  startAt: number;
  spawnAt?: number;
  spawnedAt?: number;
  firstByteAt?: number;
  urlPrintedAt?: number | undefined;
  urlEventAt?: number;
  registeredAt?: number | undefined;
  activeAt?: number;
  stopAt?: number;
  killAt?: number;
  exitAt?: number;
  stoppedAt?: number;
  /** A second share added to the live tunnel: start() called and settled (the route is live). */
  addShareAt?: number;
  addedShareAt?: number;
}

async function cycles(work: string, originPort: number): Promise<{ cycles: Cycle[]; cold: Cycle }> {
  const home = path.join(work, 'home-cycles');
  mkdirSync(home, { recursive: true });
  let cur: Cycle = { startAt: 0 };
  const spawnRec: SpawnFn = (cmd, args, opts) => {
    const c = cur;
    c.spawnAt = now();
    const p = spawnProcess(cmd, args, opts);
    c.spawnedAt = now();
    const first = () => (c.firstByteAt ??= now());
    p.stderr?.once('data', first);
    p.stdout?.once('data', first);
    const kill = p.kill.bind(p);
    p.kill = (sig?: NodeJS.Signals | number) => {
      c.killAt ??= now();
      return kill(sig);
    };
    p.once('exit', () => (c.exitAt = now()));
    return p;
  };
  const ctl = new TunnelController({
    findCloudflared: () => findCloudflared({ explicitPath: FAKE_CLOUDFLARED }),
    stateDir: path.join(work, 'state-cycles'),
    spawn: spawnRec,
    stopGraceMs: 1000,
    autoRestart: false,
    baseEnv: { ...process.env, HOME: home, FAKE_CLOUDFLARED_STATE_DIR: work },
  });
  ctl.onDidChangeState((s) => {
    const t = now();
    if (s.status === 'connecting') cur.urlEventAt ??= t;
    if (s.status === 'active') cur.activeAt ??= t;
    if (s.status === 'stopped') cur.stoppedAt ??= t;
  });
  const target = { host: '127.0.0.1', port: originPort, path: '/mcp' };
  const done: Cycle[] = [];
  try {
    for (let i = 0; i < CFG.cycles + 1; i++) {
      cur = { startAt: now() };
      const s = await ctl.start(target);
      if (s.status !== 'active') throw new Error(`start ${i}: ${JSON.stringify(s)}`);
      const pid = s.pid;
      const end = Date.now() + 2000;
      let fake: { urlPrintedAt?: number; registeredAt?: number } = {};
      while (Date.now() < end) {
        try {
          fake = JSON.parse(readFileSync(path.join(work, `${pid}.json`), 'utf8')) as typeof fake;
        } catch {
          // being replaced
        }
        if (fake.registeredAt !== undefined) break;
        await sleep(10);
      }
      cur.urlPrintedAt = fake.urlPrintedAt;
      cur.registeredAt = fake.registeredAt;
      await sleep(100); // let the post-registration work (URL cross-check, first metrics read) finish
      // Another share on the live tunnel (another path of the same origin): only a gate route.
      cur.addShareAt = now();
      const added = await ctl.start({ ...target, path: `/extra-${i}` });
      cur.addedShareAt = now();
      const addedPid = 'pid' in added ? added.pid : undefined;
      if (added.status !== 'active' || addedPid !== pid) throw new Error(`adding a share: ${added.status}, PID ${addedPid} (the tunnel's is ${pid})`);
      cur.stopAt = now();
      await ctl.stop();
      cur.stoppedAt ??= now();
      done.push(cur);
      await sleep(50);
    }
  } finally {
    await ctl.shutdown(3000);
    ctl.dispose();
  }
  const [cold, ...rest] = done;
  return { cycles: rest, cold: cold ?? { startAt: 0 } };
}

/** With the fake's quic-blocked: the first start (fails, remembers), the next (HTTP/2), and a set HTTP/2 start. */
async function quicBlockedStarts(work: string, originPort: number): Promise<{ first: number[]; second: number[]; http2: number[] }> {
  const out = { first: [] as number[], second: [] as number[], http2: [] as number[] };
  const home = path.join(work, 'home-quic');
  mkdirSync(home, { recursive: true });
  const stateDir = path.join(work, 'state-quic');
  const make = (scenario: string, protocol?: 'http2') =>
    new TunnelController({
      findCloudflared: () => findCloudflared({ explicitPath: FAKE_CLOUDFLARED }),
      stateDir,
      autoRestart: false,
      startTimeoutMs: 30_000,
      stopGraceMs: 1000,
      ...(protocol ? { protocol } : {}),
      baseEnv: { ...process.env, HOME: home, FAKE_CLOUDFLARED_STATE_DIR: work, FAKE_CLOUDFLARED_SCENARIO: scenario },
    });
  const target = { host: '127.0.0.1', port: originPort, path: '/mcp' };
  const timed = async (c: TunnelController, want: string): Promise<number> => {
    const t = now();
    const s = await c.start(target);
    const dt = now() - t;
    if (s.status !== want) throw new Error(`quic-blocked bench: wanted ${want}, got ${JSON.stringify(s)}`);
    await c.shutdown(3000);
    c.dispose();
    return dt;
  };
  for (let i = 0; i < 3; i++) {
    rmSync(path.join(stateDir, 'edge-protocol.json'), { force: true });
    out.first.push(await timed(make('quic-blocked'), 'failed'));
    out.second.push(await timed(make('quic-blocked'), 'active'));
    out.http2.push(await timed(make('ok', 'http2'), 'active'));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Children: origin and host

function forkChild(file: string, execArgv: string[], env: NodeJS.ProcessEnv): ChildProcess {
  return track(fork(file, [], { execArgv, env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
}

async function startOrigin(b: Built): Promise<{ port: number; child: ChildProcess }> {
  const child = forkChild(b.harness.origin, [], process.env);
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m: { port: number }) => resolve(m.port));
    child.once('exit', (code) => reject(new Error(`origin exited (${code})`)));
  });
  return { port, child };
}

class Host {
  private nextId = 1;
  private pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private constructor(readonly child: ChildProcess) {
    child.on('message', (m: { id?: number; ok?: boolean; result?: unknown; error?: string }) => {
      if (m.id === undefined) return;
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.ok) p?.resolve(m.result);
      else p?.reject(new Error(m.error));
    });
    child.once('exit', (code) => {
      for (const p of this.pending.values()) p.reject(new Error(`host exited (${code})`));
      this.pending.clear();
    });
  }

  static async start(b: Built, env: NodeJS.ProcessEnv): Promise<Host> {
    const child = forkChild(b.harness.host, ['--expose-gc', ...profArgs('host')], env);
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`host exited (${code})`)));
    });
    return new Host(child);
  }

  rpc<T>(req: HostRequest): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, req });
    });
  }
}

async function memSamples(host: Host, n: number, gapMs: number): Promise<MemSample[]> {
  const out: MemSample[] = [];
  for (let i = 0; i < n; i++) {
    out.push(await host.rpc<MemSample>({ cmd: 'mem', gc: true }));
    await sleep(gapMs);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// 5. Gate vs direct under load, SSE

interface Target {
  name: 'direct' | 'gate' | 'proxy' | 'gate100' | 'inspect' | 'pipe';
  port: number;
  headers: Record<string, string>;
}

/** One closed-loop round of the issue's measure (concurrency 1 or 16); `cpu`: host µs per request. */
interface ConcRound {
  target: Target['name'];
  conc: number;
  rps: number;
  p50: number;
  bad: number;
  cpu?: number;
}

interface LoadRound {
  target: Target['name'];
  /** Closed loop (saturation), open loop at a fixed rate, or closed loop on an origin that works. */
  kind: 'saturation' | 'rate' | 'work';
  result: Omit<LoadResult, 'latencies'> & { p50: number; p99: number };
  /** CPU time of the host process per request (µs), for the targets that live in it. */
  hostCpuPerRequest?: number;
  sse: number[];
  mem?: MemSample[];
}

async function loadRound(t: Target, host: Host | undefined, ms: number, rate?: number, urlPath = '/json', cpuHost?: Host): Promise<LoadRound> {
  if (host) await host.rpc({ cmd: 'sampleStart', intervalMs: 100 });
  const cpu0 = cpuHost ? await cpuHost.rpc<number>({ cmd: 'cpu' }) : 0;
  const sseAgent = new Agent({ keepAlive: true, maxSockets: 1 });
  const sse: number[] = [];
  let loading = true;
  const probe = (async () => {
    await sleep(200);
    while (loading) {
      try {
        sse.push(await sseFirstEvent(sseAgent, t.port, '/sse', t.headers));
      } catch {
        // counted as missing
      }
      await sleep(30);
    }
  })();
  const o = { port: t.port, path: urlPath, headers: t.headers, connections: CFG.connections, durationMs: ms };
  const r = rate === undefined ? await loadTest(o) : await rateTest({ ...o, rate });
  loading = false;
  await probe;
  sseAgent.destroy();
  const cpu1 = cpuHost ? await cpuHost.rpc<number>({ cmd: 'cpu' }) : 0;
  const mem = host ? await host.rpc<MemSample[]>({ cmd: 'sampleStop' }) : undefined;
  const { latencies, ...rest } = r;
  const cpu = cpuHost ? { hostCpuPerRequest: (cpu1 - cpu0) / Math.max(1, r.requests) } : {};
  return { target: t.name, kind: rate !== undefined ? 'rate' : urlPath === '/json' ? 'saturation' : 'work', result: { ...rest, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99) }, sse, ...cpu, ...(mem ? { mem } : {}) };
}

// ---------------------------------------------------------------------------------------------
// 4. MCP round trip

type McpKind = 'ours-tool' | 'ours-resource' | 'bare-tool';

async function mcpRoundTrip(ours: RawMcpClient, bare: RawMcpClient): Promise<Record<McpKind, { p50: number[]; p99: number[]; all: number[] }>> {
  const calls: Record<McpKind, () => Promise<string>> = {
    'ours-tool': () => ours.call('tools/call', { name: 'get_tunnel_status', arguments: {} }),
    'ours-resource': () => ours.call('resources/read', { uri: 'tunnel://status' }),
    'bare-tool': () => bare.call('tools/call', { name: 'ping', arguments: {} }),
  };
  const kinds = Object.keys(calls) as McpKind[];
  const out = Object.fromEntries(kinds.map((k) => [k, { p50: [] as number[], p99: [] as number[], all: [] as number[] }])) as Record<McpKind, { p50: number[]; p99: number[]; all: number[] }>;
  for (const k of kinds) for (let i = 0; i < CFG.mcpWarmup; i++) await calls[k]();
  for (let r = 0; r < CFG.mcpRounds; r++) {
    // Rotate the order so that drift in the machine's load hits every kind alike.
    const order = kinds.map((_, i) => kinds[(i + r) % kinds.length] as McpKind); // the index is in range
    for (const k of order) {
      const lat: number[] = [];
      for (let i = 0; i < CFG.mcpCallsPerRound; i++) {
        const t = performance.now();
        await calls[k]();
        lat.push(performance.now() - t);
      }
      out[k].p50.push(quantile(lat, 0.5));
      out[k].p99.push(quantile(lat, 0.99));
      out[k].all.push(...lat);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

function diffs(cs: Cycle[], a: keyof Cycle, b: keyof Cycle): number[] {
  return cs.map((c) => (c[b] ?? NaN) - (c[a] ?? NaN)).filter((x) => Number.isFinite(x));
}

async function main(): Promise<void> {
  const t0 = performance.now();
  markLoad('start');
  if (PROFILE) mkdirSync(PROFILE_DIR, { recursive: true });
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'mcpt-bench-'));
  const rows: Row[] = [];
  const raw: Record<string, unknown> = {};
  const log = (s: string) => process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(1)}s] ${s}\n`);
  let origin: { port: number; child: ChildProcess } | undefined;
  let host: Host | undefined;

  try {
    log('building (node esbuild.mjs --production) and the harness…');
    const b = await build(tmp);
    raw['build'] = { ms: b.buildMs, extensionBytes: b.extensionBytes, mcpBytes: b.mcpBytes, cliBytes: b.cliBytes };
    markLoad('built');

    log('packaging the VSIX (vsce package --no-dependencies)…');
    let vsix: { bytes: number; ms: number; devBuild: boolean } | undefined;
    let vsixError: string | undefined;
    try {
      vsix = await packageVsix(tmp);
    } catch (err) {
      vsixError = (err as Error).message.split('\n')[0];
    }
    markLoad('vsix');

    // 7 first, in a process of its own: the stdio bridge beside supergateway, mcp-proxy, direct stdio
    log('stdio bridges (test/bench/stdioBench.ts, its own process)…');
    let stdioRows: Row[];
    try {
      const stdio = JSON.parse(await runSection(path.join(__dirname, 'stdioBench.ts'))) as { rows: Row[]; raw: unknown };
      stdioRows = stdio.rows;
      raw['stdio'] = stdio.raw;
    } catch (err) {
      stdioRows = [{ id: '7', figure: 'stdio bridges', unit: '', note: `not measured: ${(err as Error).message.split('\n')[0]}` }];
    }
    markLoad('stdio');

    // 3. Activation -----------------------------------------------------------------------------
    log(`activation × ${CFG.activationRuns} (fresh processes)…`);
    const acts = await activation(b, tmp);
    markLoad('activation');
    const lastAct = acts[acts.length - 1];
    const forbidden = [...new Set(acts.flatMap((a) => a.forbidden))];
    const missingApi = [...new Set(acts.flatMap((a) => a.missingApi))];
    const loadedKB = (lastAct?.loadedBytes ?? NaN) / KB;
    const wholeKB = (b.extensionBytes + b.mcpBytes) / KB;
    raw['activation'] = { runs: acts.map(({ modules: _m, ...r }) => r), modules: lastAct?.modules, forbidden, missingApi };

    // origin for the tunnel target and the load tests
    origin = await startOrigin(b);

    // 1 + 2. Cycles -------------------------------------------------------------------------------
    log(`start/stop × ${CFG.cycles} against the fake cloudflared…`);
    const work = path.join(tmp, 'work');
    mkdirSync(work, { recursive: true });
    const { cycles: cs, cold } = await cycles(work, origin.port);
    markLoad('cycles');
    raw['cycles'] = { cold, cycles: cs };

    log('QUIC blocked: a first start, the next one (HTTP/2 remembered), and a plain HTTP/2 start…');
    const quic = await quicBlockedStarts(work, origin.port);
    raw['quicBlocked'] = quic;

    const urlLatency = diffs(cs, 'urlPrintedAt', 'urlEventAt');
    const startTotal = diffs(cs, 'startAt', 'activeAt');
    const preSpawn = diffs(cs, 'startAt', 'spawnAt');
    const spawnCall = diffs(cs, 'spawnAt', 'spawnedAt');
    const childFirstByte = diffs(cs, 'spawnAt', 'firstByteAt');
    const childToRegistered = diffs(cs, 'firstByteAt', 'registeredAt');
    const postRegistered = diffs(cs, 'registeredAt', 'activeAt');
    const oursStart = cs.map((c) => (c.spawnAt ?? NaN) - c.startAt + ((c.activeAt ?? NaN) - (c.registeredAt ?? NaN))).filter(Number.isFinite);
    const stopTotal = diffs(cs, 'stopAt', 'stoppedAt');
    const childStop = diffs(cs, 'killAt', 'exitAt');
    const oursStop = cs.map((c) => (c.killAt ?? NaN) - (c.stopAt ?? NaN) + ((c.stoppedAt ?? NaN) - (c.exitAt ?? NaN))).filter(Number.isFinite);

    // 6 + 5 + 4. Host ----------------------------------------------------------------------------
    log('host process: activate, baseline memory…');
    const hostHome = path.join(tmp, 'home-host');
    mkdirSync(hostHome, { recursive: true });
    host = await Host.start(b, { ...process.env, HOME: hostHome, FAKE_CLOUDFLARED_STATE_DIR: work });
    await host.rpc({
      cmd: 'activate',
      extensionPath: path.join(b.dist, 'extension.js'),
      storageDir: path.join(tmp, 'host-storage'),
      settings: { 'mcpTunnel.cloudflaredPath': FAKE_CLOUDFLARED, 'mcpTunnel.mcp.confirmStart': false, 'mcpTunnel.stopGracePeriod': 1 },
    });
    await sleep(1500); // the extension reaps orphans 1 s after activation
    const memBase = await memSamples(host, 6, 200);

    let gateInfo: { port: number; secret: string } | undefined;
    let gateError: string | undefined;
    try {
      gateInfo = await host.rpc<{ port: number; secret: string }>({ cmd: 'startGate', originPort: origin.port });
      const ok = await loadTest({ port: gateInfo.port, path: '/json', headers: { authorization: `Bearer ${gateInfo.secret}` }, connections: 1, durationMs: 50 });
      const refused = await loadTest({ port: gateInfo.port, path: '/json', connections: 1, durationMs: 50 });
      if (ok.requests === 0 || ok.errors > 0 || ok.non2xx > 0) throw new Error(`the gate did not pass an authorized request (${ok.non2xx} non-2xx, ${ok.errors} errors)`);
      if (refused.requests > 0) throw new Error('the gate passed a request without the secret');
    } catch (err) {
      gateError = (err as Error).message;
      gateInfo = undefined;
    }

    log(`live tunnel (fake cloudflared -> ${gateInfo ? 'gate' : 'origin'}), idle memory…`);
    const tunnelTo = gateInfo ? gateInfo.port : origin.port;
    const live = await host.rpc<{ status: string; pid?: number }>({ cmd: 'startTunnel', host: '127.0.0.1', port: tunnelTo, path: '/mcp' });
    if (live.status !== 'active') throw new Error(`host tunnel: ${live.status}`);
    await sleep(2500); // a metrics poll or two
    const memIdle = await memSamples(host, 6, 300);
    markLoad('memory-idle');

    const direct: Target = { name: 'direct', port: origin.port, headers: {} };
    const rounds: LoadRound[] = [];
    const concRounds: ConcRound[] = [];
    let sseIdle: { direct: number[]; gate: number[] } | undefined;
    let rate: number | undefined;
    if (gateInfo) {
      const gate: Target = { name: 'gate', port: gateInfo.port, headers: { authorization: `Bearer ${gateInfo.secret}` } };
      const proxyPort = (await host.rpc<{ port: number }>({ cmd: 'startBareProxy', originPort: origin.port })).port;
      const proxy: Target = { name: 'proxy', port: proxyPort, headers: {} };
      // The same gate code with 100 shares (routes) on it, the request for the last one added.
      const g100 = await host.rpc<{ port: number; secret: string }>({ cmd: 'startGate', originPort: origin.port, routes: 100 });
      const gate100: Target = { name: 'gate100', port: g100.port, headers: { authorization: `Bearer ${g100.secret}` } };
      // The same gate with the inspector's recorder tapping every exchange.
      const gi = await host.rpc<{ port: number; secret: string }>({ cmd: 'startGate', originPort: origin.port, inspect: true });
      const inspect: Target = { name: 'inspect', port: gi.port, headers: { authorization: `Bearer ${gi.secret}` } };
      log(`gate vs direct (and a bare Node proxy, and a gate with 100 shares) at saturation: ${CFG.loadRounds} rounds × ${CFG.loadMs / 1000} s per target, ${CFG.connections} connections…`);
      for (const t of [direct, gate, proxy, gate100, inspect]) await loadRound(t, undefined, CFG.warmupMs);
      for (let r = 0; r < CFG.loadRounds; r++) {
        const order = [direct, gate, proxy, gate100, inspect].map((_, i, a) => a[(i + r) % a.length]);
        for (const t of order) if (t) rounds.push(await loadRound(t, t.name === 'gate' ? host : undefined, CFG.loadMs, undefined, '/json', t.name === 'direct' ? undefined : host));
      }
      markLoad('load-saturation');
      // The issue's figures: closed loops at concurrency 1 and 16 (no SSE probe), the gate beside
      // the origin straight, a raw TCP pipe in the same host process and the gate with 100 shares.
      const pipePort = (await host.rpc<{ port: number }>({ cmd: 'startPipe', originPort: origin.port })).port;
      const pipe: Target = { name: 'pipe', port: pipePort, headers: {} };
      log(`gate vs direct vs a raw TCP pipe at concurrency 1 and 16: ${CFG.loadRounds} rounds × ${CFG.concMs / 1000} s per target…`);
      for (const conc of [1, 16]) {
        const ts = [direct, gate, pipe, gate100];
        for (const t of ts) await loadTest({ port: t.port, path: '/json', headers: t.headers, connections: conc, durationMs: CFG.warmupMs / 2 });
        for (let r = 0; r < CFG.loadRounds; r++) {
          for (const t of ts.map((_, i, a) => a[(i + r) % a.length])) {
            if (!t) continue;
            const cpu0 = t.name === 'direct' ? 0 : await host.rpc<number>({ cmd: 'cpu' });
            const res = await loadTest({ port: t.port, path: '/json', headers: t.headers, connections: conc, durationMs: CFG.concMs });
            const cpu1 = t.name === 'direct' ? 0 : await host.rpc<number>({ cmd: 'cpu' });
            concRounds.push({ target: t.name, conc, rps: res.rps, p50: quantile(res.latencies, 0.5), bad: res.errors + res.non2xx, ...(t.name === 'direct' ? {} : { cpu: (cpu1 - cpu0) / Math.max(1, res.requests) }) });
          }
        }
      }
      raw['concRounds'] = concRounds;
      markLoad('load-concurrency');
      rate = Math.max(100, Math.round((median(rounds.filter((r) => r.target === 'gate').map((r) => r.result.rps)) * CFG.rateFraction) / 100) * 100);
      // MCP calls at concurrency 16 (the issue's measure): POST tools/call through the gate alone,
      // with the inspector's recorder, and with a tool policy (each body read, judged and written
      // anew, each JSON answer parsed and re-written), rounds rotated.
      const gp = await host.rpc<{ port: number; secret: string }>({ cmd: 'startGate', originPort: origin.port, tools: ['echo'] });
      const callBody = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { message: 'x'.repeat(120) } } });
      log(`MCP calls at c16: POST tools/call through the gate, with the inspector, with a tool policy: ${CFG.loadRounds + 2} rounds…`);
      const postRounds: Array<{ target: string; rps: number; non2xx: number }> = [];
      const postTargets = { gate: { port: gateInfo.port, secret: gateInfo.secret }, inspect: gi, policy: gp } as const;
      const postNames = Object.keys(postTargets) as Array<keyof typeof postTargets>;
      for (const name of postNames) await loadTest({ port: postTargets[name].port, path: `/${postTargets[name].secret}/json`, body: callBody, connections: 16, durationMs: CFG.warmupMs });
      for (let r = 0; r < CFG.loadRounds + 2; r++) {
        for (const name of postNames.map((_, i, a) => a[(i + r) % a.length] as (typeof a)[number])) { // in range
          const t = postTargets[name];
          const res = await loadTest({ port: t.port, path: `/${t.secret}/json`, body: callBody, connections: 16, durationMs: CFG.loadMs });
          postRounds.push({ target: name, rps: res.rps, non2xx: res.non2xx + res.errors });
        }
      }
      raw['policyRounds'] = postRounds;
      log('inspector: 10 000 MCP calls recorded, the heap they add…');
      raw['inspectorFill'] = await host.rpc<{ recorded: number; heapDelta: number }>({ cmd: 'fillRecorder', port: gi.port, secret: gi.secret, calls: 10_000 });
      log(`gate vs direct at a fixed ${rate} req/s over ${CFG.connections} connections: ${CFG.loadRounds} rounds…`);
      for (let r = 0; r < CFG.loadRounds; r++) {
        for (const t of r % 2 === 0 ? [gate, proxy, direct] : [direct, proxy, gate]) rounds.push(await loadRound(t, t.name === 'gate' ? host : undefined, CFG.loadMs, rate, '/json', t.name === 'direct' ? undefined : host));
      }
      markLoad('load-rate');
      log(`gate vs direct, origin spending ${CFG.workMs} ms of CPU per request: ${CFG.workRounds} rounds…`);
      for (let r = 0; r < CFG.workRounds; r++) {
        for (const t of r % 2 === 0 ? [direct, gate] : [gate, direct]) rounds.push(await loadRound(t, undefined, CFG.loadMs, undefined, `/work?ms=${CFG.workMs}`));
      }
      log('SSE first event, idle…');
      const agents = { direct: new Agent({ keepAlive: true, maxSockets: 1 }), gate: new Agent({ keepAlive: true, maxSockets: 1 }) };
      sseIdle = { direct: [], gate: [] };
      for (let i = 0; i < CFG.sseIdleSamples + 4; i++) {
        for (const [name, t] of i % 2 ? ([['gate', gate], ['direct', direct]] as const) : ([['direct', direct], ['gate', gate]] as const)) {
          const v = await sseFirstEvent(agents[name], t.port, '/sse', t.headers);
          if (i >= 4) sseIdle[name].push(v);
        }
      }
      agents.direct.destroy();
      agents.gate.destroy();
    } else {
      log(`gate not measured (${gateError}); memory under load through the tunnel's origin only…`);
      await host.rpc({ cmd: 'sampleStart', intervalMs: 100 });
      const r = await loadRound(direct, undefined, CFG.loadMs);
      const mem = await host.rpc<MemSample[]>({ cmd: 'sampleStop' });
      rounds.push({ ...r, mem });
    }
    raw['load'] = { rounds, rate, sseIdle, gateError };

    log('MCP round trip: the extension host (dist/mcp.js) vs. a bare SDK server…');
    const memBeforeMcp = await memSamples(host, 3, 200);
    const ours = await host.rpc<{ port: number; token: string }>({ cmd: 'startMcpHost' });
    const memMcp = await memSamples(host, 3, 200);
    const bare = await host.rpc<{ port: number }>({ cmd: 'startBare', bareMcpPath: b.harness.bareMcp });
    const oursClient = new RawMcpClient(ours.port, ours.token);
    const bareClient = new RawMcpClient(bare.port);
    await oursClient.initialize();
    await bareClient.initialize();
    const rt = await mcpRoundTrip(oursClient, bareClient);
    oursClient.close();
    bareClient.close();
    markLoad('mcp');
    raw['mcp'] = Object.fromEntries(Object.entries(rt).map(([k, v]) => [k, { p50: v.p50, p99: v.p99 }]));
    raw['memory'] = { baseline: memBase, idle: memIdle, beforeMcpHost: memBeforeMcp, withMcpHost: memMcp };

    const shut = await host.rpc<{ missingApi: string[] }>({ cmd: 'shutdown' });
    host = undefined;
    missingApi.push(...shut.missingApi.filter((m) => !missingApi.includes(m)));

    // ---- rows ----------------------------------------------------------------------------------
    const S = summarize;
    const ms = 'ms';
    rows.push({
      id: '1',
      figure: 'URL latency (URL line written -> state event)',
      unit: ms,
      value: S(urlLatency),
      reference: { label: 'limit', value: 0 },
      target: '≤ 5 ms',
      met: median(urlLatency) <= 5,
    });
    rows.push({ id: '2a', figure: 'start -> active, total', unit: ms, value: S(startTotal), note: `fake cloudflared with its default pacing (URL after 50 ms, registration 150 ms later); cold first start (runs \`cloudflared --version\`): ${fmt((cold.activeAt ?? NaN) - cold.startAt, ms)}` });
    rows.push({ id: '2b', figure: '  ours: start() -> spawn (find binary, config file)', unit: ms, value: S(preSpawn) });
    rows.push({ id: '2c', figure: '  ours: registered line -> active event', unit: ms, value: S(postRegistered), note: 'the fake stamps its time just after its write to the pipe returns, so on a busy machine we can handle the line before it stamps: values below 0' });
    rows.push({ id: '2d', figure: '  ours: overhead (2b + 2c)', unit: ms, value: S(oursStart), reference: { label: 'child spawn->1st byte', value: median(childFirstByte) }, ratio: median(oursStart) / median(childFirstByte), ratioKind: 'ratio' });
    rows.push({ id: '2e', figure: '  child: spawn() call (fork/exec, blocks)', unit: ms, value: S(spawnCall) });
    rows.push({ id: '2f', figure: '  child: spawn -> first byte', unit: ms, value: S(childFirstByte) });
    rows.push({ id: '2g', figure: '  child: first byte -> registered line', unit: ms, value: S(childToRegistered) });
    rows.push({ id: '2h', figure: 'stop -> exited, total', unit: ms, value: S(stopTotal) });
    rows.push({ id: '2i', figure: '  ours: stop() -> SIGTERM + exit -> stopped event', unit: ms, value: S(oursStop), reference: { label: 'child SIGTERM->exit', value: median(childStop) }, ratio: median(oursStop) / median(childStop), ratioKind: 'ratio' });
    rows.push({ id: '2j', figure: '  child: SIGTERM -> exit', unit: ms, value: S(childStop) });
    const addShare = diffs(cs, 'addShareAt', 'addedShareAt');
    const q1 = median(quic.first);
    const q2 = median(quic.second);
    const qh = median(quic.http2);
    rows.push({ id: '2l', figure: 'QUIC blocked (UDP 7844): first start -> failed', unit: ms, value: S(quic.first), note: "the fake's quic-blocked scenario (each QUIC dial fails after FAKE_CLOUDFLARED_RETRY_MS=300, cloudflared's 5 retries, then exit 1): the start fails and the machine remembers that QUIC fails here" });
    rows.push({ id: '2m', figure: '  the next start (HTTP/2 remembered) -> active', unit: ms, value: S(quic.second), reference: { label: 'first start', value: q1 }, ratio: q2 / q1, ratioKind: 'ratio', target: '≤ 0.5× the first, or ≤ an HTTP/2 start + 50 ms', met: q2 <= 0.5 * q1 || q2 <= qh + 50, note: `an HTTP/2 start set explicitly takes ${fmt(qh, ms)}` });
    rows.push({ id: '2k', figure: 'add a share to a live tunnel -> usable', unit: ms, value: S(addShare), target: '≤ 20 ms', met: median(addShare) <= 20, note: 'start() of a second target while the tunnel is active: a gate route and a probe of its port; nothing is spawned (checked: same PID)' });

    const warm = acts.filter((a) => a.mode === 'warm');
    const coldActs = acts.filter((a) => a.mode === 'cold');
    const actTotal = warm.map((a) => a.totalMs);
    rows.push({
      id: '3a',
      figure: 'activation: require(dist/extension.js) + activate()',
      unit: ms,
      value: S(actTotal),
      target: '≤ 15 ms',
      met: median(actTotal) <= 15,
      note: "fresh node process per run, stub vscode, Node's builtins already loaded as in VS Code's extension host (see 3d for a bare process)",
    });
    rows.push({ id: '3b', figure: '  of which activate() call', unit: ms, value: S(warm.map((a) => a.activateMs)), target: '≤ 15 ms', met: median(warm.map((a) => a.activateMs)) <= 15 });
    rows.push({ id: '3c', figure: '  of which require() (compile + module init)', unit: ms, value: S(warm.map((a) => a.requireMs)) });
    rows.push({ id: '3d', figure: '  same, builtins not yet loaded (bare node)', unit: ms, value: S(coldActs.map((a) => a.totalMs)), note: 'first load of node:child_process, crypto, http, … counted too; VS Code has them loaded before any extension activates' });
    rows.push({
      id: '3e',
      figure: 'code loaded at activation',
      unit: 'KB',
      value: S([loadedKB]),
      reference: { label: 'ext+mcp bundle', value: wholeKB },
      ratio: loadedKB / wholeKB,
      ratioKind: 'ratio',
      target: '≤ 150 KB',
      met: loadedKB <= 150,
      note: `modules in require.cache after activate(): ${(lastAct?.modules ?? []).map((m) => `${m.file} (${fmt(m.bytes / KB)} KB)`).join(', ')}; MCP SDK / zod / dist/mcp.js loaded: ${forbidden.length ? `YES: ${forbidden.join(', ')}` : 'no'}`,
    });
    rows.push({ id: '3f', figure: 'MCP SDK, zod, dist/mcp.js off the activation path', unit: '', value: S([forbidden.length]), target: '0 loaded', met: forbidden.length === 0 });
    rows.push(
      vsix
        ? { id: '3g', figure: 'VSIX size', unit: 'KB', value: S([vsix.bytes / KB]), target: '≤ 400 KB', met: vsix.bytes / KB <= 400, ...(vsix.devBuild ? { note: 'another process rebuilt dist/ in development mode while vsce ran: this size may include an unminified build' } : {}) }
        : { id: '3g', figure: 'VSIX size', unit: 'KB', note: `not measured: ${vsixError}` },
    );

    const mcpRow = (id: string, label: string, kind: McpKind, q: 'p50' | 'p99'): Row => {
      const v = S(rt[kind][q]);
      const ref = median(rt['bare-tool'][q]);
      return { id, figure: label, unit: ms, value: v, reference: { label: `bare SDK ${q}`, value: ref }, ratio: v.median / ref, ratioKind: 'ratio', target: '≤ 1.5×', met: v.median / ref <= 1.5 };
    };
    rows.push(mcpRow('4a', 'MCP tools/call get_tunnel_status p50', 'ours-tool', 'p50'));
    rows.push(mcpRow('4b', 'MCP tools/call get_tunnel_status p99', 'ours-tool', 'p99'));
    rows.push(mcpRow('4c', 'MCP resources/read tunnel://status p50', 'ours-resource', 'p50'));
    rows.push(mcpRow('4d', 'MCP resources/read tunnel://status p99', 'ours-resource', 'p99'));
    rows.push({ id: '4e', figure: '  bare SDK server tools/call (reference) p50', unit: ms, value: S(rt['bare-tool'].p50) });

    const of = (t: Target['name']) => rounds.filter((r) => r.target === t);
    if (gateInfo && sseIdle) {
      const sat = (t: Target['name']) => of(t).filter((r) => r.kind === 'saturation');
      const fix = (t: Target['name']) => of(t).filter((r) => r.kind === 'rate');
      const rps = (rs: LoadRound[]) => rs.map((r) => r.result.rps);
      const p = (rs: LoadRound[], q: 'p50' | 'p99') => rs.map((r) => r.result[q]);
      const sse = (rs: LoadRound[]) => rs.map((r) => median(r.sse));
      const errs = rounds.reduce((n, r) => n + r.result.errors + r.result.non2xx, 0);
      const cmp = (id: string, figure: string, unit: string, g: number[], d: number[], kind: 'ratio' | 'diff', target?: { text: string; ok: (x: number) => boolean }, note?: string): Row => {
        const x = kind === 'ratio' ? median(g) / median(d) : median(g) - median(d);
        return { id, figure, unit, value: S(g), reference: { label: 'direct', value: median(d) }, ratio: x, ratioKind: kind, ...(target ? { target: target.text, met: target.ok(x) } : {}), ...(note ? { note } : {}) };
      };
      const c = CFG.connections;
      rows.push(cmp('5a', `gate throughput, saturated (${c} conns)`, 'req/s', rps(sat('gate')), rps(sat('direct')), 'ratio', { text: '≥ 0.9×', ok: (x) => x >= 0.9 }, `closed loop: ${c} keep-alive connections each sending its next GET when the last ended; ${CFG.loadRounds} rounds × ${CFG.loadMs / 1000} s per target, alternating; load generator, gate and origin are 3 processes sharing ${os.cpus().length} cores; errors + non-2xx over all rounds: ${errs}`));
      const sp = rps(sat('proxy'));
      rows.push({ id: '5b', figure: '  gate vs a bare Node reverse proxy, saturated', unit: 'req/s', value: S(rps(sat('gate'))), reference: { label: 'bare proxy', value: median(sp) }, ratio: median(rps(sat('gate'))) / median(sp), ratioKind: 'ratio', note: "the bare proxy (15 lines in the same host process: http.request + pipe, no checks) is what any Node proxy hop costs; gate / bare proxy isolates the gate's own work" });
      const cpuOf = (t: Target['name']) => fix(t).map((r) => r.hostCpuPerRequest ?? NaN);
      const g1 = median(rps(sat('gate')));
      const g100 = median(rps(sat('gate100')));
      rows.push({ id: '5b″', figure: '  gate with 100 shares vs 1 share, saturated', unit: 'req/s', value: S(rps(sat('gate100'))), reference: { label: '1 share', value: g1 }, ratio: g100 / g1, ratioKind: 'ratio', target: '≥ 0.95× (cost ≤ 1.05×)', met: g100 / g1 >= 1 / 1.05, note: 'the same gate code with 100 routes, the request for the last one added: one SHA-256 and one Map lookup per request, whatever the number of shares' });
      const gi1 = median(rps(sat('inspect')));
      rows.push({ id: '5b‴', figure: '  gate with the inspector vs without, GET, saturated (100 conns)', unit: 'req/s', value: S(rps(sat('inspect'))), reference: { label: 'no inspector', value: g1 }, ratio: gi1 / g1, ratioKind: 'ratio', note: 'the same gate with the recorder tapping each exchange (a ring of 10 000); GET with a small JSON answer: no request body. For information; the target is 5b‴′' });
      const pr = (raw['policyRounds'] as Array<{ target: string; rps: number; non2xx: number }> | undefined) ?? [];
      const postRps = (name: string): number[] => pr.filter((x) => x.target === name).map((x) => x.rps);
      const [pg, pi, pp] = [postRps('gate'), postRps('inspect'), postRps('policy')];
      if (pg.length && pp.length && pi.length) {
        const bad = pr.reduce((n, x) => n + x.non2xx, 0);
        const badNote = bad ? `; ${bad} non-2xx/errors` : '';
        rows.push({ id: '5b‴′', figure: '  gate with the inspector vs without, MCP tools/call, c16', unit: 'req/s', value: S(pi), reference: { label: 'no inspector', value: median(pg) }, ratio: median(pi) / median(pg), ratioKind: 'ratio', target: '≥ 0.9×', met: median(pi) / median(pg) >= 0.9 && bad === 0, note: `POST tools/call (~200 B) and its JSON answer, 16 connections: the recorder keeps both bodies (redacted), parses them as JSON-RPC, a ring of 10 000${badNote}` });
        rows.push({ id: '5b⁵', figure: '  gate with a tool policy vs without, MCP tools/call, c16', unit: 'req/s', value: S(pp), reference: { label: 'no policy', value: median(pg) }, ratio: median(pp) / median(pg), ratioKind: 'ratio', target: '≥ 0.8× (ours)', met: median(pp) / median(pg) >= 0.8 && bad === 0, note: `an allowlist of one tool: each body read whole, parsed, judged and written anew, each JSON answer parsed and re-written${badNote}` });
      }
      const fill = raw['inspectorFill'] as { recorded: number; heapDelta: number } | undefined;
      if (fill) rows.push({ id: '5b⁗', figure: `  heap added by ${fill.recorded} recorded MCP calls`, unit: 'MB', value: S([fill.heapDelta / MB]), target: '≤ 10 MB', met: fill.heapDelta / MB <= 10, note: 'tools/call requests of ~200 B and their JSON answers, bodies kept, through the gate with the inspector; heapUsed after gc, before and after' });
      rows.push({ id: '5b′', figure: `  host CPU per request at ${rate} req/s: gate`, unit: 'µs', value: S(cpuOf('gate')), reference: { label: 'bare proxy', value: median(cpuOf('proxy')) }, ratio: median(cpuOf('gate')) / median(cpuOf('proxy')), ratioKind: 'ratio', note: "process.cpuUsage() of the host process over each fixed-rate round, divided by the requests: unlike throughput, hardly moved by the other processes' load" });
      const cr = (raw['concRounds'] as ConcRound[] | undefined) ?? [];
      for (const conc of [1, 16]) {
        const at = (t: Target['name']) => cr.filter((x) => x.target === t && x.conc === conc);
        const [gr, dr, pr1, hr] = [at('gate'), at('direct'), at('pipe'), at('gate100')];
        if (!gr.length || !dr.length) continue;
        const v = (rs: ConcRound[], k: 'rps' | 'p50' | 'cpu') => rs.map((x) => x[k] ?? NaN);
        const bad = [...gr, ...dr, ...pr1, ...hr].reduce((n, x) => n + x.bad, 0);
        const gRatio = median(v(gr, 'rps')) / median(v(dr, 'rps'));
        rows.push({ id: `5l${conc}`, figure: `gate throughput, concurrency ${conc}`, unit: 'req/s', value: S(v(gr, 'rps')), reference: { label: 'direct', value: median(v(dr, 'rps')) }, ratio: gRatio, ratioKind: 'ratio', target: '≥ 0.85× (issue 12)', met: gRatio >= 0.85 && bad === 0, note: `closed loop, ${conc} keep-alive connection(s), ${CFG.loadRounds} rounds × ${CFG.concMs / 1000} s per target, rotated; a raw TCP pipe in the same host process: ${fmt(median(v(pr1, 'rps')) / median(v(dr, 'rps')), '×')} of direct (what any hop costs here)${bad ? `; ${bad} errors/non-2xx` : ''}` });
        if (conc === 1) {
          const added = median(v(gr, 'p50')) - median(v(dr, 'p50'));
          rows.push({ id: '5l1′', figure: '  gate latency p50 added, concurrency 1', unit: ms, value: S(v(gr, 'p50')), reference: { label: 'direct', value: median(v(dr, 'p50')) }, ratio: added, ratioKind: 'diff', target: '≤ +0.3 ms (issue 12)', met: added <= 0.3, note: `the raw TCP pipe adds ${fmt(median(v(pr1, 'p50')) - median(v(dr, 'p50')), ms)}` });
        }
        const cpuRatio = median(v(gr, 'cpu')) / median(v(pr1, 'cpu'));
        rows.push({ id: `5l${conc}″`, figure: `  host CPU per request, concurrency ${conc}: gate`, unit: 'µs', value: S(v(gr, 'cpu')), reference: { label: 'raw TCP pipe', value: median(v(pr1, 'cpu')) }, ratio: cpuRatio, ratioKind: 'ratio', note: "process.cpuUsage() of the host process over each round / requests: steadier than req/s on a loaded machine. The pipe is the floor of any hop (two reads, two writes per exchange)" });
        const hRatio = median(v(hr, 'rps')) / median(v(gr, 'rps'));
        rows.push({ id: `5l${conc}‴`, figure: `  gate with 100 shares vs 1, concurrency ${conc}`, unit: 'req/s', value: S(v(hr, 'rps')), reference: { label: '1 share', value: median(v(gr, 'rps')) }, ratio: hRatio, ratioKind: 'ratio', target: '≥ 0.95× (cost ≤ 1.05×)', met: hRatio >= 1 / 1.05, note: `host CPU per request with 100 shares: ${fmt(median(v(hr, 'cpu')), 'µs')} (1 share: ${fmt(median(v(gr, 'cpu')), 'µs')})` });
      }
      rows.push({ id: '5c', figure: '  bare Node reverse proxy, saturated', unit: 'req/s', value: S(sp), reference: { label: 'direct', value: median(rps(sat('direct'))) }, ratio: median(sp) / median(rps(sat('direct'))), ratioKind: 'ratio' });
      const work = (t: Target['name']) => of(t).filter((r) => r.kind === 'work');
      rows.push(cmp('5d', `gate throughput, origin with ${CFG.workMs} ms CPU/request`, 'req/s', rps(work('gate')), rps(work('direct')), 'ratio', undefined, `context for 5a, no target of its own: the same closed loop against an origin that spends ${CFG.workMs} ms of CPU per request (a server doing some work): the proxy hop is then a small part of each request`));
      rows.push(cmp('5e', `gate latency p50 at ${rate} req/s (${c} conns)`, ms, p(fix('gate'), 'p50'), p(fix('direct'), 'p50'), 'diff', undefined, `open loop at ${Math.round(CFG.rateFraction * 100)}% of the gate's saturation throughput, spread round-robin over ${c} open keep-alive connections`));
      rows.push(cmp('5f', `gate latency p99 at ${rate} req/s (${c} conns)`, ms, p(fix('gate'), 'p99'), p(fix('direct'), 'p99'), 'diff', { text: '≤ +1 ms', ok: (x) => x <= 1 }));
      rows.push({ id: '5f′', figure: `  bare Node proxy p99 at ${rate} req/s`, unit: ms, value: S(p(fix('proxy'), 'p99')), reference: { label: 'direct', value: median(p(fix('direct'), 'p99')) }, ratio: median(p(fix('proxy'), 'p99')) - median(p(fix('direct'), 'p99')), ratioKind: 'diff', note: 'what the extra hop (one more process to schedule on the shared cores) costs by itself' });
      rows.push(cmp('5g', `SSE first event at ${rate} req/s (${c} conns)`, ms, sse(fix('gate')), sse(fix('direct')), 'diff', { text: '≤ +5 ms', ok: (x) => x <= 5 }, 'one more connection probing GET /sse (headers at once, the first event on the next tick, the second 20 ms later) during the load'));
      rows.push(cmp('5h', 'SSE first event, idle', ms, sseIdle.gate, sseIdle.direct, 'diff', { text: '≤ +5 ms', ok: (x) => x <= 5 }));
      rows.push(cmp('5i', `gate latency p50, saturated (${c} conns)`, ms, p(sat('gate'), 'p50'), p(sat('direct'), 'p50'), 'diff', undefined, "queueing behind the closed loop: Little's law makes it connections / throughput"));
      rows.push(cmp('5j', `gate latency p99, saturated (${c} conns)`, ms, p(sat('gate'), 'p99'), p(sat('direct'), 'p99'), 'diff'));
      rows.push(cmp('5k', `SSE first event, saturated (${c} conns)`, ms, sse(sat('gate')), sse(sat('direct')), 'diff'));
    } else {
      rows.push({ id: '5', figure: 'access gate overhead', unit: '', note: `not yet measured: ${gateError}` });
    }

    const rss = (xs: MemSample[]) => xs.map((m) => m.rss / MB);
    const heap = (xs: MemSample[]) => xs.map((m) => m.heapUsed / MB);
    const baseRss = median(rss(memBase));
    rows.push({ id: '6a', figure: 'host RSS, activated, no tunnel', unit: 'MB', value: S(rss(memBase)) });
    rows.push({ id: '6b', figure: `host RSS, live tunnel${gateInfo ? ' + gate' : ''}, idle`, unit: 'MB', value: S(rss(memIdle)), reference: { label: 'no tunnel', value: baseRss }, ratio: median(rss(memIdle)) - baseRss, ratioKind: 'diff', target: '≤ +20 MB', met: median(rss(memIdle)) - baseRss <= 20 });
    const satMem = rounds.filter((r) => r.kind === 'saturation').flatMap((r) => r.mem ?? []);
    const loadMem = satMem.length ? satMem : rounds.flatMap((r) => r.mem ?? []);
    const rateMem = rounds.filter((r) => r.kind === 'rate').flatMap((r) => r.mem ?? []);
    rows.push({ id: '6c', figure: `host RSS under load, saturated (${gateInfo ? 'through the gate' : 'no gate: tunnel only'})`, unit: 'MB', value: S(rss(loadMem)), reference: { label: 'no tunnel', value: baseRss }, ratio: median(rss(loadMem)) - baseRss, ratioKind: 'diff', note: `peak ${fmt(Math.max(...rss(loadMem)), 'MB')}; sampled every 100 ms during the gate's rounds (the bare proxy of 5b ran in the same process between them)` });
    if (rateMem.length) rows.push({ id: '6d', figure: `host RSS under load, ${rate} req/s through the gate`, unit: 'MB', value: S(rss(rateMem)), reference: { label: 'no tunnel', value: baseRss }, ratio: median(rss(rateMem)) - baseRss, ratioKind: 'diff' });
    rows.push({ id: '6e', figure: 'host heap used, live idle', unit: 'MB', value: S(heap(memIdle)), reference: { label: 'no tunnel', value: median(heap(memBase)) }, ratio: median(heap(memIdle)) - median(heap(memBase)), ratioKind: 'diff' });
    rows.push({ id: '6f', figure: 'host heap used under load, saturated', unit: 'MB', value: S(heap(loadMem)), note: `peak ${fmt(Math.max(...heap(loadMem)), 'MB')}` });
    rows.push({ id: '6g', figure: 'host RSS once the MCP host (dist/mcp.js) runs', unit: 'MB', value: S(rss(memMcp)), reference: { label: 'just before', value: median(rss(memBeforeMcp)) }, ratio: median(rss(memMcp)) - median(rss(memBeforeMcp)), ratioKind: 'diff', note: 'after the load tests; the SDK and zod load on the first MCP resolve, not at activation' });
    if (missingApi.length) rows.push({ id: 'ℹ', figure: 'vscode API the stub does not implement (no-ops)', unit: '', note: missingApi.join(', ') });


    rows.push(...stdioRows);

    markLoad('end');
    const totalS = (performance.now() - t0) / 1000;
    const cpus = os.cpus();
    const header = [
      `MCP Tunnel benchmark — ${new Date().toISOString()} — ${cpus.length} × ${cpus[0]?.model ?? '?'} — node ${process.version} — ${totalS.toFixed(0)} s`,
      `load average (1/5/15 min): ${loads.map((l) => `${l.phase} ${l.loadavg.join('/')}`).join(' · ')}`,
      ...(PROFILE ? ['BENCH_PROFILE=1: the child processes ran under the CPU profiler, so their timings are inflated'] : []),
    ].join('\n');
    const table = renderTable(rows);
    process.stdout.write(`\n${header}\n\n${table}\n\n`);
    const results = {
      date: new Date().toISOString(),
      durationS: totalS,
      machine: { cpus: cpus.length, model: cpus[0]?.model, node: process.version, platform: `${process.platform}-${process.arch}`, totalMemMB: Math.round(os.totalmem() / MB) },
      loadavg: loads,
      config: CFG,
      rows,
      raw,
    };
    writeFileSync(path.join(REPO, 'bench-results.json'), `${JSON.stringify(results, null, 2)}\n`);
    process.stdout.write(`wrote bench-results.json${PROFILE ? ` and CPU profiles in ${PROFILE_DIR}` : ''}\n`);
    const missed = rows.filter((r) => r.met === false).map((r) => r.id);
    if (missed.length) process.stdout.write(`targets missed: ${missed.join(', ')}\n`);
  } finally {
    if (host) {
      await Promise.race([host.rpc({ cmd: 'shutdown' }).catch(() => undefined), sleep(5000)]);
    }
    origin?.child.kill('SIGTERM');
    await sleep(100);
    killChildren();
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (!existsSync(FAKE_CLOUDFLARED)) throw new Error(`fake cloudflared missing: ${FAKE_CLOUDFLARED}`);
main().catch((err: unknown) => {
  killChildren();
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});

// file-timeout: 120 s (the CLI with real stdio servers, ~21 s alone; test/support/runUnit.ts)
/**
 * `mcp-tunnel start --stdio -- <command>`: a real stdio server (server-everything) shared through
 * bridge + gate + the fake cloudflared, driven by the SDK 1.x and 2.x clients through the fake's
 * public port, as a remote client would; server-filesystem driven by @modelcontextprotocol/inspector-cli.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { defaultServerName } from '../../src/bridge/serverName';
import { get, startStrictOrigin, type Origin } from '../support/origins';
import { FAKE_CLOUDFLARED, REPO, publicPath, readFakeState, waitFor, waitGone } from '../support/proc';

const CLI = path.join(REPO, 'dist', 'cli.js');
const EVERYTHING = path.join(REPO, 'node_modules', '@modelcontextprotocol', 'server-everything', 'dist', 'index.js');
const FILESYSTEM = path.join(REPO, 'node_modules', '@modelcontextprotocol', 'server-filesystem', 'dist', 'index.js');
const INSPECTOR = path.join(REPO, 'node_modules', '@modelcontextprotocol', 'inspector-cli', 'build', 'index.js');
let work: string;
let origin: Origin;
const children: ChildProcess[] = [];

function cli(args: string[]): { child: ChildProcess; out: () => string; err: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, MCP_TUNNEL_STATE_DIR: path.join(work, 'state'), FAKE_CLOUDFLARED_STATE_DIR: work, HOME: work },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, out: () => out, err: () => err, exit };
}

/** PIDs whose command line holds `marker` (the stdio servers a run started). */
function pidsWith(marker: string): number[] {
  if (process.platform !== 'linux') return [];
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(marker)) pids.push(Number(d));
    } catch {
      // gone
    }
  }
  return pids;
}

/** `@modelcontextprotocol/inspector-cli` (its CLI mode), run to its end. */
function inspector(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    // Its build/ as cwd: it looks for its package.json with existsSync (cwd-relative) but loads it module-relative.
    const child = spawn(process.execPath, [INSPECTOR, ...args], { cwd: path.dirname(INSPECTOR), stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => resolve({ code, out, err }));
  });
}

function text(r: unknown): string {
  return ((r as CallToolResult).content ?? []).map((c) => (c.type === 'text' ? c.text : '')).join('');
}

describe('mcp-tunnel start --stdio', { concurrency: false }, () => {
  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'mcpt-cli-stdio-'));
    origin = await startStrictOrigin();
  });
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGINT');
  });
  after(async () => {
    await origin.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('shares server-everything: SDK 1.x and 2.x clients through the public URL with the secret; 401 without; Ctrl+C leaves no server running', async () => {
    const marker = `marker-${randomBytes(4).toString('hex')}`;
    const r = cli(['start', '--stdio', '--name', 'everything', '--cloudflared', FAKE_CLOUDFLARED, '--', process.execPath, EVERYTHING, 'stdio', marker]);
    await waitFor(() => (/Press Ctrl\+C/.test(r.out()) ? true : undefined), 20_000, 'active');
    assert.match(r.err(), /everything: 1\d tools/);
    assert.match(r.out(), /Runs:\s+.*server-everything.*\(stdio: 1\d tools/);
    const mcpUrl = /Public MCP URL:\s+(\S+)/.exec(r.out())?.[1];
    const pid = Number(/PID (\d+)/.exec(r.out())?.[1]);
    const fake = readFakeState(work, pid);
    assert.ok(fake && mcpUrl);
    const local = `http://127.0.0.1:${fake.publicPort}`;
    assert.equal((await get(fake.publicPort, '/mcp')).status, 401, 'no secret, no server');

    const c1 = new Client({ name: 'remote-1x', version: '1' });
    await c1.connect(new StreamableHTTPClientTransport(new URL(local + publicPath(mcpUrl))));
    assert.ok((await c1.listTools()).tools.some((t) => t.name === 'echo'));
    assert.equal(text(await c1.callTool({ name: 'echo', arguments: { message: 'through the tunnel' } })), 'Echo: through the tunnel');
    const progress: number[] = [];
    await c1.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } }, undefined, { onprogress: (p) => progress.push(p.progress) });
    assert.deepEqual(progress, [1, 2, 3], 'progress streams through gate and tunnel');

    // The 2.x client, with the secret as a bearer header on the bare /mcp path, probing 2026-07-28 first.
    const sdk2 = (await import('@modelcontextprotocol/client'));
    const secret = new URL(mcpUrl).pathname.split('/')[1] ?? '';
    const c2 = new sdk2.Client({ name: 'remote-2x', version: '2' }, { capabilities: {}, versionNegotiation: { mode: 'auto' } });
    await c2.connect(new sdk2.StreamableHTTPClientTransport(new URL(`${local}/mcp`), { requestInit: { headers: { authorization: `Bearer ${secret}` } } }));
    assert.match(JSON.stringify(await c2.callTool({ name: 'echo', arguments: { message: 'modern' } })), /Echo: modern/);
    // Two sessions, two children (plus the spare), none shared.
    assert.ok(pidsWith(marker).length >= 3 || process.platform !== 'linux', `servers: ${pidsWith(marker).length}`);
    await c1.close();
    await c2.close();

    r.child.kill('SIGINT');
    assert.equal(await r.exit, 0, r.err());
    assert.ok(await waitGone(pid, 3000), 'cloudflared gone');
    await waitFor(() => (pidsWith(marker).length === 0 ? true : undefined), 5000, 'every stdio server ended');
    assert.deepEqual(readdirSync(path.join(work, 'state')).filter((f) => f.startsWith('child-')), [], 'no child run records left');
  });

  it('server-filesystem, driven by @modelcontextprotocol/inspector-cli through the public URL: secret in the path or as a bearer header; refused without; --inspect prints its calls', async () => {
    const files = path.join(work, 'files');
    mkdirSync(files, { recursive: true });
    writeFileSync(path.join(files, 'note.txt'), 'shared through the bridge\n');
    const r = cli(['start', '--stdio', '--inspect', '--cloudflared', FAKE_CLOUDFLARED, '--', process.execPath, FILESYSTEM, files]);
    await waitFor(() => (/Press Ctrl\+C/.test(r.out()) ? true : undefined), 20_000, 'active');
    const mcpUrl = /Public MCP URL:\s+(\S+)/.exec(r.out())?.[1];
    const fake = readFakeState(work, Number(/PID (\d+)/.exec(r.out())?.[1]));
    assert.ok(fake && mcpUrl);
    const local = `http://127.0.0.1:${fake.publicPort}`;
    const secret = new URL(mcpUrl).pathname.split('/')[1] ?? '';

    const list = await inspector([local + publicPath(mcpUrl), '--transport', 'http', '--method', 'tools/list']);
    assert.equal(list.code, 0, list.err);
    const tools = (JSON.parse(list.out) as { tools: Array<{ name: string }> }).tools.map((t) => t.name);
    assert.ok(tools.includes('read_text_file') && tools.includes('list_directory'), tools.join(', '));

    const read = await inspector([`${local}/mcp`, '--transport', 'http', '--header', `Authorization: Bearer ${secret}`, '--method', 'tools/call', '--tool-name', 'read_text_file', '--tool-arg', `path=${path.join(files, 'note.txt')}`]);
    assert.equal(read.code, 0, read.err);
    assert.match(read.out, /shared through the bridge/);

    const refused = await inspector([`${local}/mcp`, '--transport', 'http', '--method', 'tools/list']);
    assert.notEqual(refused.code, 0, 'no secret: the inspector gets nothing');
    assert.match(refused.out + refused.err, /Unauthorized: this tunnel is protected by a share secret/, "the inspector shows why");
    // --inspect: one line per call, naming the client (from its initialize), the tool and the outcome; never a secret.
    const calls = await waitFor(() => {
      const lines = r.out().split('\n').filter((l) => /tools\/(list|call)/.test(l));
      return lines.some((l) => /read_text_file/.test(l)) ? lines : undefined;
    }, 5000, 'the --inspect lines');
    assert.ok(calls.some((l) => /inspector-cli [\d.]+ from [A-Z]{2}\s+tools\/call read_text_file\s+200\s+[\d.]+ ms/.test(l)), calls.join('\n'));
    assert.ok(calls.every((l) => !l.includes(secret)), 'no secret in the --inspect lines');
    r.child.kill('SIGINT');
    assert.equal(await r.exit, 0, r.err());
  });

  it('--read-only and --allow-tool: through the public URL, inspector-cli sees only the read-only tools named, and a write is refused by the tunnel', async () => {
    const files = path.join(work, 'ro-files');
    mkdirSync(files, { recursive: true });
    writeFileSync(path.join(files, 'keep.txt'), 'read me\n');
    const bad = cli(['start', '--stdio', '--allow-tool', 'two words', '--', process.execPath, FILESYSTEM, files]);
    assert.equal(await bad.exit, 2);
    assert.match(bad.err(), /--allow-tool: "two words" is not a tool name/);
    const r = cli(['start', '--stdio', '--read-only', '--allow-tool', 'read_text_file', '--allow-tool', 'write_file', '--cloudflared', FAKE_CLOUDFLARED, '--', process.execPath, FILESYSTEM, files]);
    await waitFor(() => (/Press Ctrl\+C/.test(r.out()) ? true : undefined), 20_000, 'active');
    assert.match(r.out(), /Tools:\s+read-only tools of 2 \(read_text_file, write_file\) only/);
    const mcpUrl = /Public MCP URL:\s+(\S+)/.exec(r.out())?.[1];
    const fake = readFakeState(work, Number(/PID (\d+)/.exec(r.out())?.[1]));
    assert.ok(fake && mcpUrl);
    const url = `http://127.0.0.1:${fake.publicPort}${publicPath(mcpUrl)}`;
    const list = await inspector([url, '--transport', 'http', '--method', 'tools/list']);
    assert.equal(list.code, 0, list.err);
    assert.deepEqual((JSON.parse(list.out) as { tools: Array<{ name: string }> }).tools.map((t) => t.name), ['read_text_file'], 'write_file is named but not read-only: hidden');
    const write = await inspector([url, '--transport', 'http', '--method', 'tools/call', '--tool-name', 'write_file', '--tool-arg', `path=${path.join(files, 'new.txt')}`, '--tool-arg', 'content=x']);
    assert.match(write.out + write.err, /tool \\?"write_file\\?" is not shared/);
    assert.throws(() => readFileSync(path.join(files, 'new.txt')), 'nothing was written');
    const read = await inspector([url, '--transport', 'http', '--method', 'tools/call', '--tool-name', 'read_text_file', '--tool-arg', `path=${path.join(files, 'keep.txt')}`]);
    assert.equal(read.code, 0, read.err);
    assert.match(read.out, /read me/);
    r.child.kill('SIGINT');
    assert.equal(await r.exit, 0, r.err());
  });

  it('--stop-after: the share stops by itself, saying so, and the CLI ends with exit 0; a bad value is a usage error', async () => {
    const bad = cli(['start', '--port', String(origin.port), '--stop-after', 'soon']);
    assert.equal(await bad.exit, 2);
    assert.match(bad.err(), /--stop-after must be a number of minutes/);
    const r = cli(['start', '--port', String(origin.port), '--stop-after', '0.03', '--cloudflared', FAKE_CLOUDFLARED]);
    await waitFor(() => (/Press Ctrl\+C/.test(r.out()) ? true : undefined), 20_000, 'active');
    assert.match(r.out(), /Stops:\s+by itself at /);
    assert.equal(await r.exit, 0, r.err());
    assert.match(r.out(), /stopped by itself: its time was up/);
  });

  it('a server that cannot start: the reason and the fix, exit 1, and nothing public (no cloudflared)', async () => {
    const r = cli(['start', '--stdio', '--cloudflared', FAKE_CLOUDFLARED, '--', 'no-such-mcp-server-xyz', '--flag']);
    assert.equal(await r.exit, 1);
    assert.match(r.err(), /command not found: "no-such-mcp-server-xyz"/);
    assert.match(r.err(), /Nothing was shared/);
    assert.doesNotMatch(r.out(), /Starting cloudflared|trycloudflare/);
    const crash = cli(['start', '--stdio', '--cloudflared', FAKE_CLOUDFLARED, '--', process.execPath, '-e', 'console.error("need API_KEY"); process.exit(4)']);
    assert.equal(await crash.exit, 1);
    assert.match(crash.err(), /exited with code 4.*need API_KEY/s);
  });

  it('usage: open needs --open-stdio; a command without --stdio, or --stdio without one, is refused (exit 2)', async () => {
    const open = cli(['start', '--stdio', '--access', 'open', '--', process.execPath, EVERYTHING]);
    assert.equal(await open.exit, 2);
    assert.match(open.err(), /--open-stdio/);
    const noFlag = cli(['start', '--', process.execPath, EVERYTHING]);
    assert.equal(await noFlag.exit, 2);
    assert.match(noFlag.err(), /add --stdio/);
    const noCmd = cli(['start', '--stdio']);
    assert.equal(await noCmd.exit, 2);
    assert.match(noCmd.err(), /needs the server's command line/);
  });

  it('--port and --stdio together: one tunnel, two shares, each with its own secret', async () => {
    const marker = `marker-${randomBytes(4).toString('hex')}`;
    const r = cli(['start', '--port', String(origin.port), '--stdio', '--cloudflared', FAKE_CLOUDFLARED, '--', process.execPath, EVERYTHING, 'stdio', marker]);
    await waitFor(() => (/Shares on this tunnel \(2;/.test(r.out()) ? true : undefined), 20_000, 'two shares');
    assert.match(r.out(), /server-everything \(stdio\)\s+https:\/\/\S+\/[A-Za-z0-9_-]{43}\/mcp/);
    const urls = [...r.out().matchAll(/(https:\/\/[a-z-]+\.trycloudflare\.com\/[A-Za-z0-9_-]{43}\/mcp)/g)].map((m) => m[1]);
    assert.equal(new Set(urls.map((u) => u?.split('/')[3])).size, 2, 'two secrets');
    r.child.kill('SIGINT');
    assert.equal(await r.exit, 0, r.err());
    await waitFor(() => (pidsWith(marker).length === 0 ? true : undefined), 5000, 'the stdio servers ended');
  });

  it('SIGKILL of the CLI: its stdio servers die with it (lifeline)', { skip: process.platform !== 'linux' ? 'reads /proc' : false }, async () => {
    const marker = `marker-${randomBytes(4).toString('hex')}`;
    const r = cli(['start', '--stdio', '--cloudflared', FAKE_CLOUDFLARED, '--', process.execPath, EVERYTHING, 'stdio', marker]);
    await waitFor(() => (/Press Ctrl\+C/.test(r.out()) ? true : undefined), 20_000, 'active');
    await waitFor(() => (pidsWith(marker).length > 0 ? true : undefined), 5000, 'the spare server');
    r.child.kill('SIGKILL');
    await waitFor(() => (pidsWith(marker).length === 0 ? true : undefined), 5000, 'the stdio servers died with the CLI');
  });
});

describe('defaultServerName', () => {
  it('names a server after its package or script', () => {
    assert.equal(defaultServerName('npx', ['-y', '@modelcontextprotocol/server-filesystem', '/tmp']), 'server-filesystem');
    assert.equal(defaultServerName('npx', ['-y', 'mcp-server-git@1.2.3']), 'mcp-server-git');
    assert.equal(defaultServerName('uvx', ['mcp-server-fetch']), 'mcp-server-fetch');
    assert.equal(defaultServerName('/usr/bin/node', ['/x/node_modules/@modelcontextprotocol/server-everything/dist/index.js', 'stdio']), 'server-everything');
    assert.equal(defaultServerName('node', ['/home/me/weather/build/index.js']), 'weather');
    assert.equal(defaultServerName('/opt/bin/my-server', ['--stdio']), 'my-server');
  });
});

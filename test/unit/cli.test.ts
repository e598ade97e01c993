/** The CLI `start` against the fake cloudflared: output, exit codes, Ctrl+C, orphans after SIGKILL. */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { reapOrphans } from '../../src/core/orphans';
import { get, startStrictOrigin, type Origin } from '../fixtures/origins';
import { FAKE_CLOUDFLARED, REPO, isAlive, publicPath, readFakeState, waitFor, waitGone } from './helpers/proc';

const CLI = path.join(REPO, 'dist', 'cli.js');
let origin: Origin;
let work: string;

interface Run {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children: ChildProcess[] = [];

function cli(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, MCP_TUNNEL_STATE_DIR: path.join(work, 'state'), FAKE_CLOUDFLARED_STATE_DIR: work, HOME: work, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  return { child, out: () => out, err: () => err, exit };
}

describe('mcp-tunnel CLI', { concurrency: false }, () => {
  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'mcpt-cli-'));
    origin = await startStrictOrigin();
  });
  afterEach(() => {
    // A failed assertion must not leave a CLI (and its cloudflared) running: SIGINT stops both.
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGINT');
  });
  after(async () => {
    await origin.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('start: prints the public URL and the MCP URL with its share secret (secret by default); Ctrl+C stops cloudflared and exits 0', async () => {
    const r = cli(['start', '--port', String(origin.port), '--cloudflared', FAKE_CLOUDFLARED]);
    await waitFor(() => (/Press Ctrl\+C/.test(r.out()) ? true : undefined), 8000, 'active');
    const url = /Public URL:\s+(https:\/\/\S+)/.exec(r.out())![1];
    const mcpUrl = /Public MCP URL:\s+(\S+)/.exec(r.out())![1];
    assert.match(mcpUrl, new RegExp(`^${url.replace(/\./g, '\\.')}/[A-Za-z0-9_-]{43}/mcp$`));
    const secret = mcpUrl.split('/')[3];
    assert.match(r.out(), /Access:\s+secret/);
    assert.ok(r.out().includes(`"Authorization: Bearer ${secret}"`), 'the header form is printed too');
    const pid = Number(/PID (\d+)/.exec(r.out())?.[1]);
    assert.ok(isAlive(pid));
    const fake = readFakeState(work, pid)!;
    assert.equal((await get(fake.publicPort, '/mcp')).status, 401);
    assert.equal((await get(fake.publicPort, publicPath(mcpUrl))).status, 200);
    assert.equal((await get(fake.publicPort, '/mcp', { authorization: `Bearer ${secret}` })).status, 200);
    r.child.kill('SIGINT');
    const { code } = await r.exit;
    assert.equal(code, 0, r.err());
    assert.match(r.out(), /Stopped\./);
    assert.ok(await waitGone(pid, 1000), 'cloudflared is gone after Ctrl+C');
  });

  it('--named: a stable hostname, the token from a file (not in argv)', async () => {
    const token = Buffer.from(JSON.stringify({ a: 'acct', t: '6ff42ae2-765d-4adf-8112-31c55c1551ef', s: 'c2VjcmV0' })).toString('base64');
    const tokenFile = path.join(work, 'token');
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const r = cli(['start', '--named', '--hostname', 'mcp.example.com', '--token-file', tokenFile, '--port', String(origin.port), '--cloudflared', FAKE_CLOUDFLARED]);
    await waitFor(() => (/Public MCP URL:\s+https:\/\/mcp\.example\.com\/[A-Za-z0-9_-]{43}\/mcp/.test(r.out()) ? true : undefined), 8000, 'named URL');
    const pid = Number(/PID (\d+)/.exec(r.out())?.[1]);
    assert.ok(!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(token));
    assert.ok(!r.out().includes(token) && !r.err().includes(token));
    r.child.kill('SIGINT');
    assert.equal((await r.exit).code, 0);
    assert.ok(await waitGone(pid, 1000));
  });

  it('MCP_TUNNEL_SHARE_SECRET fixes the share secret (never a flag: argv is public)', async () => {
    const secret = 'A'.repeat(20) + '_-' + 'b'.repeat(21);
    const r = cli(['start', '--port', String(origin.port), '--cloudflared', FAKE_CLOUDFLARED], { MCP_TUNNEL_SHARE_SECRET: secret });
    await waitFor(() => (/Press Ctrl\+C/.test(r.out()) ? true : undefined), 8000, 'active');
    const mcpUrl = /Public MCP URL:\s+(\S+)/.exec(r.out())![1];
    assert.ok(mcpUrl.endsWith(`/${secret}/mcp`), mcpUrl);
    const pid = Number(/PID (\d+)/.exec(r.out())?.[1]);
    assert.equal((await get(readFakeState(work, pid)!.publicPort, publicPath(mcpUrl))).status, 200);
    r.child.kill('SIGINT');
    assert.equal((await r.exit).code, 0);
    assert.ok(await waitGone(pid, 1000));
  });

  it('--access open: the plain MCP URL, a warning, no gate', async () => {
    const r = cli(['start', '--access', 'open', '--port', String(origin.port), '--cloudflared', FAKE_CLOUDFLARED]);
    await waitFor(() => (/Press Ctrl\+C/.test(r.out()) ? true : undefined), 8000, 'active');
    const url = /Public URL:\s+(https:\/\/\S+)/.exec(r.out())![1];
    assert.match(r.out(), new RegExp(`Public MCP URL:\\s+${url.replace(/\./g, '\\.')}/mcp\n`));
    assert.match(r.out(), /Access:\s+OPEN: anyone who learns the URL reaches your server/);
    const pid = Number(/PID (\d+)/.exec(r.out())?.[1]);
    assert.equal((await get(readFakeState(work, pid)!.publicPort, '/mcp')).status, 200);
    r.child.kill('SIGINT');
    assert.equal((await r.exit).code, 0);
    assert.ok(await waitGone(pid, 1000));
  });

  it('--json: one JSON object per state change', async () => {
    const r = cli(['start', '--json', '--port', String(origin.port), '--cloudflared', FAKE_CLOUDFLARED]);
    await waitFor(() => (r.out().includes('"status":"active"') ? true : undefined), 8000, 'active');
    r.child.kill('SIGTERM');
    assert.equal((await r.exit).code, 0);
    const objs = r.out().trim().split('\n').map((l) => JSON.parse(l) as { status: string; mcp_url: string | null; access: string | null });
    assert.deepEqual([...new Set(objs.map((o) => o.status))], ['starting', 'connecting', 'active', 'stopping', 'stopped']);
    const active = objs.find((o) => o.status === 'active')!;
    assert.match(active.mcp_url!, /\.trycloudflare\.com\/[A-Za-z0-9_-]{43}\/mcp$/);
    assert.equal(active.access, 'secret');
  });

  it('failure: the cause on stderr and exit code 1', async () => {
    const r = cli(['start', '--port', String(origin.port), '--cloudflared', FAKE_CLOUDFLARED], { FAKE_CLOUDFLARED_SCENARIO: 'no-network' });
    const { code } = await r.exit;
    assert.equal(code, 1);
    assert.match(r.err(), /Tunnel failed: cloudflared could not reach Cloudflare's quick-tunnel service/);
  });

  it('cloudflared missing: exit 1 and the fix', async () => {
    const r = cli(['start', '--cloudflared', path.join(work, 'missing')]);
    assert.equal((await r.exit).code, 1);
    assert.match(r.err(), /not found at .*missing \(from --cloudflared\)/);
  });

  it('--version prints the version of package.json (injected at build time)', async () => {
    const r = cli(['--version']);
    assert.equal((await r.exit).code, 0);
    const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
    assert.equal(r.out().trim(), pkg.version);
  });

  it('bad input: exit 2 naming the option', async () => {
    const r = cli(['start', '--port', '99999']);
    assert.equal((await r.exit).code, 2);
    assert.match(r.err(), /port/i);
    const r2 = cli(['start', '--path', 'mcp']);
    assert.equal((await r2.exit).code, 2);
    assert.match(r2.err(), /path/i);
    const r4 = cli(['start'], { MCP_TUNNEL_SHARE_SECRET: 'short' });
    assert.equal((await r4.exit).code, 2);
    assert.match(r4.err(), /MCP_TUNNEL_SHARE_SECRET must be 32 to 512 characters/);
    const r3 = cli(['start', '--access', 'public']);
    assert.equal((await r3.exit).code, 2);
    assert.match(r3.err(), /--access must be secret .* or open .* \(got "public"\)/);
  });

  it('a CLI killed with SIGKILL leaves cloudflared; the next run reaps it (verified identity)', async () => {
    const r = cli(['start', '--port', String(origin.port), '--cloudflared', FAKE_CLOUDFLARED]);
    await waitFor(() => (/Public URL/.test(r.out()) ? true : undefined), 8000, 'URL');
    const pid = Number(/PID (\d+)/.exec(r.out())?.[1]);
    r.child.kill('SIGKILL');
    await r.exit;
    assert.ok(isAlive(pid), 'cloudflared survived its parent');
    const stateDir = path.join(work, 'state');
    const rec = readdirSync(stateDir).find((f) => f.startsWith('run-'));
    assert.ok(rec, 'a run record is left');
    assert.equal((JSON.parse(readFileSync(path.join(stateDir, rec), 'utf8')) as { pid: number }).pid, pid);
    const reaped = await reapOrphans(stateDir);
    assert.deepEqual(reaped.map((x) => [x.pid, x.outcome]), [[pid, 'ended']]);
    assert.ok(await waitGone(pid, 2000));
    assert.deepEqual(readdirSync(stateDir).filter((f) => f.startsWith('run-')), []);
  });

  it('the orphan of a SIGKILLed CLI reaches nothing: the gate died with the CLI (502, origin untouched)', async () => {
    const r = cli(['start', '--port', String(origin.port), '--cloudflared', FAKE_CLOUDFLARED]);
    const mcpUrl = await waitFor(() => /Public MCP URL:\s+(\S+)/.exec(r.out())?.[1], 8000, 'MCP URL');
    const pid = Number(/PID (\d+)/.exec(r.out())?.[1]);
    const fake = readFakeState(work, pid)!;
    assert.equal((await get(fake.publicPort, publicPath(mcpUrl))).status, 200);
    r.child.kill('SIGKILL');
    await r.exit;
    const before = origin.hosts.length;
    assert.equal((await get(fake.publicPort, publicPath(mcpUrl))).status, 502);
    assert.equal(origin.hosts.length, before, 'the orphan cannot reach the origin');
    // Logging that 502 to the dead parent's pipe kills it (SIGPIPE, as the real one); reap what is left.
    const reaped = await reapOrphans(path.join(work, 'state'));
    assert.ok(reaped.every((x) => x.pid === pid && (x.outcome === 'ended' || x.outcome === 'already-gone')), JSON.stringify(reaped));
    assert.ok(await waitGone(pid, 2000));
  });
});

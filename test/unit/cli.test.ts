// file-timeout: 120 s (the CLI against real processes, ~21 s alone; test/support/runUnit.ts)
/** The CLI `start` (and `doctor`) against the fake cloudflared: output, exit codes, Ctrl+C, orphans after SIGKILL, the reachability check. */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { reapOrphans } from '../../src/core/supervisor/orphans';
import { freePort, get, startStrictOrigin, type Origin } from '../support/origins';
import { startMcpOrigin } from '../fixtures/mcpOrigin';
import { FAKE_CLOUDFLARED, REPO, isAlive, publicPath, readFakeState, waitFor, waitGone } from '../support/proc';

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

/** The first group of `re` in `text`; a missing match fails the test there, naming both. */
function capture(re: RegExp, text: string): string {
  const m = re.exec(text)?.[1];
  assert.ok(m !== undefined, `no match for ${re} in ${JSON.stringify(text.slice(0, 400))}`);
  return m;
}

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
    const url = capture(/Public URL:\s+(https:\/\/\S+)/, r.out());
    const mcpUrl = capture(/Public MCP URL:\s+(\S+)/, r.out());
    assert.match(mcpUrl, new RegExp(`^${url.replace(/\./g, '\\.')}/[A-Za-z0-9_-]{43}/mcp$`));
    const secret = capture(/^https:\/\/[^/]+\/([^/]+)\//, mcpUrl);
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

  it('start --port A --port host:B/path: one tunnel, one share per target, each MCP URL printed with its own secret; --json lists the shares', async () => {
    const second = await startStrictOrigin();
    try {
      const r = cli(['start', '--port', String(origin.port), '--port', `127.0.0.1:${second.port}/other`, '--cloudflared', FAKE_CLOUDFLARED]);
      // Each line is its own write: wait for the list's two lines, not just its heading.
      const shareLines = (): string[] => (/Shares on this tunnel \(2;/.test(r.out()) ? r.out().split('\n').filter((l) => /^ {2}\S+:\d+\/\S*\s+https:/.test(l)) : []);
      await waitFor(() => (shareLines().length >= 2 ? true : undefined), 8000, 'the shares list');
      const lines = shareLines();
      assert.equal(lines.length, 2, r.out());
      const urls = lines.map((l) => /(https:\/\/\S+)/.exec(l)?.[1] ?? '');
      assert.match(urls[0] ?? '', /^https:\/\/[a-z-]+\.trycloudflare\.com\/[A-Za-z0-9_-]{43}\/mcp$/);
      assert.match(urls[1] ?? '', /^https:\/\/[a-z-]+\.trycloudflare\.com\/[A-Za-z0-9_-]{43}\/other$/);
      assert.notEqual(urls[0]?.split('/')[3], urls[1]?.split('/')[3], 'each share its own secret');
      const pid = Number(/PID (\d+)/.exec(r.out())?.[1]);
      const fake = readFakeState(work, pid)!;
      const before = second.hosts.length;
      assert.equal((await get(fake.publicPort, publicPath(urls[1]))).status, 200);
      assert.equal(second.hosts.length, before + 1);
      assert.equal(second.hosts.at(-1), `127.0.0.1:${second.port}`);
      r.child.kill('SIGINT');
      assert.equal((await r.exit).code, 0);
      assert.ok(await waitGone(pid, 3000));
      const j = cli(['start', '--json', '--port', String(origin.port), '--port', String(second.port), '--cloudflared', FAKE_CLOUDFLARED]);
      const withShares = await waitFor(() => j.out().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { status: string; shares: unknown[] }).find((x) => x.shares.length === 2), 8000, 'a JSON line with both shares');
      assert.equal(withShares.status, 'active');
      j.child.kill('SIGINT');
      assert.equal((await j.exit).code, 0);
      const bad = cli(['start', '--port', 'localhost:80x']);
      assert.equal((await bad.exit).code, 2);
      assert.match(bad.err(), /--port "localhost:80x" is not a port/);
    } finally {
      await second.close();
    }
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
    const mcpUrl = capture(/Public MCP URL:\s+(\S+)/, r.out());
    assert.ok(mcpUrl.endsWith(`/${secret}/mcp`), mcpUrl);
    const pid = Number(/PID (\d+)/.exec(r.out())?.[1]);
    assert.equal((await get(readFakeState(work, pid)!.publicPort, publicPath(mcpUrl))).status, 200);
    r.child.kill('SIGINT');
    assert.equal((await r.exit).code, 0);
    assert.ok(await waitGone(pid, 1000));
  });

  it('--access open: the plain MCP URL, a warning, a gate that lets everything through', async () => {
    const r = cli(['start', '--access', 'open', '--port', String(origin.port), '--cloudflared', FAKE_CLOUDFLARED]);
    await waitFor(() => (/Press Ctrl\+C/.test(r.out()) ? true : undefined), 8000, 'active');
    const url = capture(/Public URL:\s+(https:\/\/\S+)/, r.out());
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

  for (const access of ['secret', 'open'] as const) {
    it(`a CLI killed with SIGKILL (${access} mode) takes its cloudflared along within 5 s; nothing reaches the origin meanwhile; the next run clears the record`, async () => {
      const r = cli(['start', '--access', access, '--port', String(origin.port), '--cloudflared', FAKE_CLOUDFLARED]);
      const mcpUrl = await waitFor(() => /Public MCP URL:\s+(\S+)/.exec(r.out())?.[1], 8000, 'MCP URL');
      const pid = Number(/PID (\d+)/.exec(r.out())?.[1]);
      const fake = readFakeState(work, pid)!;
      assert.equal((await get(fake.publicPort, publicPath(mcpUrl))).status, 200);
      r.child.kill('SIGKILL');
      await r.exit;
      const before = origin.hosts.length;
      // No request first: an orphan that logs one dies of SIGPIPE on its dead parent's pipe, which
      // would hide a missing lifeline. (While it lives, the dead gate makes it fail closed: 502.)
      assert.ok(await waitGone(pid, 5000), `cloudflared (PID ${pid}) outlived the SIGKILLed CLI by more than 5 s`);
      const probe = await get(fake.publicPort, publicPath(mcpUrl)).then((x) => x.status, (err: Error) => err.message);
      assert.match(String(probe), /ECONNREFUSED|ECONNRESET|socket hang up/, `the public side is gone: ${probe}`);
      assert.equal(origin.hosts.length, before, 'nothing reached the origin after the host died');
      const stateDir = path.join(work, 'state');
      const reaped = await reapOrphans(stateDir);
      assert.ok(reaped.every((x) => x.pid === pid && x.outcome === 'already-gone'), JSON.stringify(reaped));
      assert.deepEqual(readdirSync(stateDir).filter((f) => f.startsWith('run-')), []);
    });
  }

  it('cloudflared gets only the environment it needs: no share secret, MCP token, tunnel token or foreign credentials', { skip: process.platform !== 'linux' ? 'reads /proc/<pid>/environ' : false }, async () => {
    const secret = 'E'.repeat(43);
    const r = cli(['start', '--port', String(origin.port), '--cloudflared', FAKE_CLOUDFLARED], {
      MCP_TUNNEL_SHARE_SECRET: secret,
      MCP_TUNNEL_TOKEN: 'T'.repeat(40),
      CLOUDFLARED_TUNNEL_TOKEN: 'should-not-leak-token',
      AWS_SECRET_ACCESS_KEY: 'should-not-leak-aws',
      GITHUB_TOKEN: 'should-not-leak-gh',
      https_proxy: 'http://127.0.0.1:9',
    });
    await waitFor(() => (/Press Ctrl\+C/.test(r.out()) ? true : undefined), 8000, 'active');
    const pid = Number(/PID (\d+)/.exec(r.out())?.[1]);
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);
    const names = environ.map((e) => e.slice(0, e.indexOf('=')));
    for (const leak of ['MCP_TUNNEL_SHARE_SECRET', 'MCP_TUNNEL_TOKEN', 'CLOUDFLARED_TUNNEL_TOKEN', 'AWS_SECRET_ACCESS_KEY', 'GITHUB_TOKEN', 'TUNNEL_TOKEN']) {
      assert.ok(!names.includes(leak), `${leak} reached cloudflared`);
    }
    assert.ok(!environ.some((e) => e.includes(secret) || e.includes('should-not-leak')), 'no secret value in its environment');
    assert.ok(names.includes('PATH') && names.includes('HOME') && names.includes('https_proxy'), `what it needs stays: ${names.join(' ')}`);
    r.child.kill('SIGINT');
    assert.equal((await r.exit).code, 0);
  });

  it('stdout closed (`start --json | head -1`): the CLI stops the tunnel and leaves no files, instead of dying on EPIPE', async () => {
    const stateDir = path.join(work, 'state');
    const child = spawn(process.execPath, [CLI, 'start', '--json', '--port', String(origin.port), '--cloudflared', FAKE_CLOUDFLARED], {
      env: { ...process.env, MCP_TUNNEL_STATE_DIR: stateDir, FAKE_CLOUDFLARED_STATE_DIR: work, HOME: work },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.on('exit', (code, signal) => res({ code, signal })));
    // Read until cloudflared's PID shows, then close the pipe as `head` does.
    const pid = await new Promise<number>((resolve) => {
      let buf = '';
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        const m = /"pid":(\d+)/.exec(buf);
        if (m) {
          child.stdout.destroy();
          resolve(Number(m[1]));
        }
      });
    });
    const { code, signal } = await exit;
    assert.equal(signal, null, err);
    assert.equal(code, 0, err);
    assert.match(err, /standard output closed \(EPIPE\); stopping the tunnel/);
    assert.ok(await waitGone(pid, 3000), 'cloudflared stopped');
    assert.deepEqual(readdirSync(stateDir).filter((f) => /^(run-|config-)/.test(f)), [], 'no run record, config or temp file left');
  });

  it('text output says each step once; --json snapshots keep the secret MCP URL while stopping', async () => {
    const r = cli(['start', '--port', String(origin.port), '--cloudflared', FAKE_CLOUDFLARED]);
    await waitFor(() => (/Press Ctrl\+C/.test(r.out()) ? true : undefined), 8000, 'active');
    r.child.kill('SIGINT');
    assert.equal((await r.exit).code, 0);
    assert.equal(r.out().match(/waiting for Cloudflare's edge/g)?.length, 1, r.out());
    assert.equal(r.out().match(/Tunnel active/g)?.length, 1, r.out());
    const j = cli(['start', '--json', '--port', String(origin.port), '--cloudflared', FAKE_CLOUDFLARED]);
    await waitFor(() => (/"status":"active"/.test(j.out()) ? true : undefined), 8000, 'active');
    j.child.kill('SIGINT');
    assert.equal((await j.exit).code, 0);
    const snaps = j.out().trim().split('\n').map((l) => JSON.parse(l) as { status: string; mcp_url: string | null });
    const active = snaps.find((x) => x.status === 'active')!;
    const stopping = snaps.find((x) => x.status === 'stopping')!;
    assert.match(active.mcp_url ?? '', /\/[A-Za-z0-9_-]{43}\/mcp$/);
    assert.equal(stopping.mcp_url, active.mcp_url, 'the stopping snapshot names the same (secret) MCP URL');
  });

  it('start checks the share from the internet once active (one line); doctor: exit 0 when a client gets an MCP answer, 1 with the cause and fix, 2 on bad input', async () => {
    const mcp = await startMcpOrigin({ stateful: true });
    try {
      const publicPort = await freePort();
      const connectTo = `*=http://127.0.0.1:${publicPort}`;
      const r = cli(['start', '--port', String(mcp.port), '--cloudflared', FAKE_CLOUDFLARED], { FAKE_CLOUDFLARED_PUBLIC_PORT: String(publicPort), MCP_TUNNEL_DOCTOR_CONNECT_TO: connectTo });
      const line = await waitFor(() => /^localhost:\d+\/mcp: .*$/m.exec(r.out())?.[0], 10_000, 'the check line');
      assert.match(line, new RegExp(`^localhost:${mcp.port}/mcp: Reachable from the internet · \\d+ ms$`));
      const mcpUrl = capture(/Public MCP URL:\s+(\S+)/, r.out());
      const secret = capture(/^https:\/\/[^/]+\/([^/]+)\//, mcpUrl);

      const ok = cli(['doctor', mcpUrl, '--connect-to', connectTo]);
      assert.equal((await ok.exit).code, 0, ok.err());
      assert.match(ok.out(), /^Reachable from the internet · \d+ ms\n$/);
      assert.match(ok.err(), /^Checking https:\/\/[a-z-]+\.trycloudflare\.com\/… from the internet side…\n$/, 'progress on stderr, without the secret');
      const json = cli(['doctor', mcpUrl, '--json', '--connect-to', connectTo]);
      assert.equal((await json.exit).code, 0, json.err());
      const result = JSON.parse(json.out()) as { state: string; ok: boolean; status: number; fix: string | null; host: string };
      assert.deepEqual([result.state, result.ok, result.status, result.fix], ['ok', true, 200, null]);
      assert.equal(result.host, new URL(mcpUrl).hostname);

      // The bearer instead of the secret path: from the environment, never argv.
      const plain = mcpUrl.replace(`/${secret}/`, '/');
      const bearer = cli(['doctor', plain, '--connect-to', connectTo], { MCP_TUNNEL_BEARER: secret });
      assert.equal((await bearer.exit).code, 0, bearer.out());
      const refused = cli(['doctor', plain, '--connect-to', connectTo]);
      assert.equal((await refused.exit).code, 1);
      assert.match(refused.out(), /refused the secret this URL carries \(401\).*\nFix: Copy the share's current MCP URL/);

      const usage = [cli(['doctor']), cli(['doctor', mcpUrl, '--connect-to', 'nope']), cli(['doctor', mcpUrl, '--connect-to', 'other.example=127.0.0.1:1']), cli(['doctor', 'not a url'])];
      const codes = await Promise.all(usage.map((u) => u.exit));
      assert.deepEqual(codes.map((c) => c.code), [2, 2, 2, 2]);
      assert.match(usage[0]?.err() ?? '', /doctor needs one MCP URL/);
      assert.match(usage[1]?.err() ?? '', /--connect-to: "nope" is not HOST=ADDR:PORT/);
      assert.match(usage[2]?.err() ?? '', /--connect-to names other\.example, but the URL's host is /);
      for (const x of [ok, json, refused, ...usage]) assert.ok(!x.out().includes(secret) && !x.err().includes(secret), 'the secret is never printed');
      r.child.kill('SIGINT');
      assert.equal((await r.exit).code, 0);
    } finally {
      await mcp.close();
    }
  });

  it('start --json: a reachability event per share with the cause when not ok; --no-check: no check', async () => {
    const publicPort = await freePort();
    const env = { FAKE_CLOUDFLARED_PUBLIC_PORT: String(publicPort), MCP_TUNNEL_DOCTOR_CONNECT_TO: `*=http://127.0.0.1:${publicPort}` };
    const j = cli(['start', '--json', '--port', String(origin.port), '--cloudflared', FAKE_CLOUDFLARED], env);
    type Line = { event?: string; status?: string; share_id?: string; state?: string; ok?: boolean; fix?: string; shares?: Array<{ id: string }> };
    const lines = () => j.out().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
    const event = await waitFor(() => lines().find((x) => x.event === 'reachability'), 10_000, 'a reachability event');
    const active = lines().find((x) => x.status === 'active');
    assert.equal(event.share_id, active?.shares?.[0]?.id);
    assert.equal(event.state, 'not-mcp', 'the strict origin answers JSON, not JSON-RPC');
    assert.equal(event.ok, false);
    assert.match(event.fix ?? '', /path and port/);
    j.child.kill('SIGINT');
    assert.equal((await j.exit).code, 0);

    const n = cli(['start', '--no-check', '--port', String(origin.port), '--cloudflared', FAKE_CLOUDFLARED], env);
    const mcpUrl = await waitFor(() => /Public MCP URL:\s+(\S+)/.exec(n.out())?.[1], 8000, 'the MCP URL');
    const before = origin.hosts.length;
    // A check of its own, to know one would have had time to print.
    const d = cli(['doctor', mcpUrl, '--connect-to', env.MCP_TUNNEL_DOCTOR_CONNECT_TO]);
    assert.equal((await d.exit).code, 1);
    assert.match(d.out(), /not with a JSON-RPC answer/);
    assert.equal(origin.hosts.length, before + 1, "only the doctor's request reached the origin");
    assert.doesNotMatch(n.out() + n.err(), /not with a JSON-RPC answer|waiting for DNS|Waiting for DNS/);
    n.child.kill('SIGINT');
    assert.equal((await n.exit).code, 0);
  });

  it('a non-loopback --host needs --allow-host; ports are decimal; MCP_TUNNEL_TOKEN is at least 32 characters', async () => {
    const r = cli(['start', '--host', '169.254.169.254', '--port', '80']);
    assert.equal((await r.exit).code, 2);
    assert.match(r.err(), /169\.254\.169\.254.*not allowed.*also pass --allow-host 169\.254\.169\.254/s);
    // Allowed on purpose: the target passes validation and the run goes on (to a missing cloudflared).
    const r2 = cli(['start', '--host', '10.1.2.3', '--allow-host', '10.1.2.3', '--cloudflared', path.join(work, 'missing-cloudflared')]);
    assert.equal((await r2.exit).code, 1);
    assert.match(r2.out() + r2.err(), /not found/i);
    for (const args of [['start', '--port', '0x50'], ['start', '--port', '1e3'], ['mcp', '--http', '--port', '0x50']]) {
      const x = cli(args);
      assert.equal((await x.exit).code, 2, args.join(' '));
      assert.match(x.err(), /--port must be a decimal port number|--port "[^"]+" is not a port: give a decimal port/);
    }
    const t = cli(['mcp', '--http'], { MCP_TUNNEL_TOKEN: 'sixteen-chars-ok' });
    assert.equal((await t.exit).code, 2);
    assert.match(t.err(), /MCP_TUNNEL_TOKEN must be at least 32/);
  });
});

/**
 * Installing cloudflared: a local HTTP server plays GitHub's release API and its downloads; the
 * "cloudflared" it serves is a launcher of the fake (out/fake-cloudflared.js, built from test/fixtures/fake-cloudflared/), so the
 * installer's `--version` check really runs it. Good, corrupt and missing checksums, GitHub's
 * asset digest, a slow download cancelled, a 404, a macOS .tgz, a CONNECT proxy, the lookup order,
 * the update check and the CLI command end to end.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import {
  assetNameFor,
  extractFromTar,
  installCloudflared,
  InstallError,
  managedBinaryPath,
  newerRelease,
  parseChecksums,
  proxyFor,
  updateCheckDue,
  UPDATE_INTERVAL_MS,
  type InstallProgress,
} from '../../src/core/cloudflared/install';
import { findCloudflared } from '../../src/core/cloudflared/locate';
import { REPO } from '../support/proc';

const FAKE_JS = path.join(REPO, 'out', 'fake-cloudflared.js');
const LINUX = assetNameFor('linux', 'x64');
const DARWIN = assetNameFor('darwin', 'arm64');

let work: string;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A "cloudflared" that is the fake, saying it is `version`. */
function fakeBinary(version: string): Buffer {
  return Buffer.from(`#!/bin/sh\nFAKE_CLOUDFLARED_VERSION=${version} exec "${process.execPath}" "${FAKE_JS}" "$@"\n`);
}

function tgzOf(binary: Buffer): Buffer {
  const d = mkdtempSync(path.join(work, 'tgz-'));
  writeFileSync(path.join(d, 'cloudflared'), binary, { mode: 0o755 });
  execFileSync('tar', ['-czf', path.join(d, 'out.tgz'), '-C', d, 'cloudflared']);
  return readFileSync(path.join(d, 'out.tgz'));
}

interface Served {
  version: string;
  /** Asset name → bytes served. */
  files: Map<string, Buffer>;
  /** Asset name → the checksum written into the release body (absent: none). */
  checksums: Map<string, string>;
  /** Asset name → GitHub's digest. */
  digests: Map<string, string>;
  /** Milliseconds between 64 KiB chunks of a download. */
  slowMs: number;
  /** Listed in the release, but their download answers 404. */
  gone: Set<string>;
}

/** The release host: GET /repos/cloudflare/cloudflared/releases/{latest,tags/V} and /download/NAME. */
class ReleaseHost {
  server!: http.Server;
  base = '';
  served: Served = { version: '2026.9.0', files: new Map(), checksums: new Map(), digests: new Map(), slowMs: 0, gone: new Set() };
  requests: string[] = [];
  /** Downloads whose connection closed before the end. */
  aborted = 0;

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      this.requests.push(req.url ?? '');
      const s = this.served;
      const url = req.url ?? '';
      if (url === '/repos/cloudflare/cloudflared/releases/latest' || url === `/repos/cloudflare/cloudflared/releases/tags/${s.version}`) {
        const lines = [...s.checksums].map(([n, h]) => `${n}: ${h}`).join('\n');
        const body = `## What's changed\n- things\n${lines ? ` \n### SHA256 Checksums:\n\`\`\`\n${lines}\n\`\`\`` : ''}`;
        const assets = [...s.files].map(([name, b]) => ({
          name,
          size: b.length,
          // GitHub redirects downloads to another host: so does this one.
          browser_download_url: `${this.base}/redirect/${name}`,
          ...(s.digests.has(name) ? { digest: `sha256:${s.digests.get(name)}` } : {}),
        }));
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ tag_name: s.version, body, assets }));
        return;
      }
      const redirect = /^\/redirect\/(.+)$/.exec(url);
      if (redirect) {
        res.writeHead(302, { location: `/download/${redirect[1]}` }).end();
        return;
      }
      const dl = /^\/download\/(.+)$/.exec(url);
      const name = decodeURIComponent(dl?.[1] ?? '');
      const file = dl && !s.gone.has(name) && s.files.get(name);
      if (!file) {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"message":"Not Found"}');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': file.length });
      let off = 0;
      let finished = false;
      res.on('close', () => {
        if (!finished) this.aborted++;
      });
      const next = () => {
        if (res.destroyed) return;
        const end = Math.min(file.length, off + 65536);
        res.write(file.subarray(off, end));
        off = end;
        if (off >= file.length) {
          finished = true;
          res.end();
        } else if (s.slowMs) setTimeout(next, s.slowMs);
        else setImmediate(next);
      };
      next();
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  /** A good release: the binary, its checksum in the body (and for the .tgz, of the binary inside). */
  good(version = '2026.9.0'): Buffer {
    const bin = Buffer.concat([fakeBinary(version), Buffer.alloc(300_000, 0x23)]); // big enough for several chunks
    this.served = { version, files: new Map([[LINUX, bin], [DARWIN, tgzOf(bin)]]), checksums: new Map([[LINUX, sha(bin)], [DARWIN, sha(bin)]]), digests: new Map(), slowMs: 0, gone: new Set() };
    return bin;
  }

  stop(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }
}

const host = new ReleaseHost();
let dir: string;

const install = (extra: Partial<Parameters<typeof installCloudflared>[0]> = {}) =>
  installCloudflared({ dir, apiBase: host.base, platform: 'linux', arch: 'x64', env: {}, ...extra });

async function rejectsWith(p: Promise<unknown>, code: string, text: RegExp): Promise<InstallError> {
  const err = await p.then(
    () => assert.fail('expected the install to fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof InstallError, `an InstallError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  assert.match(err.message, text);
  return err;
}

/** Nothing but finished files in the folder: no partial download left behind. */
function assertNoPartial(): void {
  const left = existsSync(dir) ? readdirSync(dir) : [];
  assert.deepEqual(left.filter((f) => f.includes('partial')), [], `left behind: ${left.join(', ')}`);
}

describe('cloudflared install', { concurrency: false }, () => {
  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'mcp-tunnel-install-'));
    await host.start();
  });
  after(async () => {
    await host.stop();
    rmSync(work, { recursive: true, force: true });
  });
  let n = 0;
  beforeEach(() => {
    dir = path.join(work, `dir-${n++}`);
    host.requests = [];
  });

  it('picks the asset for each OS and CPU, and refuses what Cloudflare does not build', () => {
    assert.equal(assetNameFor('linux', 'x64'), 'cloudflared-linux-amd64');
    assert.equal(assetNameFor('linux', 'arm64'), 'cloudflared-linux-arm64');
    assert.equal(assetNameFor('darwin', 'x64'), 'cloudflared-darwin-amd64.tgz');
    assert.equal(assetNameFor('darwin', 'arm64'), 'cloudflared-darwin-arm64.tgz');
    assert.equal(assetNameFor('win32', 'x64'), 'cloudflared-windows-amd64.exe');
    assert.throws(() => assetNameFor('win32', 'arm64'), /no cloudflared build for win32\/arm64.*winget/);
    assert.throws(() => assetNameFor('freebsd', 'x64'), InstallError);
    assert.equal(path.basename(managedBinaryPath('/x', 'win32')), 'cloudflared.exe');
  });

  it('reads the checksums block of a release body as Cloudflare writes it', () => {
    const h = 'ab'.repeat(32);
    const m = parseChecksums(`Notes\n- fix: something\n \n### SHA256 Checksums:\n\`\`\`\ncloudflared-linux-amd64: ${h}\ncloudflared-darwin-amd64.tgz: ${'CD'.repeat(32)}\n\`\`\``);
    assert.equal(m.get('cloudflared-linux-amd64'), h);
    assert.equal(m.get('cloudflared-darwin-amd64.tgz'), 'cd'.repeat(32));
    assert.equal(m.size, 2);
  });

  it('installs the latest release with a good checksum: progress, executable, --version checked', async () => {
    const bin = host.good('2026.9.0');
    const progress: InstallProgress[] = [];
    const done = await install({ onProgress: (p) => progress.push(p) });
    assert.equal(done.version, '2026.9.0');
    assert.equal(done.path, path.join(dir, 'cloudflared'));
    assert.equal(done.sha256, sha(bin));
    assert.deepEqual(readFileSync(done.path), bin);
    assert.match(execFileSync(done.path, ['--version']).toString(), /cloudflared version 2026\.9\.0/);
    assert.ok(progress.length >= 3, `several progress reports (${progress.length})`);
    assert.deepEqual(progress.at(-1), { done: bin.length, total: bin.length });
    assert.ok(progress.every((p, i) => i === 0 || p.done >= (progress[i - 1]?.done ?? 0)), 'bytes only grow');
    assert.ok(host.requests.includes(`/redirect/${LINUX}`) && host.requests.includes(`/download/${LINUX}`), 'the redirect was followed');
    assertNoPartial();
  });

  it('installs a given version, and replaces the copy in place', async () => {
    host.good('2026.9.0');
    await install();
    host.good('2026.10.1');
    const done = await install({ version: '2026.10.1' });
    assert.ok(host.requests.includes('/repos/cloudflare/cloudflared/releases/tags/2026.10.1'));
    assert.match(execFileSync(done.path, ['--version']).toString(), /2026\.10\.1/);
    await rejectsWith(install({ version: '2026.11.0' }), 'no-release', /no release 2026\.11\.0 \(404/);
    await rejectsWith(install({ version: 'latest; rm -rf' }), 'no-release', /not a cloudflared release version/);
  });

  it('refuses a corrupt download (checksum mismatch) and installs nothing', async () => {
    const bin = host.good();
    const bad = Buffer.from(bin);
    bad.writeUInt8(bad.readUInt8(bad.length - 1) ^ 1, bad.length - 1);
    host.served.files.set(LINUX, bad);
    await rejectsWith(install(), 'checksum-mismatch', /does not match the SHA-256 checksum Cloudflare published for 2026\.9\.0.*not installed/);
    assert.equal(existsSync(path.join(dir, 'cloudflared')), false);
    assertNoPartial();
  });

  it('keeps the previous copy when a new download is corrupt', async () => {
    host.good('2026.9.0');
    await install();
    host.served.files.set(LINUX, Buffer.from('#!/bin/sh\necho evil\n'));
    await rejectsWith(install(), 'checksum-mismatch', /not installed/);
    assert.match(execFileSync(path.join(dir, 'cloudflared'), ['--version']).toString(), /2026\.9\.0/);
    assertNoPartial();
  });

  it('refuses when the release publishes no checksum for the asset, before downloading it', async () => {
    host.good();
    host.served.checksums.delete(LINUX);
    await rejectsWith(install(), 'no-checksum', /publishes no SHA-256 checksum for cloudflared-linux-amd64, so it cannot be verified and was not installed/);
    assert.ok(!host.requests.some((r) => r.startsWith('/download/')), 'nothing downloaded');
    assert.equal(existsSync(path.join(dir, 'cloudflared')), false);
  });

  it("accepts GitHub's asset digest alone, and refuses a file that does not match it", async () => {
    const bin = host.good();
    host.served.checksums.clear();
    host.served.digests.set(LINUX, sha(bin));
    const done = await install();
    assert.equal(done.sha256, sha(bin));
    host.served.digests.set(LINUX, sha(Buffer.from('other')));
    await rejectsWith(install({ dir: path.join(work, 'digest-bad') }), 'checksum-mismatch', /GitHub's asset digest/);
  });

  it('refuses a file that is not the cloudflared of that release', async () => {
    const bin = fakeBinary('2026.1.0');
    host.good('2026.9.0');
    host.served.files.set(LINUX, bin);
    host.served.checksums.set(LINUX, sha(bin));
    await rejectsWith(install(), 'not-cloudflared', /says it is cloudflared 2026\.1\.0, not 2026\.9\.0/);
    const notCf = Buffer.from('#!/bin/sh\necho hello\n');
    host.served.files.set(LINUX, notCf);
    host.served.checksums.set(LINUX, sha(notCf));
    await rejectsWith(install(), 'not-cloudflared', /does not run as cloudflared/);
    assertNoPartial();
    assert.equal(existsSync(path.join(dir, 'cloudflared')), false);
  });

  it('cancels a slow download: no file, no partial file, the connection closed', async () => {
    host.good();
    host.served.slowMs = 200;
    const ac = new AbortController();
    const progress: InstallProgress[] = [];
    const p = install({ signal: ac.signal, onProgress: (x) => (progress.push(x), x.done > 0 && ac.abort()) });
    await rejectsWith(p, 'cancelled', /cancelled; nothing was installed/);
    assert.ok(progress.some((x) => x.done > 0 && x.done < x.total), 'it was mid-download');
    assert.equal(existsSync(path.join(dir, 'cloudflared')), false);
    assertNoPartial();
    const t0 = Date.now();
    while (host.aborted === 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    assert.ok(host.aborted > 0, 'the server saw the download cut off');
  });

  it('a 404 download and an unreachable host say so, with the manual steps', async () => {
    host.good();
    host.served.files.delete(LINUX);
    await rejectsWith(install(), 'no-asset', /has no cloudflared-linux-amd64 asset.*To install it yourself/);
    // The release lists the asset, but its download is gone.
    host.good();
    host.served.gone.add(LINUX);
    await rejectsWith(install(), 'http', /Downloading cloudflared-linux-amd64 from 127\.0\.0\.1:\d+ failed: 404.*To install it yourself/);
    const closed = await new Promise<number>((r) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const port = (s.address() as net.AddressInfo).port;
        s.close(() => r(port));
      });
    });
    await rejectsWith(install({ apiBase: `http://127.0.0.1:${closed}` }), 'offline', /Could not reach 127\.0\.0\.1:\d+ \(ECONNREFUSED\).*proxy.*To install it yourself/);
  });

  it('extracts cloudflared from the macOS .tgz and checks the binary inside against the published checksum', async () => {
    const bin = host.good();
    const done = await install({ platform: 'darwin', arch: 'arm64' });
    assert.equal(done.asset, DARWIN);
    assert.deepEqual(readFileSync(done.path), bin);
    assert.match(execFileSync(done.path, ['--version']).toString(), /2026\.9\.0/);
    // A .tgz whose binary differs from the published checksum is refused.
    host.served.files.set(DARWIN, tgzOf(Buffer.from('#!/bin/sh\n')));
    await rejectsWith(install({ platform: 'darwin', arch: 'arm64', dir: path.join(work, 'tgz-bad') }), 'checksum-mismatch', /published/);
    // A .tgz that is not one.
    host.served.files.set(DARWIN, Buffer.from('not gzip'));
    await rejectsWith(install({ platform: 'darwin', arch: 'arm64', dir: path.join(work, 'tgz-bad') }), 'bad-archive', /not a valid \.tgz/);
    assert.throws(() => extractFromTar(Buffer.alloc(1024), 'cloudflared'), /holds no file named cloudflared/);
  });

  it('goes through a CONNECT proxy (with its credentials), and around it for NO_PROXY', async () => {
    host.good();
    const connects: Array<{ target: string; auth: string | undefined }> = [];
    const proxy = http.createServer((_req, res) => res.writeHead(405).end());
    const tunnels = new Set<net.Socket>();
    proxy.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
      tunnels.add(client);
      connects.push({ target: req.url ?? '', auth: req.headers['proxy-authorization'] });
      const [h, p] = (req.url ?? '').split(':');
      const up = net.connect(Number(p), h, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        up.write(head);
        up.pipe(client);
        client.pipe(up);
      });
      up.on('error', () => client.destroy());
      client.on('error', () => up.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
    try {
      const hostPort = new URL(host.base).host;
      // From the environment (HTTP_PROXY: the test host is plain HTTP).
      await install({ env: { HTTP_PROXY: proxyUrl } });
      assert.ok(connects.length >= 3, `release, redirect and download through the proxy (${connects.length})`);
      assert.ok(connects.every((c) => c.target === hostPort && c.auth === undefined));
      // VS Code's http.proxy wins over the environment, and its credentials are sent to the proxy.
      connects.length = 0;
      await install({ dir: path.join(work, 'proxy-2'), proxy: proxyUrl.replace('//', '//me:p%40ss@'), env: { HTTP_PROXY: 'http://127.0.0.1:1' } });
      assert.ok(connects.length >= 3);
      assert.equal(connects[0]?.auth, `Basic ${Buffer.from('me:p@ss').toString('base64')}`);
      // NO_PROXY names the host: straight there.
      connects.length = 0;
      await install({ dir: path.join(work, 'proxy-3'), env: { HTTP_PROXY: proxyUrl, NO_PROXY: 'example.com,127.0.0.1' } });
      assert.equal(connects.length, 0);
      // A proxy that is down: a clear error.
      await rejectsWith(install({ dir: path.join(work, 'proxy-4'), env: { HTTP_PROXY: 'http://127.0.0.1:1' } }), 'offline', /proxy/);
    } finally {
      // Tunnelled sockets leave the server's books: end them by hand.
      for (const t of tunnels) t.destroy();
      proxy.closeAllConnections();
      await new Promise((r) => proxy.close(r));
    }
    assert.equal(proxyFor(new URL('https://api.github.com/x'), { env: { https_proxy: 'proxy:3128' } })?.host, 'proxy:3128');
    assert.equal(proxyFor(new URL('https://api.github.com/x'), { env: { HTTPS_PROXY: 'http://p:1', NO_PROXY: '.github.com' } }), undefined);
    assert.throws(() => proxyFor(new URL('https://api.github.com/x'), { env: { HTTPS_PROXY: 'socks5://u:secret@p:1' } }), (e: Error) => /Only http:\/\//.test(e.message) && !e.message.includes('secret'));
  });

  it('lookup finds the managed copy after an explicit path and before PATH', async () => {
    host.good('2026.9.0');
    const done = await install();
    const onPath = path.join(work, 'path-bin');
    mkdirSync(onPath, { recursive: true });
    writeFileSync(path.join(onPath, 'cloudflared'), fakeBinary('2025.1.0'), { mode: 0o755 });
    const env = { PATH: onPath, HOME: path.join(work, 'nohome') };
    assert.equal((await findCloudflared({ env, managedPath: done.path })).path, done.path);
    assert.equal((await findCloudflared({ env, managedPath: path.join(work, 'none', 'cloudflared') })).path, path.join(onPath, 'cloudflared'));
    assert.equal((await findCloudflared({ env, managedPath: done.path, explicitPath: path.join(onPath, 'cloudflared') })).version, '2025.1.0');
  });

  it('update check: at most weekly, and offers only a newer release', async () => {
    host.good('2026.9.0');
    assert.equal(await newerRelease('2026.9.0', { apiBase: host.base, env: {} }), undefined);
    assert.equal((await newerRelease('2026.8.2', { apiBase: host.base, env: {} }))?.version, '2026.9.0');
    assert.equal(await newerRelease('2026.10.0', { apiBase: host.base, env: {} }), undefined);
    const now = 1_800_000_000_000;
    assert.equal(updateCheckDue(undefined, now), true);
    assert.equal(updateCheckDue(now - 3_600_000, now), false);
    assert.equal(updateCheckDue(now - UPDATE_INTERVAL_MS - 1, now), true);
    assert.equal(updateCheckDue(now + 86_400_000, now), true, 'a timestamp from the future (clock changed) does not block checks forever');
  });

  it('mcp-tunnel install-cloudflared --dir D --version V, end to end', async () => {
    const bin = host.good('2026.9.0');
    const cli = path.join(REPO, 'dist', 'cli.js');
    const target = path.join(work, 'cli-dir');
    const run = (args: string[]) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const child = spawn(process.execPath, [cli, 'install-cloudflared', ...args], {
          env: { PATH: process.env['PATH'] ?? '', HOME: work, MCP_TUNNEL_STATE_DIR: path.join(work, 'cli-state'), MCP_TUNNEL_TEST_RELEASE_BASE: host.base },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        child.on('exit', (code) => resolve({ code, out, err }));
      });
    const ok = await run(['--dir', target, '--version', '2026.9.0']);
    assert.equal(ok.code, 0, ok.err);
    assert.equal(ok.out.trim(), path.join(target, 'cloudflared'));
    assert.match(ok.err, /downloading cloudflared: 0\.0 of 0\.3 MB/);
    assert.match(ok.err, new RegExp(`installed cloudflared 2026\\.9\\.0 \\(cloudflared-linux-amd64, SHA-256 ${sha(bin)} verified\\)`));
    assert.deepEqual(readFileSync(path.join(target, 'cloudflared')), bin);
    // The default folder, which start / mcp search.
    const def = await run([]);
    assert.equal(def.code, 0, def.err);
    assert.equal(def.out.trim(), path.join(work, 'cli-state', 'cloudflared', 'cloudflared'));
    host.served.checksums.clear();
    const refused = await run(['--dir', path.join(work, 'cli-dir-2')]);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /^mcp-tunnel: cloudflared 2026\.9\.0 publishes no SHA-256 checksum/);
    assert.equal(existsSync(path.join(work, 'cli-dir-2', 'cloudflared')), false);
  });
});

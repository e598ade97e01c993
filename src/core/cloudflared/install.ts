/**
 * Installing Cloudflare's own cloudflared release into a folder we manage (VS Code's global
 * storage, or the CLI's `--dir`), verified, and checking for a newer one. Bundled apart
 * (`dist/install.js`) and loaded on first use: nothing of it runs at activation.
 *
 * The release host is GitHub: `GET /repos/cloudflare/cloudflared/releases/latest` (or
 * `/releases/tags/<version>`) lists the assets. The checksums are the ones Cloudflare publishes:
 * its release script (cloudflared's `github_message.py`) writes the release body as
 * `### SHA256 Checksums:` and a fenced block of `<asset name>: <sha256>` lines, where the hash of a
 * `.tgz` (macOS) is the hash of the `cloudflared` **inside** it (`github_release.py` hashes the
 * extracted binary). GitHub also gives each asset a `digest` (`sha256:<hex>` of the file itself).
 * Both are checked when present; with neither, nothing is installed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { gunzipSync } from 'node:zlib';
import { compareVersions } from './log';
import { INSTALL_URL, readVersion } from './locate';

export const RELEASE_API = 'https://api.github.com';
const REPO_PATH = '/repos/cloudflare/cloudflared';
/**
 * For tests only: a local server playing api.github.com (the asset URLs come from its answer).
 * Read from the environment of the process (the editor's or the CLI's), which no workspace sets.
 */
export const TEST_RELEASE_BASE_VARIABLE = 'MCP_TUNNEL_TEST_RELEASE_BASE';

/** The largest asset we accept (today's are 20–40 MB). */
const MAX_ASSET_BYTES = 200 * 1024 * 1024;
const MAX_JSON_BYTES = 4 * 1024 * 1024;
const IDLE_TIMEOUT_MS = 30_000;

export type InstallErrorCode = 'unsupported-platform' | 'offline' | 'http' | 'no-release' | 'no-asset' | 'no-checksum' | 'checksum-mismatch' | 'bad-archive' | 'not-cloudflared' | 'cancelled' | 'write';

/** The install failed; `message` says why and what to do instead. */
export class InstallError extends Error {
  constructor(
    readonly code: InstallErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'InstallError';
  }
}

/** How to do it by hand, appended to errors that a retry will not fix. */
export function manualSteps(platform: NodeJS.Platform = process.platform): string {
  const how = platform === 'darwin' ? '`brew install cloudflared`' : platform === 'win32' ? '`winget install --id Cloudflare.cloudflared`' : 'the .deb/.rpm package or the binary';
  return `To install it yourself: ${how} (${INSTALL_URL}), then set mcpTunnel.cloudflaredPath (CLI: --cloudflared) if it is not on PATH.`;
}

export interface ReleaseAsset {
  name: string;
  url: string;
  size: number;
  /** GitHub's `sha256:<hex>` of the file, when it has one. */
  digest?: string;
}

export interface Release {
  version: string;
  assets: ReleaseAsset[];
  /** Asset name → lowercase SHA-256 hex, from the release body. */
  checksums: Map<string, string>;
}

/** The release asset for this OS and CPU; throws for combinations Cloudflare does not build. */
export function assetNameFor(platform: NodeJS.Platform = process.platform, arch: string = process.arch): string {
  const a = arch === 'x64' ? 'amd64' : arch === 'arm64' ? 'arm64' : arch === 'ia32' ? '386' : arch === 'arm' ? 'arm' : undefined;
  if (platform === 'linux' && a) return `cloudflared-linux-${a}`;
  if (platform === 'darwin' && (a === 'amd64' || a === 'arm64')) return `cloudflared-darwin-${a}.tgz`;
  if (platform === 'win32' && (a === 'amd64' || a === '386')) return `cloudflared-windows-${a}.exe`;
  throw new InstallError('unsupported-platform', `Cloudflare publishes no cloudflared build for ${platform}/${arch}. ${manualSteps(platform)}`);
}

/** Where the managed copy lives inside its folder. */
export function managedBinaryPath(dir: string, platform: NodeJS.Platform = process.platform): string {
  return path.join(dir, platform === 'win32' ? 'cloudflared.exe' : 'cloudflared');
}

/** `<name>: <64 hex>` lines of a release body (Cloudflare's "SHA256 Checksums" block). */
export function parseChecksums(body: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of body.matchAll(/^\s*([A-Za-z0-9._-]+)\s*:\s*([0-9a-fA-F]{64})\s*$/gm)) {
    if (m[1] && m[2]) out.set(m[1], m[2].toLowerCase());
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// HTTP with proxies

export interface NetOptions {
  /** A proxy URL (`http://[user:pass@]host:port`) that wins over the environment (VS Code's `http.proxy`). */
  proxy?: string | undefined;
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
}

/** The proxy for `url` from `proxy` or HTTPS_PROXY / HTTP_PROXY, unless NO_PROXY matches. */
export function proxyFor(url: URL, options: NetOptions = {}): URL | undefined {
  const env = options.env ?? process.env;
  const get = (n: string): string | undefined => env[n] ?? env[n.toLowerCase()];
  const noProxy = (get('NO_PROXY') ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, '');
  const excluded = noProxy.some((p) => {
    if (p === '*') return true;
    const [name, port] = p.split(':');
    if (port && port !== (url.port || (url.protocol === 'https:' ? '443' : '80'))) return false;
    const n = (name ?? '').replace(/^\*?\./, '');
    return host === n || host.endsWith(`.${n}`);
  });
  if (excluded) return undefined;
  const raw = options.proxy?.trim() || (url.protocol === 'https:' ? get('HTTPS_PROXY') : undefined) || get('HTTP_PROXY') || get('ALL_PROXY');
  if (!raw) return undefined;
  let p: URL;
  try {
    p = new URL(raw.includes('://') ? raw : `http://${raw}`);
  } catch {
    throw new InstallError('offline', `The proxy setting "${redactProxy(raw)}" is not a URL. Fix VS Code's http.proxy or HTTPS_PROXY (http://host:port).`);
  }
  if (p.protocol !== 'http:') throw new InstallError('offline', `Only http:// proxies are supported (got ${p.protocol}//${p.host}). Fix VS Code's http.proxy or HTTPS_PROXY.`);
  return p;
}

/** A proxy URL without its password, for messages. */
function redactProxy(raw: string): string {
  return raw.replace(/\/\/[^@/]*@/, '//<credentials>@');
}

/** A socket to `url`'s host, through a CONNECT tunnel when a proxy applies. */
function connectVia(proxy: URL, target: URL, signal: AbortSignal | undefined): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const port = target.port || (target.protocol === 'https:' ? '443' : '80');
    const authority = `${target.hostname.includes(':') ? `[${target.hostname}]` : target.hostname}:${port}`;
    const headers: http.OutgoingHttpHeaders = { host: authority };
    if (proxy.username) headers['proxy-authorization'] = `Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}`;
    const req = http.request({ host: proxy.hostname, port: proxy.port || 80, method: 'CONNECT', path: authority, headers, ...(signal ? { signal } : {}) });
    req.setTimeout(IDLE_TIMEOUT_MS, () => req.destroy(new Error('the proxy did not answer within 30 s')));
    req.once('connect', (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        reject(new InstallError('offline', `The proxy ${proxy.host} refused the connection to ${authority} (${res.statusCode} ${res.statusMessage ?? ''}). Check VS Code's http.proxy or HTTPS_PROXY, and its credentials.`));
        return;
      }
      resolve(socket);
    });
    req.once('error', (err) => reject(err));
    req.end();
  });
}

interface Got {
  res: http.IncomingMessage;
  url: URL;
}

/** GET `url`, following up to 5 redirects (GitHub sends assets from another host). */
async function get(url: URL, options: NetOptions, accept: string, redirects = 5): Promise<Got> {
  const proxy = proxyFor(url, options);
  const mod = url.protocol === 'https:' ? https : http;
  let socket: net.Socket | undefined;
  if (proxy) socket = await connectVia(proxy, url, options.signal);
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = mod.request(url, {
      method: 'GET',
      headers: { accept, 'user-agent': 'mcp-tunnel (cloudflared installer)' },
      ...(options.signal ? { signal: options.signal } : {}),
      ...(socket
        ? {
            agent: false,
            createConnection: () => (url.protocol === 'https:' ? tls.connect({ socket: socket, servername: url.hostname }) : socket),
          }
        : {}),
    });
    req.setTimeout(IDLE_TIMEOUT_MS, () => req.destroy(new Error(`no answer from ${url.host} within 30 s`)));
    req.once('response', resolve);
    req.once('error', reject);
    req.end();
  });
  const status = res.statusCode ?? 0;
  if (status >= 300 && status < 400 && res.headers.location) {
    res.resume();
    if (redirects === 0) throw new InstallError('http', `Too many redirects from ${url.host}.`);
    return get(new URL(res.headers.location, url), options, accept, redirects - 1);
  }
  return { res, url };
}

/** Turns a network error into one that says what to check and how to install by hand. */
function netError(err: unknown, what: string, signal: AbortSignal | undefined): Error {
  if (signal?.aborted) return new InstallError('cancelled', 'The cloudflared install was cancelled; nothing was installed.');
  if (err instanceof InstallError) return err;
  const e = err as NodeJS.ErrnoException;
  return new InstallError('offline', `Could not reach ${what} (${e.code ?? e.message}): offline, blocked, or a proxy is needed (VS Code's http.proxy, or HTTPS_PROXY). ${manualSteps()}`);
}

async function readBody(res: http.IncomingMessage, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > max) throw new InstallError('http', `The answer is larger than ${max} bytes.`);
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

// ---------------------------------------------------------------------------------------------
// Releases

export interface ReleaseOptions extends NetOptions {
  /** A release tag (`2026.9.0`); default: the latest. */
  version?: string;
  /** The API base; default api.github.com, or `MCP_TUNNEL_TEST_RELEASE_BASE` when tests set it. */
  apiBase?: string;
}

function apiBaseOf(options: ReleaseOptions): string {
  return (options.apiBase ?? (options.env ?? process.env)[TEST_RELEASE_BASE_VARIABLE] ?? RELEASE_API).replace(/\/+$/, '');
}

/** The release (latest, or `version`), its assets and the checksums its body publishes. */
export async function resolveRelease(options: ReleaseOptions = {}): Promise<Release> {
  const version = options.version?.trim();
  if (version !== undefined && !/^\d{4}\.\d{1,2}\.\d{1,3}$/.test(version)) {
    throw new InstallError('no-release', `"${version}" is not a cloudflared release version (they look like 2026.9.0).`);
  }
  const url = new URL(`${apiBaseOf(options)}${REPO_PATH}/releases/${version ? `tags/${version}` : 'latest'}`);
  let body: Buffer;
  try {
    const { res } = await get(url, options, 'application/vnd.github+json');
    const status = res.statusCode ?? 0;
    if (status === 404) {
      res.resume();
      throw new InstallError('no-release', version ? `cloudflared has no release ${version} (404 from ${url.host}). See https://github.com/cloudflare/cloudflared/releases for the versions.` : `No cloudflared release found (404 from ${url.host}). ${manualSteps()}`);
    }
    if (status !== 200) {
      res.resume();
      const hint = status === 403 || status === 429 ? ' GitHub limits unauthenticated requests to 60 an hour: try again later.' : '';
      throw new InstallError('http', `${url.host} answered ${status} ${res.statusMessage ?? ''} for the cloudflared release.${hint} ${manualSteps()}`);
    }
    body = await readBody(res, MAX_JSON_BYTES);
  } catch (err) {
    throw netError(err, url.host, options.signal);
  }
  let json: { tag_name?: unknown; body?: unknown; assets?: unknown };
  try {
    json = JSON.parse(body.toString('utf8')) as typeof json;
  } catch {
    throw new InstallError('no-release', `${url.host} sent something other than a release (not JSON). ${manualSteps()}`);
  }
  if (typeof json.tag_name !== 'string' || !Array.isArray(json.assets)) throw new InstallError('no-release', `${url.host} sent a release without a tag or assets. ${manualSteps()}`);
  const assets: ReleaseAsset[] = [];
  for (const a of json.assets as Array<Record<string, unknown>>) {
    if (typeof a['name'] !== 'string' || typeof a['browser_download_url'] !== 'string') continue;
    assets.push({
      name: a['name'],
      url: a['browser_download_url'],
      size: typeof a['size'] === 'number' ? a['size'] : 0,
      ...(typeof a['digest'] === 'string' ? { digest: a['digest'] } : {}),
    });
  }
  return { version: json.tag_name.replace(/^v/, ''), assets, checksums: parseChecksums(typeof json.body === 'string' ? json.body : '') };
}

// ---------------------------------------------------------------------------------------------
// Archives

/** The regular file `name` (basename match) from a tar archive (ustar / GNU long names). */
export function extractFromTar(tar: Buffer, name: string): Buffer {
  let off = 0;
  let longName: string | undefined;
  while (off + 512 <= tar.length) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const field = (start: number, len: number) => header.subarray(start, start + len).toString('latin1').replace(/\0.*$/s, '');
    const size = parseInt(field(124, 12).trim() || '0', 8);
    if (!Number.isFinite(size) || size < 0) throw new InstallError('bad-archive', 'The cloudflared archive is damaged (a bad tar header).');
    const type = field(156, 1) || '0';
    const prefix = field(345, 155);
    const entryName = longName ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100));
    longName = undefined;
    const dataStart = off + 512;
    const data = tar.subarray(dataStart, dataStart + size);
    if (data.length < size) throw new InstallError('bad-archive', 'The cloudflared archive is cut short.');
    if (type === 'L') longName = data.toString('utf8').replace(/\0.*$/s, '');
    else if ((type === '0' || type === '7') && path.posix.basename(entryName) === name) return Buffer.from(data);
    off = dataStart + Math.ceil(size / 512) * 512;
  }
  throw new InstallError('bad-archive', `The cloudflared archive holds no file named ${name}.`);
}

// ---------------------------------------------------------------------------------------------
// Install

export interface InstallProgress {
  done: number;
  /** 0 when the server did not say. */
  total: number;
}

export interface InstallOptions extends ReleaseOptions {
  /** The folder of the managed copy (created, 0700 where the OS has modes). */
  dir: string;
  platform?: NodeJS.Platform;
  arch?: string;
  onProgress?: (p: InstallProgress) => void;
  /** Already resolved (an update offer): skips the release lookup. */
  release?: Release | undefined;
}

export interface Installed {
  path: string;
  version: string;
  asset: string;
  bytes: number;
  sha256: string;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * Downloads, verifies and installs cloudflared into `options.dir`. The file appears there only
 * when it passed every check (written beside it, then renamed): a failure or a cancel leaves the
 * previous copy, or nothing, and no partial file.
 */
export async function installCloudflared(options: InstallOptions): Promise<Installed> {
  const platform = options.platform ?? process.platform;
  const name = assetNameFor(platform, options.arch ?? process.arch);
  const release = options.release ?? (await resolveRelease(options));
  const asset = release.assets.find((a) => a.name === name);
  if (!asset) throw new InstallError('no-asset', `cloudflared ${release.version} has no ${name} asset. ${manualSteps(platform)}`);
  const published = release.checksums.get(name);
  const digest = asset.digest?.toLowerCase().startsWith('sha256:') ? asset.digest.slice(7).toLowerCase() : undefined;
  if (!published && !digest) {
    throw new InstallError('no-checksum', `cloudflared ${release.version} publishes no SHA-256 checksum for ${name}, so it cannot be verified and was not installed. ${manualSteps(platform)}`);
  }

  const signal = options.signal;
  const data = await download(asset, options);
  if (digest && sha256(data) !== digest) {
    throw new InstallError('checksum-mismatch', `The downloaded ${name} does not match its SHA-256 checksum (GitHub's asset digest): it was corrupted or tampered with on the way, and was not installed. Try again; if it persists, a proxy may be altering downloads. ${manualSteps(platform)}`);
  }
  const binary = name.endsWith('.tgz') ? tarBinary(data) : data;
  // Cloudflare's own checksum of a .tgz is that of the binary inside it.
  const actual = sha256(binary);
  if (published && actual !== published) {
    throw new InstallError('checksum-mismatch', `The downloaded ${name} does not match the SHA-256 checksum Cloudflare published for ${release.version} (expected ${published.slice(0, 12)}…, got ${actual.slice(0, 12)}…): it was corrupted or tampered with, and was not installed. Try again; if it persists, a proxy may be altering downloads. ${manualSteps(platform)}`);
  }
  if (signal?.aborted) throw new InstallError('cancelled', 'The cloudflared install was cancelled; nothing was installed.');

  const target = managedBinaryPath(options.dir, platform);
  const tmp = path.join(options.dir, `.cloudflared-${randomBytes(6).toString('hex')}.partial${platform === 'win32' ? '.exe' : ''}`);
  try {
    await fs.mkdir(options.dir, { recursive: true, mode: 0o700 });
    await fs.writeFile(tmp, binary, { mode: 0o755, flag: 'wx' });
    await fs.chmod(tmp, 0o755);
    let version: string;
    try {
      version = await readVersion(tmp, 'the downloaded file');
    } catch (err) {
      throw new InstallError('not-cloudflared', `The downloaded ${name} does not run as cloudflared (${(err as Error).message.split('. ')[0]}), so it was not installed. ${manualSteps(platform)}`);
    }
    if (compareVersions(version, release.version) !== 0) {
      throw new InstallError('not-cloudflared', `The downloaded ${name} says it is cloudflared ${version}, not ${release.version}: not installed. ${manualSteps(platform)}`);
    }
    if (signal?.aborted) throw new InstallError('cancelled', 'The cloudflared install was cancelled; nothing was installed.');
    await fs.rename(tmp, target);
    return { path: target, version, asset: name, bytes: data.length, sha256: actual };
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
    if (err instanceof InstallError) throw err;
    throw new InstallError('write', `Could not write cloudflared to ${options.dir} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}). Check that the folder is writable${platform === 'win32' ? ' and that no cloudflared from it is running' : ''}.`);
  }
}

function tarBinary(tgz: Buffer): Buffer {
  let tar: Buffer;
  try {
    tar = gunzipSync(tgz, { maxOutputLength: MAX_ASSET_BYTES });
  } catch {
    throw new InstallError('bad-archive', 'The cloudflared archive is not a valid .tgz.');
  }
  return extractFromTar(tar, 'cloudflared');
}

/** The asset, in memory (≤ 200 MB), reporting bytes as they come; aborts with the signal. */
async function download(asset: ReleaseAsset, options: InstallOptions): Promise<Buffer> {
  const url = new URL(asset.url);
  try {
    const { res, url: final } = await get(url, options, 'application/octet-stream');
    const status = res.statusCode ?? 0;
    if (status !== 200) {
      res.resume();
      throw new InstallError('http', `Downloading ${asset.name} from ${final.host} failed: ${status} ${res.statusMessage ?? ''}. ${manualSteps(options.platform)}`);
    }
    const total = Number(res.headers['content-length'] ?? asset.size ?? 0) || 0;
    if (total > MAX_ASSET_BYTES) throw new InstallError('http', `${asset.name} is ${total} bytes, more than a cloudflared can be; not downloaded.`);
    const chunks: Buffer[] = [];
    let done = 0;
    options.onProgress?.({ done, total });
    for await (const c of res as AsyncIterable<Buffer>) {
      done += c.length;
      if (done > MAX_ASSET_BYTES) throw new InstallError('http', `${asset.name} is larger than a cloudflared can be; not installed.`);
      chunks.push(c);
      options.onProgress?.({ done, total });
    }
    if (total && done !== total) throw new InstallError('http', `The download of ${asset.name} stopped at ${done} of ${total} bytes. Try again.`);
    return Buffer.concat(chunks);
  } catch (err) {
    throw netError(err, url.host, options.signal);
  }
}

// ---------------------------------------------------------------------------------------------
// Updates

/** A newer release than `current`, or undefined. Throws InstallError when the host cannot be asked. */
export async function newerRelease(current: string, options: ReleaseOptions = {}): Promise<Release | undefined> {
  const rest: ReleaseOptions = { ...options };
  delete rest.version;
  const latest = await resolveRelease(rest);
  return compareVersions(latest.version, current) > 0 ? latest : undefined;
}

/** At most weekly: is a check due, given the last one's time (ms)? */
export const UPDATE_INTERVAL_MS = 7 * 24 * 3_600_000;
export function updateCheckDue(lastCheckedMs: number | undefined, nowMs: number = Date.now()): boolean {
  return lastCheckedMs === undefined || !(nowMs - lastCheckedMs < UPDATE_INTERVAL_MS && nowMs >= lastCheckedMs);
}

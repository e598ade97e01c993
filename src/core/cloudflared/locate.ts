/**
 * Finding the cloudflared binary, reading its version, and building the argv + env of one run.
 * Facts behind every flag: shared/reference/cloudflared.md.
 */
import { execFile } from 'node:child_process';
import { constants as fsConstants, promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compareVersions, parseVersionOutput } from './log';
import { spawnDecision } from '../supervisor/stopPlan';
import { localUrlOf, type CloudflaredInfo, type TunnelTarget } from '../model/tunnelState';

export const INSTALL_URL = 'https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/downloads/';

/** First release whose `tunnel` command knows `--output json` (older ones exit 0 with "Incorrect Usage"). */
export const JSON_OUTPUT_SINCE = '2025.6.1';

export type CloudflaredErrorCode = 'not-found' | 'not-executable' | 'not-cloudflared';

/** cloudflared could not be used; `message` names the fix. */
export class CloudflaredError extends Error {
  constructor(
    readonly code: CloudflaredErrorCode,
    message: string,
    readonly path?: string,
  ) {
    super(message);
    this.name = 'CloudflaredError';
  }
}

/** The file system as the lookup sees it: injectable, so every platform's search is unit-tested anywhere. */
export interface LocateFs {
  isFile(p: string): Promise<boolean>;
  /** POSIX: the execute bit for this user. Windows has none (PATHEXT decides what runs). */
  isExecutable(p: string, platform: NodeJS.Platform): Promise<boolean>;
  /** A directory's entry names, [] when it cannot be read. */
  readdir(p: string): Promise<string[]>;
}

export interface FindOptions {
  /** From the setting / `--cloudflared`; wins over everything else. */
  explicitPath?: string | undefined;
  env?: NodeJS.ProcessEnv | undefined;
  platform?: NodeJS.Platform | undefined;
  /** How the caller names the explicit path in messages, e.g. "the setting `mcpTunnel.cloudflaredPath`". */
  settingName?: string | undefined;
  /** Tests only: another file system, and another `--version` reader. */
  fs?: LocateFs | undefined;
  readVersion?: ((binary: string, settingName: string) => Promise<string>) | undefined;
  /**
   * The copy MCP Tunnel installed (Install cloudflared… / `install-cloudflared`): after the
   * explicit path, before PATH (the user asked for it here; an older distro package stays on PATH).
   */
  managedPath?: string | undefined;
}

/** The path module of `platform` (Windows paths are built with win32 rules on any host). */
function pathOf(platform: NodeJS.Platform): path.PlatformPath {
  return platform === 'win32' ? path.win32 : path.posix;
}

/** A Windows environment variable by any case (`Path`, `PATH`; `LocalAppData`): Windows ignores case. */
function winEnv(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const upper = name.toUpperCase();
  for (const [k, v] of Object.entries(env)) if (k.toUpperCase() === upper && v) return v;
  return undefined;
}

/** Folder of winget's per-package directories, scanned for `Cloudflare.cloudflared_<source id>`. */
const WINGET_PACKAGE_PREFIX = 'cloudflare.cloudflared_';

/**
 * Where installers put cloudflared when it is not on PATH (GUI apps often get a short PATH).
 * Windows: winget's links (user, then machine scope), Program Files (the MSI), and the WinGet
 * package folders, which `searchLocations` expands; macOS / Linux: Homebrew (Apple silicon, Intel,
 * Linuxbrew), /usr/bin, ~/.local/bin, ~/bin.
 */
export function wellKnownLocations(platform: NodeJS.Platform = process.platform, env: NodeJS.ProcessEnv = process.env): string[] {
  if (platform === 'win32') {
    const w = path.win32;
    const pf = winEnv(env, 'ProgramFiles') ?? 'C:\\Program Files';
    const pf86 = winEnv(env, 'ProgramFiles(x86)') ?? 'C:\\Program Files (x86)';
    const profile = winEnv(env, 'USERPROFILE');
    const local = winEnv(env, 'LOCALAPPDATA') ?? (profile ? w.join(profile, 'AppData', 'Local') : undefined);
    return [
      ...(local ? [w.join(local, 'Microsoft', 'WinGet', 'Links', 'cloudflared.exe')] : []),
      w.join(pf, 'WinGet', 'Links', 'cloudflared.exe'),
      w.join(pf, 'cloudflared', 'cloudflared.exe'),
      w.join(pf86, 'cloudflared', 'cloudflared.exe'),
      ...(local ? [w.join(local, 'Microsoft', 'WinGet', 'Packages', 'Cloudflare.cloudflared_*', 'cloudflared.exe')] : []),
      w.join(pf, 'WinGet', 'Packages', 'Cloudflare.cloudflared_*', 'cloudflared.exe'),
    ];
  }
  const home = env['HOME'] ?? os.homedir();
  return [
    '/opt/homebrew/bin/cloudflared',
    '/usr/local/bin/cloudflared',
    '/usr/bin/cloudflared',
    '/home/linuxbrew/.linuxbrew/bin/cloudflared',
    path.posix.join(home, '.local', 'bin', 'cloudflared'),
    path.posix.join(home, 'bin', 'cloudflared'),
  ];
}

/**
 * The executable names Windows tries for `cloudflared`, in PATHEXT's order (only .exe, .com, .cmd
 * and .bat: what CreateProcess or cmd can start), default `.COM;.EXE;.BAT;.CMD`. Elsewhere the bare name.
 */
export function executableNames(platform: NodeJS.Platform, env: NodeJS.ProcessEnv, base = 'cloudflared'): string[] {
  if (platform !== 'win32') return [base];
  const exts = (winEnv(env, 'PATHEXT') ?? '.COM;.EXE;.BAT;.CMD')
    .split(';')
    .map((e) => e.trim().toLowerCase())
    .filter((e) => ['.exe', '.com', '.cmd', '.bat'].includes(e));
  return [...new Set(exts.length ? exts : ['.exe'])].map((e) => base + e);
}

function candidatesOnPath(env: NodeJS.ProcessEnv, platform: NodeJS.Platform): string[] {
  const win = platform === 'win32';
  const raw = win ? winEnv(env, 'PATH') : env['PATH'];
  // Windows PATH entries may be quoted ("C:\\Program Files\\x"); an empty entry is not the cwd here.
  const dirs = (raw ?? '')
    .split(win ? ';' : ':')
    .map((d) => (win ? d.trim().replace(/^"(.*)"$/, '$1') : d))
    .filter(Boolean);
  const names = executableNames(platform, env);
  const p = pathOf(platform);
  return dirs.flatMap((d) => names.map((n) => p.join(d, n)));
}

/**
 * Every place to look, in order: PATH (PATHEXT's names on Windows), then `wellKnownLocations`,
 * with a `Cloudflare.cloudflared_*` folder expanded to the folders that exist there (sorted by
 * name; the part after `_` names winget's source, so any of them is winget's cloudflared).
 */
export async function searchLocations(platform: NodeJS.Platform, env: NodeJS.ProcessEnv, fsys: LocateFs = realFs): Promise<string[]> {
  const out: string[] = [...candidatesOnPath(env, platform)];
  const p = pathOf(platform);
  for (const loc of wellKnownLocations(platform, env)) {
    const star = p.basename(p.dirname(loc));
    if (!star.endsWith('_*')) {
      out.push(loc);
      continue;
    }
    const parent = p.dirname(p.dirname(loc));
    const dirs = (await fsys.readdir(parent)).filter((n) => n.toLowerCase().startsWith(WINGET_PACKAGE_PREFIX)).sort();
    for (const d of dirs) out.push(p.join(parent, d, p.basename(loc)));
  }
  return [...new Set(out)];
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isFile();
  } catch {
    return false;
  }
}

async function isExecutable(p: string, platform: NodeJS.Platform): Promise<boolean> {
  if (platform === 'win32') return true;
  try {
    await fs.access(p, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

const realFs: LocateFs = {
  isFile,
  isExecutable,
  readdir: (p) => fs.readdir(p).catch(() => []),
};

const versionCache = new Map<string, { mtimeMs: number; version: string }>();

/** Runs `<bin> --version` (5 s cap) and parses it; cached per path and modification time. */
export async function readVersion(binary: string, settingName = 'the cloudflared path'): Promise<string> {
  const st = await fs.stat(binary);
  const cached = versionCache.get(binary);
  if (cached && cached.mtimeMs === st.mtimeMs) return cached.version;
  const out = await new Promise<string>((resolve, reject) => {
    // A .cmd / .bat through cmd.exe with its line quoted, never `shell: true` (stopPlan.ts).
    const how = spawnDecision(binary, ['--version'], { platform: process.platform, comspec: process.env['ComSpec'] ?? process.env['COMSPEC'] });
    execFile(how.file, how.args, { timeout: 5000, maxBuffer: 64 * 1024, ...how.options }, (err, stdout, stderr) => {
      if (err && !stdout) reject(new Error(err.message, { cause: err }));
      else resolve(`${stdout}\n${stderr}`);
    });
  }).catch((err: unknown) => {
    throw new CloudflaredError(
      'not-cloudflared',
      `${binary} could not be run (${err instanceof Error ? err.message : String(err)}). Point ${settingName} at the cloudflared executable, or install it: ${INSTALL_URL}`,
      binary,
    );
  });
  const version = parseVersionOutput(out);
  if (!version) {
    throw new CloudflaredError(
      'not-cloudflared',
      `${binary} is not cloudflared ("--version" printed ${JSON.stringify(out.trim().slice(0, 80))}). Point ${settingName} at the cloudflared executable, or install it: ${INSTALL_URL}`,
      binary,
    );
  }
  versionCache.set(binary, { mtimeMs: st.mtimeMs, version });
  return version;
}

/**
 * Finds cloudflared: the explicit path first, then the managed copy, then PATH, then the usual
 * install locations.
 * Throws `CloudflaredError` whose message names the fix.
 */
export async function findCloudflared(options: FindOptions = {}): Promise<CloudflaredInfo> {
  const env = options.env ?? process.env;
  const platform = options.platform ?? process.platform;
  const settingName = options.settingName ?? 'the cloudflared path setting';
  const fsys = options.fs ?? realFs;
  const version = options.readVersion ?? readVersion;
  const p = pathOf(platform);
  const explicit = options.explicitPath?.trim();
  if (explicit) {
    const home = (platform === 'win32' ? winEnv(env, 'USERPROFILE') : env['HOME']) ?? os.homedir();
    const file = explicit.startsWith('~') ? p.join(home, explicit.slice(1)) : explicit;
    if (!p.isAbsolute(file)) {
      throw new CloudflaredError('not-found', `${settingName} must be an absolute path, got "${explicit}".`, file);
    }
    if (!(await fsys.isFile(file))) {
      throw new CloudflaredError('not-found', `cloudflared was not found at ${file} (from ${settingName}). Fix the path, or clear it to search PATH. Install: ${INSTALL_URL}`, file);
    }
    if (!(await fsys.isExecutable(file, platform))) {
      throw new CloudflaredError('not-executable', `${file} is not executable. Run \`chmod +x ${file}\`, or point ${settingName} at another cloudflared.`, file);
    }
    return { path: file, version: await version(file, settingName) };
  }
  if (options.managedPath && (await fsys.isFile(options.managedPath)) && (await fsys.isExecutable(options.managedPath, platform))) {
    return { path: options.managedPath, version: await version(options.managedPath, settingName) };
  }
  let notExecutable: string | undefined;
  for (const candidate of await searchLocations(platform, env, fsys)) {
    if (!(await fsys.isFile(candidate))) continue;
    if (!(await fsys.isExecutable(candidate, platform))) {
      notExecutable ??= candidate;
      continue;
    }
    return { path: candidate, version: await version(candidate, settingName) };
  }
  if (notExecutable) {
    throw new CloudflaredError('not-executable', `Found ${notExecutable}, but it is not executable. Run \`chmod +x ${notExecutable}\`, or set ${settingName}.`, notExecutable);
  }
  const where = platform === 'win32' ? 'not on PATH, nor in the WinGet or Program Files folders' : 'not on PATH, nor in the usual install folders';
  throw new CloudflaredError(
    'not-found',
    `cloudflared is not installed (${where}). Install it (${INSTALL_URL}; macOS: \`brew install cloudflared\`, Windows: \`winget install --id Cloudflare.cloudflared\`) or set ${settingName} to its full path.`,
  );
}

export function supportsJsonOutput(version: string): boolean {
  return compareVersions(version, JSON_OUTPUT_SINCE) >= 0;
}

/** Which Host header the origin sees. */
export type HostHeaderMode = 'origin' | 'public';
export type EdgeProtocol = 'auto' | 'quic' | 'http2';

export interface RunOptions {
  cloudflared: CloudflaredInfo;
  target: TunnelTarget;
  /** A file containing `{}`: stops ~/.cloudflared/config.yml from taking over the tunnel. */
  emptyConfigPath: string;
  /** Passed as `--grace-period`; our own SIGKILL comes a little after it. */
  gracePeriodMs: number;
  /** `origin` (default): the origin sees its own `host:port`, which localhost-checking servers accept. */
  hostHeader?: HostHeaderMode;
  protocol?: EdgeProtocol;
  /** cloudflared's `--loglevel` (default: its own, info). */
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Address the origin is reached at, when it differs from the target (e.g. the access gate). */
  originUrl?: string;
  /**
   * A named tunnel (`tunnel run`) instead of a quick one. The token goes to the child through
   * its environment (`TUNNEL_TOKEN`), never argv: any local user can read a process's argv.
   */
  named?: { token: string };
  baseEnv?: NodeJS.ProcessEnv;
}

export interface RunSpec {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  json: boolean;
}

/**
 * What cloudflared (a Go program) needs from the environment: the system's paths and locale,
 * Windows' system folders (Go's networking needs SystemRoot), proxies and CA bundles. Nothing
 * else: the host's environment holds secrets cloudflared has no use for (our own share secret and
 * MCP token, the named tunnel's token variable, other tools' credentials).
 */
const CHILD_ENV_NAMES = new Set(
  [
    'PATH', 'PATHEXT', 'HOME', 'USER', 'LOGNAME', 'TMPDIR', 'TMP', 'TEMP', 'TZ', 'LANG', 'LANGUAGE',
    'SSL_CERT_FILE', 'SSL_CERT_DIR', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'ALL_PROXY',
    'SYSTEMROOT', 'SYSTEMDRIVE', 'WINDIR', 'COMSPEC', 'USERPROFILE', 'HOMEDRIVE', 'HOMEPATH',
    'APPDATA', 'LOCALAPPDATA', 'PROGRAMDATA', 'PROGRAMFILES', 'PROGRAMFILES(X86)', 'NUMBER_OF_PROCESSORS', 'PROCESSOR_ARCHITECTURE',
    'XDG_CONFIG_HOME', 'XDG_RUNTIME_DIR',
  ],
);

/**
 * Further variables for cloudflared, by name (`NAME`, or `PREFIX*`), comma-separated: for what the
 * list above cannot know (say a proxy's own variables). Never `TUNNEL_*` (they override our flags:
 * TUNNEL_NAME turns it into a named tunnel), `NO_AUTOUPDATE` (ours to set) or `MCP_TUNNEL_*`.
 */
export const CHILD_ENV_PASS_VARIABLE = 'MCP_TUNNEL_CLOUDFLARED_ENV';

/** cloudflared's environment from `base`: only the names it needs (see above), never a secret of ours. */
export function childEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const extra = (base[CHILD_ENV_PASS_VARIABLE] ?? '')
    .split(',')
    .map((n) => n.trim().toUpperCase())
    .filter(Boolean);
  const passes = (upper: string): boolean =>
    CHILD_ENV_NAMES.has(upper) || upper.startsWith('LC_') || extra.some((n) => (n.endsWith('*') ? upper.startsWith(n.slice(0, -1)) : upper === n));
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) {
    const upper = k.toUpperCase();
    if (v === undefined || /^(TUNNEL_|MCP_TUNNEL_)/.test(upper) || upper === 'NO_AUTOUPDATE' || upper === 'CLOUDFLARED_TUNNEL_TOKEN') continue;
    if (passes(upper)) env[k] = v;
  }
  return env;
}

function goDuration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${Math.max(1, Math.round(ms))}ms`;
}

export function buildRun(o: RunOptions): RunSpec {
  const json = supportsJsonOutput(o.cloudflared.version);
  const origin = o.originUrl ?? localUrlOf(o.target);
  const args = [
    'tunnel',
    '--no-autoupdate',
    '--config',
    o.emptyConfigPath,
    '--metrics',
    '127.0.0.1:0',
    '--grace-period',
    goDuration(o.gracePeriodMs),
  ];
  if (json) args.push('--output', 'json');
  if ((o.hostHeader ?? 'origin') === 'origin') {
    const host = o.target.host.includes(':') && !o.target.host.startsWith('[') ? `[${o.target.host}]` : o.target.host;
    args.push('--http-host-header', `${host}:${o.target.port}`);
  }
  if (o.protocol && o.protocol !== 'auto') args.push('--protocol', o.protocol);
  if (o.logLevel && o.logLevel !== 'info') args.push('--loglevel', o.logLevel);
  args.push('--url', origin);
  const env = childEnv(o.baseEnv);
  if (o.named) {
    args.push('run');
    env['TUNNEL_TOKEN'] = o.named.token;
  }
  return { command: o.cloudflared.path, args, env, json };
}

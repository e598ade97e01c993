/**
 * `mcp-tunnel` — the engine outside VS Code.
 *   mcp-tunnel start [--port 8002] [--host localhost] [--path /mcp] [--cloudflared PATH] [--json]
 * runs a tunnel in the foreground; Ctrl+C stops cloudflared cleanly.
 *   mcp-tunnel doctor <mcp_url> [--json] [--connect-to HOST=ADDR:PORT] [--timeout S]
 * checks a public MCP URL as a client on the internet would.
 */
import { parseArgs } from 'node:util';
import { findCloudflared, type EdgeProtocol, type HostHeaderMode } from './core/cloudflared/locate';
import { defaultStateDir } from './core/util/paths';
import { installCloudflared, managedBinaryPath } from './core/cloudflared/install';
import * as path from 'node:path';
import { validateTarget } from './core/model/target';
import { readFile } from 'node:fs/promises';
import { SHARE_SECRET_PATTERN, TunnelController, type NamedTunnel, type ShareSecretStore } from './core/tunnelController';
import { loadMcpModule } from './mcpModule';
import { DEFAULT_TARGET, joinUrl, localUrlOf, snapshotOf, type TunnelState, type TunnelTarget } from './core/model/tunnelState';
import { shareKey, type ShareOrigin } from './core/shares/shares';
import { checkPolicy, type ToolPolicy } from './core/policy/toolPolicy';
import { lifetimeInMinutes } from './core/shares/lifetime';
import type { StdioServerDefinition } from './bridge/child';
import { defaultServerName } from './bridge/serverName';
import { checkReachability, connectToFor, parseConnectTo, redirectedCheck, showUrl, type ConnectTo, type ReachabilityResult } from './core/doctor/reachability';
import { ReachabilityMonitor, type ReachabilityChange } from './core/doctor/monitor';

/** Replaced by esbuild with package.json's version; `tsx src/cli.ts` (no build) says so. */
declare const __MCP_TUNNEL_VERSION__: string | undefined;
const VERSION = typeof __MCP_TUNNEL_VERSION__ === 'string' ? __MCP_TUNNEL_VERSION__ : '0.0.0-dev';

const HELP = `mcp-tunnel ${VERSION} — expose a local MCP server through a Cloudflare quick tunnel

Usage:
  mcp-tunnel start [options]     run a tunnel in the foreground (Ctrl+C stops it)
  mcp-tunnel mcp [options]       serve the tunnel tools to an MCP client over stdio
  mcp-tunnel mcp --http [--port N]
                                 ... or over Streamable HTTP on 127.0.0.1 (prints URL and token)
  mcp-tunnel doctor MCP_URL [options]
                                 check a public MCP URL as a client on the internet would
                                 (exit 0 when it gets an MCP answer, 1 with the cause and fix)
  mcp-tunnel install-cloudflared [--dir D] [--version V]
                                 download Cloudflare's cloudflared release (latest, or V) for
                                 this OS, verify its SHA-256, install it into D (default
                                 <state dir>/cloudflared; start and mcp find it there)

Options for start:
  --stdio -- CMD [ARGS…]
                       share a stdio MCP server (npx -y @modelcontextprotocol/server-filesystem ~)
                       through the built-in bridge: one process per client session.
                       Checked first (initialize, tools/list): nothing is public if it cannot start.
                       Always secret unless --open-stdio confirms --access open for it.
                       May be combined with --port shares
  --name N             with --stdio: the name shown for it (default: the command's)
  --max-sessions N     with --stdio: live client sessions at most (default 16)
  --idle-timeout M     with --stdio: minutes without a request before a session ends (default 30)
  --port N             local port of the server            (default ${DEFAULT_TARGET.port})
                       repeat it to share several servers on one tunnel, each with
                       its own secret; each may be host:port/path (localhost:3000/mcp)
  --host H             local host of the server (loopback) (default ${DEFAULT_TARGET.host})
  --allow-host H       allow --host H although it is not loopback: it becomes
                       reachable from the internet through the tunnel
  --path P             path of the MCP endpoint            (default ${DEFAULT_TARGET.path})
  --cloudflared PATH   the cloudflared executable          (default: PATH, then usual install folders)
  --protocol P         auto | quic | http2 (http2 where UDP 7844 is blocked)
  --host-header M      origin (the server sees its own host:port, default) | public
  --timeout S          seconds to wait for the tunnel       (default 45)
  --access M           secret (default): only requests carrying the share secret
                       (in the printed MCP URL, or as a bearer header) reach the
                       server | open: anyone with the URL. The secret is new for
                       every run unless MCP_TUNNEL_SHARE_SECRET fixes it (the
                       first share's)
  --allow-tool NAME    share only this tool of the server(s) (repeatable): clients see
                       just these in tools/list; a call of another is refused by the
                       tunnel and never reaches the server
  --read-only          share only tools the server marks readOnlyHint (with
                       --allow-tool: both must hold). Either one makes the tunnel read
                       every request whole: bodies over 4 MiB get 413
  --stop-after M       every share stops by itself M minutes after it starts (the
                       last one stopping ends the tunnel and the CLI, exit 0)
  --stop-idle M        ... or after M minutes without a request
  --json               one JSON object per state change instead of text, with
                       the shares (and {"event":"reachability","share_id",…} per check)
  --no-check           do not check each share from the internet side once the tunnel
                       is active (by default: one line per share, the cause and fix
                       when a client would get no answer)
  --inspect            one line per MCP call through the tunnel (time, share, client,
                       country, method and tool, status, duration; with --json: a
                       JSON object per call, bodies left out); secrets never shown
  --named              run a named tunnel (stable hostname) instead of a quick tunnel
  --hostname H         with --named: the hostname routed to the tunnel
  --token-file F       with --named: file holding the tunnel token
                       (else the CLOUDFLARED_TUNNEL_TOKEN variable; never a flag)

Options for mcp:
  --cloudflared, --protocol, --host-header, --timeout as for start
  --access M           the mode of tunnels start_tunnel opens when the agent names none
  --allow-open         let agents ask for access "open" (no share secret, no prompt:
                       this host cannot ask you). Without it such a call is refused,
                       unless --access open made open the default
  --http               serve Streamable HTTP instead of stdio
  --port N             HTTP port on 127.0.0.1 (default: a free one)
  --allow-host H       let agents expose this non-loopback host (repeatable)
  The token for --http comes from MCP_TUNNEL_TOKEN (at least 32 characters), or
  is generated and printed.

Options for doctor:
  MCP_URL              the public MCP URL (https://<host>/<secret>/mcp), or - to read it
                       from standard input (a secret in argv is visible to other local
                       users). A bearer comes from MCP_TUNNEL_BEARER, never a flag
  --json               the result as one JSON object (state, ok, message, fix, status,
                       rtt_ms, first_event_ms, checked_at, host)
  --connect-to H=A:P   connect to A:P instead of resolving H (HTTPS, as curl's
                       --connect-to); H=http://A:P for plain HTTP; H may be * (any host)
  --timeout S          seconds to wait for a new name to resolve (default 60); the
                       answer itself gets at most 15

Environment:
  MCP_TUNNEL_BEARER             doctor: sent as "Authorization: Bearer <it>"
  MCP_TUNNEL_DOCTOR_CONNECT_TO  start: as doctor's --connect-to, for its checks
  -h, --help           this help
  -v, --version        print the version
`;

/** A decimal port (`0x50`, `1e3` and ` 80` are refused), from `min` to 65535. */
function portFlag(value: string | undefined, min: number, fallback: number): number {
  if (value === undefined) return fallback;
  const n = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!(n >= min && n <= 65535)) fail(`--port must be a decimal port number from ${min} to 65535 (got "${value}").`);
  return n;
}

function fail(message: string, code = 2): never {
  process.stderr.write(`mcp-tunnel: ${message}\n`);
  process.exit(code);
}

interface EngineFlags {
  cloudflared?: string | undefined;
  named?: boolean | undefined;
  hostname?: string | undefined;
  'token-file'?: string | undefined;
  protocol?: string | undefined;
  'host-header'?: string | undefined;
  timeout?: string | undefined;
  access?: string | undefined;
}

const ENGINE_OPTIONS = {
  cloudflared: { type: 'string' },
  named: { type: 'boolean' },
  hostname: { type: 'string' },
  'token-file': { type: 'string' },
  protocol: { type: 'string' },
  'host-header': { type: 'string' },
  timeout: { type: 'string' },
  access: { type: 'string' },
} as const;

/**
 * One `--port` of `start`: `8002`, `localhost:8002`, `8002/mcp` or `[::1]:8002/mcp`, validated like
 * an agent's target. A non-loopback host must be named again in --allow-host: a typo or a pasted
 * command line must not publish an intranet address or cloud metadata by itself.
 */
function shareTarget(spec: string | undefined, values: { host?: string | undefined; path?: string | undefined; 'allow-host'?: string[] | undefined }): TunnelTarget {
  let host = values.host;
  let port: string | undefined = spec;
  let path = values.path;
  if (spec !== undefined && !/^\d+$/.test(spec)) {
    const m = /^(?:(\[[^\]]+\]|[^:/[\]]+):)?(\d+)(\/\S*)?$/.exec(spec);
    if (!m) fail(`--port ${JSON.stringify(spec)} is not a port: give a decimal port, or host:port/path (e.g. localhost:8002/mcp).`);
    host = m[1] ?? host;
    port = m[2];
    path = m[3] ?? path;
  }
  if (port !== undefined) portFlag(port, 1, DEFAULT_TARGET.port);
  const v = validateTarget({ port, host, path }, { allowedHosts: values['allow-host'] ?? [], howToAllow: `also pass --allow-host ${host ?? '<host>'}` });
  if (!v.ok) fail(`${v.message}\nRun "mcp-tunnel start --help" for usage.`);
  return v.target;
}

function fixedSecretStore(secret: string, key: string | undefined): ShareSecretStore {
  let owner = key;
  return {
    get: (k) => {
      owner ??= k;
      return Promise.resolve(k === owner ? secret : undefined);
    },
    set: () => Promise.resolve(),
  };
}

/** The controller both commands run on, from the shared flags (exits 2 on a bad flag). */
function makeController(values: EngineFlags, fixedSecretKey?: string): TunnelController {
  const protocol = values.protocol ?? 'auto';
  if (!['auto', 'quic', 'http2'].includes(protocol)) fail(`--protocol must be auto, quic or http2 (got "${protocol}").`);
  const hostHeader = values['host-header'] ?? 'origin';
  if (!['origin', 'public'].includes(hostHeader)) fail(`--host-header must be origin or public (got "${hostHeader}").`);
  const timeoutS = values.timeout !== undefined ? Number(values.timeout) : 45;
  if (!Number.isFinite(timeoutS) || timeoutS < 1 || timeoutS > 600) fail(`--timeout must be a number of seconds between 1 and 600 (got "${values.timeout}").`);
  const access = values.access ?? 'secret';
  if (access !== 'secret' && access !== 'open') fail(`--access must be secret (only requests with the share secret get in) or open (anyone with the URL) (got "${access}").`);
  // A fixed share secret (e.g. for a named tunnel's stable URL) from the environment, never argv.
  const fixedSecret = process.env['MCP_TUNNEL_SHARE_SECRET'];
  if (fixedSecret !== undefined && !SHARE_SECRET_PATTERN.test(fixedSecret)) {
    fail('MCP_TUNNEL_SHARE_SECRET must be 32 to 512 characters from A-Z a-z 0-9 - _ (e.g. the output of `openssl rand -base64 32 | tr "+/" "-_" | tr -d "="`).');
  }
  return new TunnelController({
    access,
    // The fixed secret is one share's: the first `--port` of `start`, the first target of `mcp`.
    ...(fixedSecret ? { shareSecretStore: fixedSecretStore(fixedSecret, fixedSecretKey) } : {}),
    findCloudflared: () => findCloudflared({ ...(values.cloudflared ? { explicitPath: values.cloudflared } : {}), settingName: '--cloudflared', managedPath: managedBinaryPath(managedDir()) }),
    stateDir: defaultStateDir(),
    startTimeoutMs: timeoutS * 1000,
    hostHeader: hostHeader as HostHeaderMode,
    protocol: protocol as EdgeProtocol,
    ...(values.named ? { named: namedTunnel(values) } : {}),
  });
}

/** Named tunnel: the token from CLOUDFLARED_TUNNEL_TOKEN or --token-file (never a flag: argv is public). */
function namedTunnel(values: EngineFlags): NamedTunnel {
  if (!values.hostname) fail('--named needs --hostname (the hostname you routed to the tunnel in Cloudflare).');
  const file = values['token-file'];
  return {
    hostname: values.hostname,
    token: async () => (file ? (await readFile(file, 'utf8')).trim() : process.env['CLOUDFLARED_TUNNEL_TOKEN']),
  };
}

async function mcp(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...ENGINE_OPTIONS,
      http: { type: 'boolean', default: false },
      port: { type: 'string' },
      'allow-host': { type: 'string', multiple: true },
      'allow-open': { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  const controller = makeController(values);
  await controller.reapOrphans();
  const mod = loadMcpModule();
  // This host cannot ask the user: an agent's "open" is allowed only if the user said so up front.
  const openAllowed = values['allow-open'] || values.access === 'open';
  // get_tunnel_status and tunnel://status say whether the public URL answers from the internet.
  const reachability = new ReachabilityMonitor(controller, { check: redirectedCheck(() => connectToRule(process.env['MCP_TUNNEL_DOCTOR_CONNECT_TO'], 'MCP_TUNNEL_DOCTOR_CONNECT_TO')) });
  const serverOptions = {
    version: VERSION,
    reachability,
    allowedHosts: values['allow-host'] ?? [],
    howToAllowHost: 'restart `mcp-tunnel mcp` with --allow-host <host>',
    openAccess: openAllowed ? ('allow' as const) : ('refuse' as const),
    openRefusedFix: 'restart `mcp-tunnel mcp` with --allow-open',
  };
  const done = new Promise<void>((resolve) => {
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(sig, () => resolve());
  });
  // stdout carries JSON-RPC in stdio mode: everything human goes to stderr.
  controller.onDidLog((e) => e.level !== 'debug' && e.source === 'tunnel' && process.stderr.write(`[mcp-tunnel] ${e.message}\n`));
  if (values.http) {
    const port = portFlag(values.port, 0, 0);
    const token = process.env['MCP_TUNNEL_TOKEN'];
    if (token !== undefined && !/^[\x21-\x7e]{32,}$/.test(token)) {
      fail('MCP_TUNNEL_TOKEN must be at least 32 visible ASCII characters (it guards a tool that makes local servers public), e.g. the output of `openssl rand -base64 32`.');
    }
    const host = await mod.startHttpHost(controller, {
      port,
      ...(token ? { token } : {}),
      serverOptions,
    });
    process.stdout.write(`MCP endpoint: ${host.url}\n`);
    if (!process.env['MCP_TUNNEL_TOKEN']) process.stdout.write(`Token:        ${host.token}\n(send it as "Authorization: Bearer <token>")\n`);
    await done;
    await host.close();
  } else {
    const server = await mod.serveStdio(controller, serverOptions);
    await Promise.race([server.closed, done]);
    await server.close();
  }
  reachability.dispose();
  await controller.shutdown(6000);
  controller.dispose();
  return 0;
}

async function start(argvAll: string[]): Promise<number> {
  // Everything after `--` is the stdio server's command line, untouched.
  const dd = argvAll.indexOf('--');
  const argv = dd < 0 ? argvAll : argvAll.slice(0, dd);
  const stdioCommand = dd < 0 ? [] : argvAll.slice(dd + 1);
  const { values } = parseArgs({
    args: argv,
    options: {
      ...ENGINE_OPTIONS,
      port: { type: 'string', multiple: true },
      host: { type: 'string' },
      path: { type: 'string' },
      'allow-host': { type: 'string', multiple: true },
      json: { type: 'boolean', default: false },
      stdio: { type: 'boolean', default: false },
      name: { type: 'string' },
      'max-sessions': { type: 'string' },
      'idle-timeout': { type: 'string' },
      'open-stdio': { type: 'boolean', default: false },
      inspect: { type: 'boolean', default: false },
      'allow-tool': { type: 'string', multiple: true },
      'read-only': { type: 'boolean', default: false },
      'stop-after': { type: 'string' },
      'stop-idle': { type: 'string' },
      'no-check': { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  const doctorRule = values['no-check'] ? undefined : connectToRule(process.env['MCP_TUNNEL_DOCTOR_CONNECT_TO'], 'MCP_TUNNEL_DOCTOR_CONNECT_TO');
  const stdio = stdioShare(values, stdioCommand);
  let policy: ToolPolicy | undefined;
  try {
    policy = checkPolicy({ ...(values['allow-tool'] ? { tools: values['allow-tool'] } : {}), readOnly: values['read-only'] });
  } catch (err) {
    fail(`--allow-tool: ${(err as Error).message}`);
  }
  const minutes = (flag: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!/^\d+(\.\d+)?$/.test(v) || !(n > 0) || n > 43_200) fail(`${flag} must be a number of minutes from 0 to 43200 (got "${v}").`);
    return n;
  };
  const lifetime = lifetimeInMinutes(minutes('--stop-after', values['stop-after']), minutes('--stop-idle', values['stop-idle']));
  const shareOptions = { ...(policy ? { policy } : {}), ...(lifetime ? { lifetime } : {}) };
  // One share per --port (each may be `port`, `host:port`, `port/path` or `host:port/path`;
  // --host and --path fill in what a plain one leaves out). With --stdio alone, no port share.
  const targets = (values.port ?? (stdio ? [] : [undefined])).map((spec) => shareTarget(spec, values));
  const [portTarget, ...morePortTargets] = targets;
  const json = values.json;
  const controller = makeController(values, portTarget ? shareKey(portTarget) : undefined);
  controller.updateOptions({ metricsIntervalMs: 0 });
  // A closed stdout (`mcp-tunnel start --json | head -1`) is a reason to stop, not to crash: an
  // unhandled EPIPE would kill the CLI and leave cloudflared's files behind.
  let stdoutOpen = true;
  const out = (line: string): void => {
    if (stdoutOpen) process.stdout.write(`${line}\n`);
  };
  process.stderr.on('error', () => undefined);
  const reaped = await controller.reapOrphans();
  for (const r of reaped) if (r.outcome === 'ended' && !json) process.stderr.write(`Ended an orphaned cloudflared (PID ${r.pid}) from an earlier run.\n`);

  // The stdio share first: its server is checked before anything is public.
  let stdioStart: { target: TunnelTarget; origin: ShareOrigin } | undefined;
  if (stdio) {
    const { bridge: b } = loadMcpModule();
    const stateDir = defaultStateDir();
    await b.reapChildren(stateDir, (m) => !json && process.stderr.write(`${m}\n`));
    const bridge = await b.startStdioBridge({
      server: stdio.server,
      stateDir,
      maxSessions: stdio.maxSessions,
      idleTimeoutMs: stdio.idleMs,
      log: (level, m) => {
        if (!json && level !== 'debug') process.stderr.write(`${m}\n`);
      },
    });
    if (!json) process.stderr.write(`Checking ${stdio.server.name} (${bridge.commandLine})…\n`);
    const check = await bridge.check();
    if (!check.ok) {
      await bridge.close();
      process.stderr.write(`mcp-tunnel: ${check.message ?? 'the stdio server did not start'}\nNothing was shared.\n`);
      controller.dispose();
      return 1;
    }
    if (!json) process.stderr.write(`${stdio.server.name}: ${check.tools ?? 0} tools${check.serverName ? ` (${check.serverName})` : ''}.\n`);
    stdioStart = { target: { host: '127.0.0.1', port: bridge.port, path: bridge.path, access: stdio.access }, origin: b.bridgeOrigin(bridge, check) };
  }
  const target = stdioStart?.target ?? portTarget;
  const moreTargets = stdioStart ? targets : morePortTargets;
  if (!target) fail('No target to share.');
  const listAll = moreTargets.length > 0;

  let exitCode: number | undefined;
  let finish!: (code: number) => void;
  const finished = new Promise<number>((r) => (finish = r));
  let shown = '';
  const show = (s: TunnelState) => {
    // A state can repeat with details the text does not show (the metrics address): say it once.
    const key = `${s.status} ${'url' in s ? (s.url ?? '') : ''} ${'pid' in s ? (s.pid ?? '') : ''}`;
    if (!json && key === shown) return;
    shown = key;
    if (json) {
      out(JSON.stringify({ ...snapshotOf(s, Date.now(), controller.lastError), shares: controller.listShares() }));
      return;
    }
    switch (s.status) {
      case 'starting':
        out(s.pid ? `Starting cloudflared (PID ${s.pid}) for ${joinUrl(localUrlOf(s.target), s.target.path)}…` : `Looking for cloudflared…`);
        break;
      case 'connecting':
        out(`cloudflared (PID ${s.pid}) got ${s.url}; waiting for Cloudflare's edge to connect…`);
        break;
      case 'active': {
        const snap = snapshotOf(s);
        out(`Tunnel active (edge ${s.connections.map((c) => c.location ?? '?').join(', ')}).`);
        out(`  Public URL:      ${s.url}`);
        out(`  Public MCP URL:  ${snap.mcp_url ?? ''}`);
        if (s.sharePath) {
          out(`  Access:          secret. The MCP URL above carries the share secret; clients that send`);
          out(`                   headers may use ${joinUrl(s.url, s.target.path)} with "Authorization: Bearer ${s.sharePath.slice(1)}".`);
          out(`                   Anything else gets 401 and never reaches your server.`);
        } else {
          out(`  Access:          OPEN: anyone who learns the URL reaches your server (--access secret requires a share secret).`);
        }
        const primary = controller.listShares()[0];
        if (primary?.command) out(`  Runs:            ${primary.command} (stdio${primary.detail ? `: ${primary.detail}` : ''}; one process per client session)`);
        else out(`  Local:           ${joinUrl(localUrlOf(s.target), s.target.path)}`);
        if (primary?.policy) out(`  Tools:           ${primary.policy.summary} only; the tunnel refuses calls of any other`);
        if (primary?.stops_at) out(`  Stops:           by itself ${primary.stop_reason === 'idle' ? `after ${primary.idle_stop_minutes} min without requests` : `at ${new Date(primary.stops_at).toLocaleTimeString()}`}`);
        out(`Press Ctrl+C to stop.`);
        break;
      }
      case 'reconnecting':
        out(`Edge connection lost (${s.reason}); cloudflared is reconnecting…`);
        break;
      case 'stopping':
        out('Stopping…');
        break;
      case 'stopped':
        out('Stopped.');
        break;
      case 'failed':
        process.stderr.write(`Tunnel failed: ${s.error.message}\n`);
        break;
      case 'restarting':
        process.stderr.write(`Tunnel failed: ${s.error.message}\n`);
        process.stderr.write(`Restarting in ${Math.max(0, Math.round((s.restartAt - Date.now()) / 1000))} s (attempt ${s.restartAttempt}); the public URL will change.\n`);
        break;
    }
  };
  if (values.inspect) {
    const names = new Map<string, string>();
    controller.onDidChangeShares(() => {
      for (const sh of controller.listShares()) names.set(sh.id, sh.name);
    });
    controller.recorder?.onDidRecord((c) => {
      const { request_body: _q, response_body: _r, ...rest } = c;
      if (json) {
        out(JSON.stringify({ activity: { ...rest, at: new Date(c.at).toISOString() } }));
        return;
      }
      const what = [c.method ?? c.http_method, c.name].filter(Boolean).join(' ');
      const outcome = c.error_code !== null ? `error ${c.error_code}` : c.tool_error ? 'tool error' : String(c.status);
      const who = [c.client ?? 'unknown client', c.country].filter(Boolean).join(' from ');
      out(`${new Date(c.at).toLocaleTimeString()}  ${names.get(c.share_id) ?? c.share_id}  ${who}  ${what}  ${outcome}  ${c.duration_ms} ms${c.header_mismatch ? '  (Mcp-Method/Mcp-Name headers disagree with the body)' : ''}`);
    });
  }
  controller.onDidChangeState((s) => {
    show(s);
    // A scheduled automatic restart keeps the CLI running; a final failure ends it.
    if (s.status === 'failed') {
      exitCode ??= 1;
      finish(1);
    }
    if (s.status === 'stopped') finish(exitCode ?? 0);
  });
  const onSignal = (sig: NodeJS.Signals) => {
    if (exitCode === undefined) exitCode = 0;
    if (!json) process.stderr.write(`\n${sig}: stopping cloudflared…\n`);
    void controller.shutdown(controller.state.status === 'stopping' ? 0 : 6000).then(() => finish(exitCode ?? 0));
  };
  controller.onDidStopShareByItself((e) => {
    if (!json) out(e.message);
  });
  controller.onDidRestart((e) => {
    if (!json && e.url && e.url !== e.previousUrl) out(`The tunnel restarted with a NEW URL: ${e.url} (was ${e.previousUrl ?? 'none'}).`);
  });
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (!stdoutOpen) return;
    stdoutOpen = false;
    process.stderr.write(`mcp-tunnel: standard output closed (${err.code ?? err.message}); stopping the tunnel.\n`);
    if (exitCode === undefined) exitCode = 0;
    void controller.shutdown(controller.state.status === 'stopping' ? 0 : 6000).then(() => finish(exitCode ?? 0));
  });
  // Once active, each share is checked from the internet side (not before: a name probed before it
  // exists gets its miss cached by resolvers).
  const reachability = values['no-check'] ? undefined : new ReachabilityMonitor(controller, { check: redirectedCheck(() => doctorRule) });
  reachability?.onDidChange(reachabilityReporter(controller, json, out));
  const settled = await controller.start(target, { ...(stdioStart ? { origin: stdioStart.origin } : {}), ...shareOptions });
  if (settled.status === 'connecting' && !json) out(`(${settled.url} is issued but not connected yet; still trying. Ctrl+C to stop.)`);
  if (listAll && (settled.status === 'active' || settled.status === 'connecting')) {
    for (const t of moreTargets) await controller.start(t, shareOptions).catch((err: unknown) => process.stderr.write(`Could not share ${joinUrl(localUrlOf(t), t.path)}: ${(err as Error).message}\n`));
    const shares = controller.listShares();
    if (json) out(JSON.stringify({ ...snapshotOf(controller.state, Date.now(), controller.lastError), shares }));
    else {
      out(`Shares on this tunnel (${shares.length}; each URL carries its own secret, or none when open):`);
      for (const sh of shares) {
        out(`  ${(sh.kind === 'stdio' ? `${sh.name} (stdio)` : sh.name).padEnd(28)} ${sh.mcp_url ?? '(no URL yet)'}${sh.access === 'open' ? '   OPEN' : ''}`);
        if (sh.command) out(`  ${''.padEnd(28)} runs: ${sh.command}${sh.detail ? ` · ${sh.detail}` : ''}`);
        if (sh.problem) out(`  ${''.padEnd(28)} ${sh.problem}`);
      }
    }
  }
  const code = await finished;
  reachability?.dispose();
  controller.dispose();
  return code;
}

/** A `--connect-to` / MCP_TUNNEL_DOCTOR_CONNECT_TO rule, or undefined when not given (exits 2 when malformed). */
function connectToRule(spec: string | undefined, name: string): { host: string; to: ConnectTo } | undefined {
  if (spec === undefined || spec === '') return undefined;
  try {
    return parseConnectTo(spec);
  } catch (err) {
    return fail(`${name}: ${(err as Error).message}.`);
  }
}

/** One line per share checked (a JSON event with --json); a DNS wait is said once, on stderr. */
function reachabilityReporter(controller: TunnelController, json: boolean, out: (line: string) => void): (e: ReachabilityChange) => void {
  const waited = new Set<string>();
  return ({ shareId, result }) => {
    if (!result || result.state === 'checking') return;
    const name = controller.listShares().find((s) => s.id === shareId)?.name ?? shareId;
    if (result.state === 'waiting-dns') {
      if (!json && !waited.has(shareId)) process.stderr.write(`${name}: ${result.message}\n`);
      waited.add(shareId);
      return;
    }
    waited.delete(shareId);
    if (json) out(JSON.stringify({ event: 'reachability', share_id: shareId, ...result }));
    else out(`${name}: ${outcomeText(result, ' ')}`);
  };
}

/** The message, and the fix after `glue` when there is one. */
function outcomeText(r: ReachabilityResult, glue: string): string {
  return r.fix ? `${r.message}${glue}Fix: ${r.fix}` : r.message;
}

/**
 * `mcp-tunnel doctor MCP_URL`: one check of a public MCP URL as a client on the internet would
 * make; progress on stderr, the outcome on stdout. Exit 0 when it gets an MCP answer, 1 when not.
 */
async function doctor(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { json: { type: 'boolean', default: false }, 'connect-to': { type: 'string' }, timeout: { type: 'string' } },
    strict: true,
    allowPositionals: true,
  });
  if (positionals.length !== 1) fail('doctor needs one MCP URL: mcp-tunnel doctor https://<host>/<secret>/mcp (or - to read it from standard input).');
  const mcpUrl = positionals[0] === '-' ? await firstLineOfStdin() : (positionals[0] ?? '');
  const timeoutS = values.timeout !== undefined ? Number(values.timeout) : 60;
  if (!(timeoutS >= 1 && timeoutS <= 600)) fail(`--timeout must be a number of seconds between 1 and 600 (got "${values.timeout}").`);
  let url: URL;
  try {
    url = new URL(mcpUrl);
  } catch {
    return fail('doctor: that is not a URL (https://<host>/<secret>/mcp).'); // not echoed: it may hold a secret
  }
  const rule = connectToRule(values['connect-to'], '--connect-to');
  const connectTo = connectToFor(rule, mcpUrl);
  if (rule && !connectTo) fail(`--connect-to names ${rule.host}, but the URL's host is ${url.hostname}.`);
  const bearer = process.env['MCP_TUNNEL_BEARER'];
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort(new Error('interrupted')));
  let said = '';
  let result: ReachabilityResult;
  try {
    result = await checkReachability(
      { mcpUrl, ...(bearer ? { headers: { authorization: `Bearer ${bearer}` } } : {}), signal: abort.signal },
      { ...(connectTo ? { connectTo } : {}), dnsDeadlineMs: timeoutS * 1000, timeoutMs: Math.min(timeoutS, 15) * 1000 },
      (p) => {
        if (p.message !== said) process.stderr.write(`${p.message}\n`);
        said = p.message;
      },
    );
  } catch (err) {
    if (abort.signal.aborted) {
      process.stderr.write(`Check of ${showUrl(url)} interrupted.\n`);
      return 130;
    }
    return fail((err as Error).message, 1);
  }
  process.stdout.write(values.json ? `${JSON.stringify(result)}\n` : `${outcomeText(result, '\n')}\n`);
  return result.ok ? 0 : 1;
}

/** The first non-empty line of standard input (a URL piped in, kept out of argv). */
async function firstLineOfStdin(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin) {
    text += String(chunk);
    if (/\S\s*\n/.test(text)) break;
  }
  return text.split(/\r?\n/).map((l) => l.trim()).find(Boolean) ?? '';
}

interface StdioFlags {
  stdio?: boolean | undefined;
  name?: string | undefined;
  'max-sessions'?: string | undefined;
  'idle-timeout'?: string | undefined;
  'open-stdio'?: boolean | undefined;
  access?: string | undefined;
}

/** The stdio share `start --stdio -- cmd args` asks for (exits 2 on a bad flag), or undefined. */
function stdioShare(values: StdioFlags, command: string[]): { server: StdioServerDefinition; maxSessions: number; idleMs: number; access: 'secret' | 'open' } | undefined {
  if (!values.stdio) {
    if (command.length > 0) fail('Arguments after -- are a stdio server\'s command line: add --stdio (mcp-tunnel start --stdio -- npx -y <server>).');
    for (const f of ['name', 'max-sessions', 'idle-timeout', 'open-stdio'] as const) if (values[f]) fail(`--${f} goes with --stdio.`);
    return undefined;
  }
  const [cmd, ...args] = command;
  if (!cmd) fail('--stdio needs the server\'s command line after --, e.g. mcp-tunnel start --stdio -- npx -y @modelcontextprotocol/server-everything');
  const maxSessions = values['max-sessions'] !== undefined ? Number(values['max-sessions']) : 16;
  if (!Number.isInteger(maxSessions) || maxSessions < 1 || maxSessions > 256) fail(`--max-sessions must be a whole number from 1 to 256 (got "${values['max-sessions']}").`);
  const idleMin = values['idle-timeout'] !== undefined ? Number(values['idle-timeout']) : 30;
  if (!Number.isFinite(idleMin) || idleMin <= 0 || idleMin > 24 * 60) fail(`--idle-timeout must be minutes, more than 0 and at most 1440 (got "${values['idle-timeout']}").`);
  // A stdio server can read files and run commands: open needs its own confirmation.
  if (values.access === 'open' && !values['open-stdio']) {
    fail('--access open would make the stdio server reachable by anyone with the URL, and it can read files or run commands. Add --open-stdio to confirm, or leave --access secret.');
  }
  const name = values.name ?? defaultServerName(cmd, args);
  return { server: { name, command: cmd, args }, maxSessions, idleMs: idleMin * 60_000, access: values.access === 'open' ? 'open' : 'secret' };
}

/** Where `install-cloudflared` puts cloudflared by default, and where `start` / `mcp` look for it. */
function managedDir(): string {
  return path.join(defaultStateDir(), 'cloudflared');
}

/** `mcp-tunnel install-cloudflared [--dir D] [--version V]`: progress on stderr, the path on stdout. */
async function installCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { dir: { type: 'string' }, version: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, strict: true });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const dir = path.resolve(values.dir ?? managedDir());
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  let lastMb = -1;
  try {
    const done = await installCloudflared({
      dir,
      signal: ac.signal,
      ...(values.version ? { version: values.version } : {}),
      onProgress: ({ done, total }) => {
        const mb = Math.floor(done / 1e6);
        if (mb === lastMb && done !== total) return;
        lastMb = mb;
        process.stderr.write(`downloading cloudflared: ${(done / 1e6).toFixed(1)}${total ? ` of ${(total / 1e6).toFixed(1)}` : ''} MB\n`);
      },
    });
    process.stderr.write(`installed cloudflared ${done.version} (${done.asset}, SHA-256 ${done.sha256} verified)\n`);
    process.stdout.write(`${done.path}\n`);
    return 0;
  } catch (err) {
    return fail((err as Error).message, 1);
  }
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(HELP);
      return cmd === undefined ? 2 : 0;
    case '-v':
    case '--version':
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case 'install-cloudflared':
      return installCommand(rest);
    case 'start':
    case 'mcp':
    case 'doctor':
      if (rest.includes('--help') || rest.includes('-h')) {
        process.stdout.write(HELP);
        return 0;
      }
      return cmd === 'start' ? start(rest) : cmd === 'mcp' ? mcp(rest) : doctor(rest);
    default:
      return fail(`unknown command "${cmd}".\n${HELP}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    // Not process.exit() at once: the controller deletes the run record (and its config file) of
    // the cloudflared it just stopped asynchronously, and an immediate exit cut that off, leaving
    // a stale run-*.json behind after every clean stop. Let pending I/O finish; the unref'd timer
    // still ends the process if some handle would keep it alive.
    process.exitCode = code;
    setTimeout(() => process.exit(code), 2000).unref();
  },
  // parseArgs' own errors (unknown option, missing value) are usage errors: exit 2.
  (err: unknown) => fail(err instanceof Error ? err.message : String(err), (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? 2 : 1),
);

/** Setting keys in one place; `readConfig()` sanitizes and falls back to defaults with a warning. */
import * as vscode from 'vscode';
import type { EdgeProtocol, HostHeaderMode } from '../core/cloudflared/locate';
import { validateTarget } from '../core/model/target';
import { ACCESS_MODES, DEFAULT_TARGET, type AccessMode, type TunnelTarget } from '../core/model/tunnelState';

export const SECTION = 'mcpTunnel';

/** The refusal's fix when a target names a host that is neither loopback nor allowed. */
export const ALLOW_HOST_HINT = `add the host to the user setting ${SECTION}.allowedHosts`;

export interface TunnelConfig {
  cloudflaredPath: string;
  /** The default target, its access mode included (`mcpTunnel.access`). */
  target: TunnelTarget & { access: AccessMode };
  startTimeoutMs: number;
  stopGraceMs: number;
  hostHeader: HostHeaderMode;
  protocol: EdgeProtocol;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  mcpConfirmStart: boolean;
  /** Offer newer releases of the managed cloudflared, at most weekly (`cloudflared.checkForUpdates`). */
  checkCloudflaredUpdates: boolean;
  /** Check each share through its public URL once it is active (`checkReachability`). */
  checkReachability: boolean;
  autoRestart: boolean;
  tunnelMode: 'quick' | 'named';
  namedHostname: string;
  /** Non-loopback hosts a tunnel may expose, from any source (`allowedHosts`, plus the old `mcp.allowedHosts`). */
  allowedHosts: string[];
  /** The inspector: calls kept per share, whether bodies are kept (read at activation), new-client notices. */
  inspector: { maxEntries: number; captureBodies: boolean; notifyNewClients: boolean };
  /** "Share for…" by default (0: off): a new share stops after so many minutes, or minutes without a request. */
  autoStop: { afterMinutes: number; idleMinutes: number };
}

export interface ConfigProblem {
  setting: string;
  message: string;
}

function intIn(v: unknown, min: number, max: number): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : undefined;
}

function oneOf<T extends string>(v: unknown, allowed: readonly T[]): T | undefined {
  return typeof v === 'string' && (allowed as readonly string[]).includes(v) ? (v as T) : undefined;
}

/** Reads and sanitizes every setting. Invalid values fall back to the default and are listed in `problems`. */
export function readConfig(cfg: vscode.WorkspaceConfiguration = vscode.workspace.getConfiguration(SECTION)): { config: TunnelConfig; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const bad = (key: string, value: unknown, expected: string, fallback: unknown) =>
    problems.push({ setting: `${SECTION}.${key}`, message: vscode.l10n.t('{0} is {1}; it must be {2}. Using {3}.', `\`${SECTION}.${key}\``, JSON.stringify(value), expected, JSON.stringify(fallback)) });

  const pick = <T>(key: string, parse: (v: unknown) => T | undefined, fallback: T, expected: string): T => {
    const v = cfg.get<unknown>(key);
    if (v === undefined || v === null) return fallback;
    const parsed = parse(v);
    if (parsed === undefined) {
      bad(key, v, expected, fallback);
      return fallback;
    }
    return parsed;
  };

  // Machine-scoped in the manifest: VS Code ignores a workspace's value for it.
  const cloudflaredPath = pick('cloudflaredPath', (v) => (typeof v === 'string' ? v.trim() : undefined), '', 'a path to the cloudflared executable');

  const port = pick('defaultPort', (v) => intIn(v, 1, 65535), DEFAULT_TARGET.port, 'a whole number from 1 to 65535');
  const host = pick('defaultHost', (v) => (typeof v === 'string' && v.trim() ? v.trim() : undefined), DEFAULT_TARGET.host, 'a host name');
  const pathSetting = pick('defaultPath', (v) => (typeof v === 'string' ? v : undefined), DEFAULT_TARGET.path, 'a path starting with /');
  // Machine-scoped in the manifest, like every setting that changes what is exposed or where:
  // VS Code ignores a workspace's value for them, so a cloned repository cannot redirect a tunnel.
  const hostList = (v: unknown) => (Array.isArray(v) && v.every((h) => typeof h === 'string') ? v.map((h) => h.trim()).filter(Boolean) : undefined);
  const allowedHosts = [...new Set([...pick('allowedHosts', hostList, [] as string[], 'a list of host names'), ...pick('mcp.allowedHosts', hostList, [] as string[], 'a list of host names')])];

  // Machine-scoped in the manifest: a workspace cannot turn the gate off.
  const access = pick('access', (v) => oneOf(v, ACCESS_MODES), 'secret', '"secret" or "open"');

  let target: TunnelTarget = { host, port, path: pathSetting };
  // The same rule as for agents and command arguments: loopback, or a host in `allowedHosts`.
  const checked = validateTarget(target, { allowedHosts, howToAllow: ALLOW_HOST_HINT });
  if (!checked.ok) {
    const setting = `${SECTION}.${checked.field === 'host' ? 'defaultHost' : checked.field === 'port' ? 'defaultPort' : 'defaultPath'}`;
    problems.push({ setting, message: vscode.l10n.t('The default target is invalid: {0} Using {1}.', checked.message, `${DEFAULT_TARGET.host}:${DEFAULT_TARGET.port}${DEFAULT_TARGET.path}`) });
    target = { ...DEFAULT_TARGET };
  } else target = checked.target;

  return {
    config: {
      cloudflaredPath,
      target: { ...target, access },
      startTimeoutMs: pick('startTimeout', (v) => intIn(v, 5, 600), 45, 'a whole number of seconds from 5 to 600') * 1000,
      stopGraceMs: pick('stopGracePeriod', (v) => intIn(v, 1, 60), 5, 'a whole number of seconds from 1 to 60') * 1000,
      hostHeader: pick('hostHeader', (v) => oneOf(v, ['origin', 'public'] as const), 'origin', '"origin" or "public"'),
      protocol: pick('protocol', (v) => oneOf(v, ['auto', 'quic', 'http2'] as const), 'auto', '"auto", "quic" or "http2"'),
      logLevel: pick('logLevel', (v) => oneOf(v, ['debug', 'info', 'warn', 'error'] as const), 'info', 'one of debug, info, warn, error'),
      tunnelMode: pick('tunnelMode', (v) => oneOf(v, ['quick', 'named'] as const), 'quick', '"quick" or "named"'),
      namedHostname: pick('namedTunnel.hostname', (v) => (typeof v === 'string' && /^[a-z0-9.-]*$/i.test(v.trim().replace(/^https?:\/\//, '').replace(/\/$/, '')) ? v.trim() : undefined), '', 'a host name such as mcp.example.com'),
      autoRestart: pick('autoRestart', (v) => (typeof v === 'boolean' ? v : undefined), true, 'true or false'),
      mcpConfirmStart: pick('mcp.confirmStart', (v) => (typeof v === 'boolean' ? v : undefined), true, 'true or false'),
      checkCloudflaredUpdates: pick('cloudflared.checkForUpdates', (v) => (typeof v === 'boolean' ? v : undefined), true, 'true or false'),
      checkReachability: pick('checkReachability', (v) => (typeof v === 'boolean' ? v : undefined), true, 'true or false'),
      allowedHosts,
      inspector: {
        maxEntries: pick('inspector.maxEntries', (v) => intIn(v, 10, 100_000), 500, 'a whole number from 10 to 100000'),
        captureBodies: pick('inspector.captureBodies', (v) => (typeof v === 'boolean' ? v : undefined), true, 'true or false'),
        notifyNewClients: pick('inspector.notifyNewClients', (v) => (typeof v === 'boolean' ? v : undefined), true, 'true or false'),
      },
      autoStop: {
        afterMinutes: pick('autoStop.afterMinutes', (v) => intIn(v, 0, 43_200), 0, 'a whole number of minutes from 0 (off) to 43200 (30 days)'),
        idleMinutes: pick('autoStop.idleMinutes', (v) => intIn(v, 0, 43_200), 0, 'a whole number of minutes from 0 (off) to 43200 (30 days)'),
      },
    },
    problems,
  };
}

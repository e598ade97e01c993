/**
 * The tunnel's state: one discriminated union, plus the plain-JSON snapshot that the status bar,
 * the tree, the CLI and the MCP resources all show.
 */

/** What a tunnel exposes: a local HTTP origin, and the path of the MCP endpoint on it. */
export interface TunnelTarget {
  /** Loopback host of the origin, e.g. `localhost` or `127.0.0.1`. */
  host: string;
  port: number;
  /** Path of the MCP endpoint, e.g. `/mcp`. cloudflared drops the path of `--url`, so we keep it. */
  path: string;
  /**
   * Who gets through the public URL: `secret` (the access gate lets only requests carrying the
   * share secret reach the origin) or `open` (anyone with the URL). Unset: the controller's
   * default, `secret` unless configured otherwise. A live run's target always has it set.
   */
  access?: AccessMode | undefined;
}

/** `secret`: only requests with the share secret (bearer header or secret path) pass; `open`: anyone with the URL. */
export type AccessMode = 'secret' | 'open';
export const ACCESS_MODES: readonly AccessMode[] = ['secret', 'open'];

export const DEFAULT_TARGET: Readonly<TunnelTarget> = Object.freeze({ host: 'localhost', port: 8002, path: '/mcp' });

/** Why a tunnel failed, in words a user acts on. */
export type TunnelErrorCode =
  | 'not-found' // no cloudflared binary
  | 'not-executable' // file exists but cannot be executed
  | 'not-cloudflared' // the file is something else
  | 'spawn-failed' // the OS refused to start it
  | 'no-network' // quick-tunnel service unreachable
  | 'service-unavailable' // quick-tunnel service timed out or answered garbage (429, HTML)
  | 'edge-unreachable' // could not connect to Cloudflare's edge (UDP blocked, DNS SRV)
  | 'incorrect-usage' // cloudflared rejected our flags (exit 0 with "Incorrect Usage")
  | 'updated' // cloudflared auto-updated itself and exited (11/10)
  | 'timeout' // no URL before the start timeout
  | 'exited' // any other unexpected exit
  | 'invalid-target' // bad port/host/path
  | 'no-token'; // named tunnel without a token or hostname

export interface TunnelError {
  code: TunnelErrorCode;
  /** One or two sentences: what happened and what to do. */
  message: string;
  exitCode?: number | null;
  signal?: string | null;
  /** The last lines cloudflared wrote (secrets never appear here: cloudflared prints none). */
  lastLines: string[];
}

export interface EdgeConnection {
  connIndex: number;
  location?: string;
  ip?: string;
  protocol?: string;
}

interface Live {
  target: TunnelTarget;
  pid: number;
  /** When the process was spawned (epoch ms). */
  startedAt: number;
  /** `127.0.0.1:<port>` of cloudflared's metrics server, once it logged it. */
  metricsAddress?: string;
  /** `/<secret>` when the access gate guards the tunnel: part of every shared MCP URL. */
  sharePath?: string;
}

/** No process. */
export interface StoppedState {
  status: 'stopped';
}
/** Process spawned, waiting for cloudflared to obtain a quick-tunnel URL. */
export interface StartingState extends Omit<Live, 'pid'> {
  status: 'starting';
  pid?: number;
}
/** URL known, no edge connection registered yet: the URL does not work yet. */
export interface ConnectingState extends Live {
  status: 'connecting';
  url: string;
}
/** At least one edge connection is registered: the URL works. */
export interface ActiveState extends Live {
  status: 'active';
  url: string;
  /** First registration (epoch ms): uptime counts from here and survives reconnects. */
  connectedAt: number;
  connections: EdgeConnection[];
}
/** The edge connection dropped; cloudflared is retrying. */
export interface ReconnectingState extends Live {
  status: 'reconnecting';
  url: string;
  connectedAt: number;
  connections: EdgeConnection[];
  reason: string;
}
/** Stop requested; waiting for the process to exit. */
export interface StoppingState {
  status: 'stopping';
  target?: TunnelTarget;
  pid?: number;
  url?: string;
  /** The share path of the run being stopped (secret mode), so its MCP URL stays the true one. */
  sharePath?: string;
}
/** The last run failed; `error` says why. Nothing will run until a start. */
export interface FailedState {
  status: 'failed';
  target?: TunnelTarget;
  error: TunnelError;
}
/**
 * A live tunnel died unexpectedly (`error` says how) and an automatic restart is scheduled: no
 * process runs until `restartAt`; the shares (and their secrets) wait in the registry. A stop
 * cancels it (→ stopped).
 */
export interface RestartingState {
  status: 'restarting';
  target?: TunnelTarget;
  error: TunnelError;
  /** When the restart runs (epoch ms). */
  restartAt: number;
  /** Which automatic restart it is (1-based). */
  restartAttempt: number;
}

export type TunnelState =
  | StoppedState
  | StartingState
  | ConnectingState
  | ActiveState
  | ReconnectingState
  | StoppingState
  | FailedState
  | RestartingState;

export type TunnelStatus = TunnelState['status'];

/** States in which a cloudflared process is (or may be) running. */
export function isLive(s: TunnelState): s is StartingState | ConnectingState | ActiveState | ReconnectingState {
  return s.status === 'starting' || s.status === 'connecting' || s.status === 'active' || s.status === 'reconnecting';
}

/** `/<secret>` of a live tunnel behind the access gate; undefined when open or not live. */
export function sharePathOf(s: TunnelState): string | undefined {
  return isLive(s) ? s.sharePath : undefined;
}

/** Public URL of the tunnel if known. */
export function publicUrlOf(s: TunnelState): string | undefined {
  return 'url' in s ? s.url : undefined;
}

export function localUrlOf(t: TunnelTarget): string {
  const host = t.host.includes(':') && !t.host.startsWith('[') ? `[${t.host}]` : t.host;
  return `http://${host}:${t.port}`;
}

/** `url + path`, without a doubled slash. */
export function joinUrl(base: string, path: string): string {
  return base.replace(/\/+$/, '') + (path.startsWith('/') ? path : `/${path}`);
}

/** Traffic counters read from cloudflared's metrics server. */
export interface TunnelMetrics {
  totalRequests: number;
  requestErrors: number;
  concurrentRequests: number;
  responsesByCode: Record<string, number>;
  edgeLocations: string[];
  readyConnections: number;
  haConnections?: number;
  /** When these were read (epoch ms). */
  readAt: number;
}

/** The plain-JSON view of the tunnel that MCP resources, the CLI `--json` and the UI share. */
export interface TunnelSnapshot {
  status: TunnelStatus;
  active: boolean;
  url: string | null;
  mcp_url: string | null;
  local_url: string | null;
  local_mcp_url: string | null;
  pid: number | null;
  started_at: string | null;
  connected_at: string | null;
  uptime_seconds: number;
  edge_locations: string[];
  metrics_address: string | null;
  last_error: { code: TunnelErrorCode; message: string; exit_code: number | null; signal: string | null } | null;
  /** When an automatic restart is due, while one is scheduled. */
  restart_at: string | null;
  /** `secret`: the access gate requires the share secret; `open`: anyone with the URL gets in. */
  access: 'secret' | 'open' | null;
}

export function snapshotOf(s: TunnelState, now = Date.now(), lastError?: TunnelError): TunnelSnapshot {
  const url = publicUrlOf(s) ?? null;
  const target = 'target' in s ? s.target : undefined;
  const connectedAt = 'connectedAt' in s ? s.connectedAt : undefined;
  const err = s.status === 'failed' || s.status === 'restarting' ? s.error : lastError;
  const locations = 'connections' in s ? [...new Set(s.connections.map((c) => c.location).filter((l): l is string => !!l))] : [];
  return {
    status: s.status,
    active: s.status === 'active',
    url,
    // While stopping, the MCP URL is still the run's true one (its secret included).
    mcp_url: url && target ? joinUrl(url + ((s.status === 'stopping' ? s.sharePath : sharePathOf(s)) ?? ''), target.path) : null,
    local_url: target ? localUrlOf(target) : null,
    local_mcp_url: target ? joinUrl(localUrlOf(target), target.path) : null,
    pid: ('pid' in s && s.pid) || null,
    started_at: 'startedAt' in s ? new Date(s.startedAt).toISOString() : null,
    connected_at: connectedAt ? new Date(connectedAt).toISOString() : null,
    uptime_seconds: connectedAt && (s.status === 'active' || s.status === 'reconnecting') ? Math.max(0, Math.floor((now - connectedAt) / 1000)) : 0,
    edge_locations: locations,
    metrics_address: ('metricsAddress' in s && s.metricsAddress) || null,
    last_error: err ? { code: err.code, message: err.message, exit_code: err.exitCode ?? null, signal: err.signal ?? null } : null,
    restart_at: s.status === 'restarting' ? new Date(s.restartAt).toISOString() : null,
    access: isLive(s) ? (sharePathOf(s) ? 'secret' : 'open') : null,
  };
}

import type { ShareOptions, ShareSnapshot } from '../shares/shares';

/** The cloudflared binary a controller uses. */
export interface CloudflaredInfo {
  path: string;
  /** e.g. `2026.8.2`, or `DEV`. */
  version: string;
}

/**
 * What the UI, the CLI and the MCP server need from a tunnel controller. The controller in
 * `tunnelController.ts` implements it; tests may implement it with a fake.
 */
export interface TunnelApi {
  readonly state: TunnelState;
  /** Fires only on a real change of state. */
  readonly onDidChangeState: import('../util/events').Event<TunnelState>;
  /** Latest metrics while live; undefined when stopped or not yet read. */
  readonly metrics: TunnelMetrics | undefined;
  readonly onDidChangeMetrics: import('../util/events').Event<TunnelMetrics | undefined>;
  /** The error of the last failed run, kept after a later stop. */
  readonly lastError: TunnelError | undefined;
  /** The binary in use, once found. */
  readonly cloudflared: CloudflaredInfo | undefined;
  /**
   * Share `target` on the tunnel (starting it for the first share). Idempotent: while a start to
   * the same target is in flight or live it returns that. Never rejects for a failed run: it
   * resolves with the state it settled in (`active`, `connecting` if the URL is known but the
   * edge has not registered by the timeout, or `failed`). Rejects with `TunnelBusyError` if the
   * same target is shared in the other access mode.
   */
  start(target: TunnelTarget, options?: ShareOptions): Promise<TunnelState>;
  /** Stop; idempotent; resolves when the process is gone. */
  stop(): Promise<void>;
  /** Stop (if live) and start again, optionally with a new target. */
  restart(target?: TunnelTarget): Promise<TunnelState>;
  /** Plain-JSON view of the current state. */
  snapshot(): TunnelSnapshot;
  /** The shares the tunnel carries, the primary (the one `snapshot()` describes) first. */
  listShares(): ShareSnapshot[];
  /** The share of `target`, if the tunnel carries it. */
  findShare(target: TunnelTarget): ShareSnapshot | undefined;
  /** Stops one share; the last one stops the tunnel. False if there is no such share. */
  stopShare(id: string): Promise<boolean>;
  /** A share was added or removed, or its secret or health changed. */
  readonly onDidChangeShares: import('../util/events').Event<void>;
  /** Metrics are polled only while watched (a visible view, a resource subscriber). */
  watchMetrics(): import('../util/events').Disposable;
  /** Read the metrics once now, for a reader that does not watch them. */
  refreshMetrics(): Promise<void>;
  /** What the inspector recorded (oldest first): one share's calls, or every share's. */
  activity(shareId?: string): import('../gate/recorder').RecordedCall[];
  /** A call was recorded. */
  readonly onDidRecordActivity: import('../util/events').Event<void>;
  /** Why the running tunnel uses HTTP/2 when nobody set it (QUIC failed on this network before). */
  protocolNote?(): string | undefined;
}

/** `start()` was asked for a target while a different one is live. */
export class TunnelBusyError extends Error {
  readonly code = 'busy';
  constructor(readonly current: TunnelTarget, readonly requested: TunnelTarget) {
    const here = joinUrl(localUrlOf(current), current.path);
    const there = joinUrl(localUrlOf(requested), requested.path);
    super(
      here === there && current.access && requested.access && current.access !== requested.access
        ? `A tunnel to ${here} is already running in ${current.access} mode. Stop it first (or restart it) to run it in ${requested.access} mode.`
        : `A tunnel to ${here} is already running. Stop it first (or restart with the new target) to expose ${there}.`,
    );
    this.name = 'TunnelBusyError';
  }
}

/**
 * Whether `err` is a TunnelBusyError: also one from another bundle's copy of the class (the
 * controller throws the extension's; dist/mcp.js has its own), which `instanceof` says is not.
 */
export function isTunnelBusyError(err: unknown): err is TunnelBusyError {
  return err instanceof Error && err.name === 'TunnelBusyError' && (err as { code?: unknown }).code === 'busy';
}

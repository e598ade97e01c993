/**
 * Shares: what one tunnel carries. A share is a local target with its own access mode and secret,
 * its own counters and its own lifetime; the gate routes to it by that secret (or, for an open
 * share, by the default path or its public name). The registry is the list the controller, the
 * UI, the MCP server and the CLI read; it holds no process and no socket.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { Emitter, type Disposable, type Event } from '../util/events';
import { canonicalHost, sameTarget } from '../model/target';
import { joinUrl, localUrlOf, type AccessMode, type TunnelTarget } from '../model/tunnelState';
import { describePolicy, type ToolPolicy } from '../policy/toolPolicy';
import { deadlineOf, lifetimeFrom, type LifetimeRequest, type LifetimeView, type ShareLifetime } from './lifetime';

/**
 * A share's origin that this process runs for it (the stdio bridge), instead of a server the user
 * runs on a port: the target points at its loopback port, and it is closed when the share ends.
 * Core only knows this shape; the bridge room implements it.
 */
export interface ShareOrigin {
  kind: 'stdio';
  /** What the user calls it (`filesystem`). */
  name: string;
  /**
   * Serves the share in this process (the bridge's `handle`): the gate hands requests straight to
   * it, with no loopback hop. The target stays its loopback address (for messages and tests).
   */
  handler?: (req: IncomingMessage, res: ServerResponse) => void;
  /** The command line it runs, for the UI and agents. */
  commandLine: string;
  /** Stable identity of what it runs: the same key twice is the same share; a named tunnel stores its secret under it. */
  key: string;
  /** What the gate sends it as `Authorization` (its own token: only the gate may drive it). Never logged. */
  authorization?: string;
  /** One line for the UI (`12 tools · 2 sessions`), if it has one. */
  detail(): string | undefined;
  /** A detail or health change to show. */
  onDidChange?: Event<unknown>;
  close(): Promise<void>;
}

/** How a share is made, beyond its target. */
export interface ShareOptions {
  /**
   * The share's origin when this process runs it (the stdio bridge; the target is its loopback
   * address). start() owns it from then on: it is closed when the share ends, or at once when it
   * is not used (the same key is shared already, or a stop came first).
   */
  origin?: ShareOrigin;
  /**
   * Headers the gate adds to every request toward this share's local server (an http server's
   * configured `headers` in mcp.json, e.g. its API key), replacing the client's of the same name.
   * Clients never see them; never logged. Ignored when the target is shared already.
   */
  originHeaders?: Record<string, string>;
  /** Which of its server's tools clients may see and call (see core/policy); none: all of them. */
  policy?: ToolPolicy;
  /** "Share for…": stop by itself after a time, or after so long without a request. */
  lifetime?: LifetimeRequest;
}

/** Whether a share's local server answers: unknown until probed or used. */
export type ShareHealth = { ok: true } | { ok: false; message: string };

export interface Share {
  /** `sh-<8 hex>`: stable for the share's life; the gate's route id. */
  readonly id: string;
  /** Changes only when a stdio share's definition changes (`ShareRegistry.replaceOrigin`). */
  target: TunnelTarget & { access: AccessMode };
  readonly createdAt: number;
  /** An open share's path prefix when another open share is the primary (`/<publicName>/…`). */
  readonly publicName: string;
  /** The secret a secret share is reached with (path segment or bearer). Never log it. */
  secret: string | undefined;
  health: ShareHealth | undefined;
  /** Set for a stdio share (the bridge): closed when the share ends. */
  origin: ShareOrigin | undefined;
  /** See `ShareOptions.originHeaders`. Never logged. */
  originHeaders?: Record<string, string>;
  /** Its tool policy (see `ShareOptions.policy`). */
  policy?: ToolPolicy;
  /** When it stops by itself (see `ShareOptions.lifetime`). */
  lifetime?: ShareLifetime;
  /** Its recipients' links (the gate is the judge of which are still live). */
  links: ShareLink[];
}

/** Plain JSON for MCP, the CLI and tests. `mcp_url` carries the share's secret, like `tunnel://url`. */
export interface ShareSnapshot {
  id: string;
  /** `localhost:8002/mcp`, or a stdio server's name: what the user shared. */
  name: string;
  /** `port`: a server the user runs; `stdio`: a command run through the built-in bridge. */
  kind: 'port' | 'stdio';
  /** A stdio share's command line (null for a port share). */
  command: string | null;
  /** One line about it (`12 tools · 1 session`), or null. */
  detail: string | null;
  access: AccessMode;
  local_url: string;
  local_mcp_url: string;
  /** The public MCP URL of this share (null until the tunnel has a URL). */
  mcp_url: string | null;
  created_at: string;
  requests: number;
  errors: number;
  last_request_at: string | null;
  /** null until probed; false with `problem` when its local server does not answer (`problem` may also warn of its OAuth metadata). */
  reachable: boolean | null;
  problem: string | null;
  /** Further secret links of this share, one per recipient (each with its own mcp_url and secret). */
  links: ShareLinkSnapshot[];
  /** Its tool policy, or null when every tool of its server is shared. */
  policy: { tools: string[] | null; read_only: boolean; summary: string } | null;
  /** When it stops by itself (ISO 8601; the earlier of its time and its idle deadline), or null. */
  stops_at: string | null;
  /** Why then: `time` (its time is up) or `idle` (that long without a request); null when it does not. */
  stop_reason: 'time' | 'idle' | null;
  /** Its idle limit in minutes, or null. */
  idle_stop_minutes: number | null;
}

/** One recipient's link. `mcp_url` carries its secret: treat it like a password. */
export interface ShareLinkSnapshot {
  id: string;
  label: string;
  /** ISO 8601, or null for never. */
  expires_at: string | null;
  mcp_url: string | null;
}

/** A link as the registry keeps it (to bring it back when the tunnel restarts). Never log `secret`. */
export interface ShareLink {
  id: string;
  label: string;
  expiresAt?: number;
  secret: string;
}

/** What the gate knows of a share's traffic. */
export interface ShareCounters {
  passed: number;
  errors: number;
  lastRequestAt?: number;
  /** Something about its origin to show (e.g. OAuth metadata naming a server the tunnel does not carry). */
  warning?: string;
}

/**
 * The key a named tunnel's stored secret is kept under: the share's canonical target, or for a
 * stdio share what it runs (its bridge's port changes at every start).
 */
export function shareKey(target: TunnelTarget, origin?: ShareOrigin): string {
  if (origin) return `${origin.kind}:${origin.key}`;
  return `${canonicalHost(target.host) ?? target.host}:${target.port}${target.path}`;
}

/** The key a named tunnel's links of a share are kept under (beside its secret). */
export function linksKey(target: TunnelTarget, origin?: ShareOrigin): string {
  return `links|${shareKey(target, origin)}`;
}

/** What the user calls a share: a stdio server's name, else `host:port/path`. */
export function displayName(share: Share): string {
  return share.origin ? share.origin.name : shareName(share.target);
}

/** A share as its lifetime rules see it (`lastRequestAt` from the gate's counters). */
export function lifetimeViewOf(share: Share, lastRequestAt: number | undefined): LifetimeView {
  return { id: share.id, createdAt: share.createdAt, ...(share.lifetime ? { lifetime: share.lifetime } : {}), ...(lastRequestAt !== undefined ? { lastRequestAt } : {}) };
}

export function shareName(target: TunnelTarget): string {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  return `${host}:${target.port}${target.path}`;
}

export class ShareRegistry {
  private readonly shares = new Map<string, Share>();
  private readonly originSubs = new Map<string, Disposable>();
  private readonly _onDidChange = new Emitter<void>();
  /** A share was added, removed, or its health changed. */
  readonly onDidChange: Event<void> = this._onDidChange.event;

  constructor(private readonly now: () => number = Date.now) {}

  get size(): number {
    return this.shares.size;
  }

  /** In the order they were added; the first is the primary (the one `tunnel://url` describes). */
  list(): Share[] {
    return [...this.shares.values()];
  }

  get(id: string): Share | undefined {
    return this.shares.get(id);
  }

  primary(): Share | undefined {
    return this.shares.values().next().value;
  }

  /** The share for `target` (`sameTarget` rules: the access mode counts only when both name one). */
  find(target: TunnelTarget): Share | undefined {
    return this.list().find((s) => sameTarget(s.target, target));
  }

  /** The stdio share that runs `key` (see `ShareOrigin.key`). */
  findOrigin(key: string): Share | undefined {
    return this.list().find((s) => s.origin?.key === key);
  }

  /** A share of the same host, port and path in the other access mode, if any. */
  conflicting(target: TunnelTarget & { access: AccessMode }): Share | undefined {
    return this.list().find((s) => sameTarget({ ...s.target, access: undefined }, { ...target, access: undefined }) && s.target.access !== target.access);
  }

  add(target: TunnelTarget & { access: AccessMode }, secret?: string, options: ShareOptions = {}): Share {
    const { origin, originHeaders, policy } = options;
    const lifetime = lifetimeFrom(options.lifetime, this.now());
    const share: Share = {
      id: `sh-${randomBytes(4).toString('hex')}`,
      target,
      createdAt: this.now(),
      publicName: `s-${randomBytes(3).toString('hex')}`,
      secret: target.access === 'secret' ? (secret ?? randomBytes(32).toString('base64url')) : undefined,
      health: undefined,
      origin,
      ...(originHeaders && Object.keys(originHeaders).length ? { originHeaders } : {}),
      ...(policy ? { policy } : {}),
      ...(lifetime ? { lifetime } : {}),
      links: [],
    };
    this.shares.set(share.id, share);
    const sub = origin?.onDidChange?.(() => this.touched(share.id));
    if (sub) this.originSubs.set(share.id, sub);
    this._onDidChange.fire();
    return share;
  }

  /** Removes a share; its origin (a bridge) is closed. */
  remove(id: string): Share | undefined {
    const share = this.shares.get(id);
    if (!share) return undefined;
    this.shares.delete(id);
    this.unsubscribe(id);
    closeOrigin(share);
    this._onDidChange.fire();
    return share;
  }

  /** Removes every share; their origins are closed. */
  clear(): void {
    if (this.shares.size === 0) return;
    const all = this.list();
    this.shares.clear();
    for (const share of all) {
      this.unsubscribe(share.id);
      closeOrigin(share);
    }
    this._onDidChange.fire();
  }

  /**
   * Gives a stdio share another origin and target (its definition changed), id and secret kept.
   * Returns the old origin, which the caller closes once the route points at the new one.
   */
  replaceOrigin(id: string, origin: ShareOrigin, target: TunnelTarget & { access: AccessMode }): ShareOrigin | undefined {
    const share = this.shares.get(id);
    if (!share) return undefined;
    const old = share.origin;
    this.unsubscribe(id);
    share.target = target;
    share.origin = origin;
    share.health = undefined;
    const sub = origin.onDidChange?.(() => this.touched(id));
    if (sub) this.originSubs.set(id, sub);
    this._onDidChange.fire();
    return old;
  }

  /** Takes the shares' origins out (for a restart that brings them back): clear() then leaves them running. */
  detachOrigins(): Map<string, ShareOrigin> {
    const out = new Map<string, ShareOrigin>();
    for (const share of this.shares.values()) {
      if (!share.origin) continue;
      out.set(share.id, share.origin);
      share.origin = undefined;
      this.unsubscribe(share.id);
    }
    return out;
  }

  private unsubscribe(id: string): void {
    this.originSubs.get(id)?.dispose();
    this.originSubs.delete(id);
  }

  setHealth(id: string, health: ShareHealth): void {
    const share = this.shares.get(id);
    if (!share || JSON.stringify(share.health) === JSON.stringify(health)) return;
    share.health = health;
    this._onDidChange.fire();
  }

  /** What a share is made with beyond its target (to make it again: a restart). */
  optionsOf(share: Share, origin: ShareOrigin | undefined): ShareOptions {
    const now = this.now();
    const l = share.lifetime;
    // What is left of its time, not its whole time again.
    const lifetime = l ? { ...(l.stopAt !== undefined ? { afterMs: Math.max(1000, l.stopAt - now) } : {}), ...(l.idleMs !== undefined ? { idleMs: l.idleMs } : {}) } : undefined;
    return { ...(origin ? { origin } : {}), ...(share.originHeaders ? { originHeaders: share.originHeaders } : {}), ...(share.policy ? { policy: share.policy } : {}), ...(lifetime ? { lifetime } : {}) };
  }

  /** A share's lifetime from now (undefined: until stopped). False if unknown; throws on a bad value. */
  setLifetime(id: string, req: LifetimeRequest | undefined): boolean {
    const share = this.shares.get(id);
    if (!share) return false;
    const lifetime = lifetimeFrom(req, this.now());
    if (lifetime) share.lifetime = lifetime;
    else delete share.lifetime;
    this._onDidChange.fire();
    return true;
  }

  /** A share's tool policy changed (undefined: none). False if unknown. */
  setPolicy(id: string, policy: ToolPolicy | undefined): boolean {
    const share = this.shares.get(id);
    if (!share) return false;
    if (policy) share.policy = policy;
    else delete share.policy;
    this._onDidChange.fire();
    return true;
  }

  /** The share changed in place (its secret rotated): tell the listeners. */
  touched(id: string): void {
    if (this.shares.has(id)) this._onDidChange.fire();
  }

  dispose(): void {
    this._onDidChange.dispose();
  }
}

function closeOrigin(share: Share): void {
  const origin = share.origin;
  share.origin = undefined;
  // A bridge that fails to close has already logged why; nothing here can do more.
  if (origin) void origin.close().catch(() => undefined);
}

/**
 * The share's public MCP URL: the tunnel URL, then `/<secret>` (secret share), `/<publicName>`
 * (an open share that is not the primary open one) or nothing, then the target's path.
 */
export function shareMcpUrl(tunnelUrl: string | undefined, share: Share, openPrefix: string | undefined): string | null {
  if (!tunnelUrl) return null;
  const prefix = share.target.access === 'secret' ? `/${share.secret ?? ''}` : (openPrefix ?? '');
  return joinUrl(tunnelUrl + prefix, share.target.path);
}

/**
 * What stands between the tunnel URL and the share's path in its MCP URL: `/<secret>` for a secret
 * share, `/<public name>` or '' for an open one; undefined while there is no URL to read it from.
 */
export function shareUrlPrefix(tunnelUrl: string | null | undefined, share: ShareSnapshot): string | undefined {
  if (!tunnelUrl || !share.mcp_url?.startsWith(tunnelUrl)) return undefined;
  const path = share.local_mcp_url.slice(share.local_url.length) || '/';
  const rest = share.mcp_url.slice(tunnelUrl.length);
  return rest.endsWith(path) ? rest.slice(0, rest.length - path.length) : '';
}

export function shareSnapshotOf(share: Share, tunnelUrl: string | undefined, openPrefix: string | undefined, counters: ShareCounters | undefined, liveLinks: ReadonlySet<string> = new Set()): ShareSnapshot {
  return {
    id: share.id,
    name: displayName(share),
    kind: share.origin ? share.origin.kind : 'port',
    command: share.origin ? share.origin.commandLine : null,
    detail: share.origin?.detail() ?? null,
    access: share.target.access,
    local_url: localUrlOf(share.target),
    local_mcp_url: joinUrl(localUrlOf(share.target), share.target.path),
    mcp_url: shareMcpUrl(tunnelUrl, share, openPrefix),
    created_at: new Date(share.createdAt).toISOString(),
    requests: counters?.passed ?? 0,
    errors: counters?.errors ?? 0,
    last_request_at: counters?.lastRequestAt !== undefined ? new Date(counters.lastRequestAt).toISOString() : null,
    reachable: share.health === undefined ? null : share.health.ok,
    problem: share.health && !share.health.ok ? share.health.message : (counters?.warning ?? null),
    links: share.links
      .filter((l) => liveLinks.has(l.id))
      .map((l) => ({ id: l.id, label: l.label, expires_at: l.expiresAt !== undefined ? new Date(l.expiresAt).toISOString() : null, mcp_url: tunnelUrl ? joinUrl(`${tunnelUrl}/${l.secret}`, share.target.path) : null })),
    policy: share.policy ? { tools: share.policy.tools ? [...share.policy.tools] : null, read_only: share.policy.readOnly === true, summary: describePolicy(share.policy) ?? '' } : null,
    ...stopsOf(share, counters),
  };
}

function stopsOf(share: Share, counters: ShareCounters | undefined): Pick<ShareSnapshot, 'stops_at' | 'stop_reason' | 'idle_stop_minutes'> {
  const d = deadlineOf(lifetimeViewOf(share, counters?.lastRequestAt));
  return {
    stops_at: d ? new Date(d.at).toISOString() : null,
    stop_reason: d?.why ?? null,
    idle_stop_minutes: share.lifetime?.idleMs !== undefined ? Math.round(share.lifetime.idleMs / 60_000) : null,
  };
}

/**
 * Whether something listens on the share's local port (a TCP connect, nothing sent). The message
 * says what to do, as the troubleshooting table does.
 */
export function probeOrigin(host: string, port: number, timeoutMs = 1500): Promise<ShareHealth> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (h: ShareHealth): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(h);
    };
    const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    const timer = setTimeout(() => done({ ok: false, message: `${where} does not answer (no connection within ${timeoutMs} ms). Make sure the MCP server is running on that port.` }), timeoutMs);
    socket.once('connect', () => done({ ok: true }));
    socket.once('error', (err: NodeJS.ErrnoException) =>
      done({
        ok: false,
        message:
          err.code === 'ECONNREFUSED'
            ? `Nothing is listening on ${where}. Start your MCP server on that port (or share the port it uses).`
            : `${where} cannot be reached (${err.code ?? err.message}). Make sure the MCP server is running on that port.`,
      }),
    );
  });
}

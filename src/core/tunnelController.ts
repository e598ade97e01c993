/**
 * The state machine: spawns and supervises one cloudflared, turns its log into states, reads its
 * metrics while live, and never leaves a process behind. See ARCHITECTURE.md for the diagram.
 */
import { randomBytes } from 'node:crypto';
import {
  buildRun,
  INSTALL_URL,
  type EdgeProtocol,
  type HostHeaderMode,
} from './cloudflared/locate';
import { CloudflaredLogParser, classifyFailure, type CloudflaredEvent, type LogLevel, type LogLine, type ParsedLine } from './cloudflared/log';
import { INITIAL_RUN_LOG_STATE, reduceRunLog, type RunLogState } from './cloudflared/runReducer';
import { Emitter, type Disposable, type Event } from './util/events';
import { Recorder, type RecordedCall, type RecorderOptions } from './gate/recorder';
import { protocolMemory, type ProtocolMemory } from './cloudflared/protocolMemory';
import type { AccessGate } from './gate/accessGate';
import { gateModule } from './gate/loadGate';
import { isSelfCheck } from './util/selfCheck';
import { describePolicy, type ToolPolicy } from './policy/toolPolicy';
import { MetricsPoller, readMetrics, readQuickTunnel } from './metrics/metrics';
import { newRunId, reapOrphans, removeRun, writeRunRecord, type ReapResult } from './supervisor/orphans';
import { spawnProcess, type SpawnFn, type SpawnedProcess } from './supervisor/processRunner';
import { RunPreparationAborted, RunPreparationError, prepareRun, type PreparedRun } from './supervisor/prepareRun';
import { peerIsProcess } from './supervisor/socketOwner';
import { AutoStop, describeLifetime, shortDuration, type LifetimeRequest } from './shares/lifetime';
import { DEFAULT_RESTART_POLICY, decideRestart, type RestartPolicy } from './supervisor/restartPolicy';

export { DEFAULT_RESTART_POLICY, type RestartPolicy } from './supervisor/restartPolicy';
import { ShareRegistry, displayName, lifetimeViewOf, linksKey, probeOrigin, shareKey, shareSnapshotOf, type Share, type ShareLink, type ShareLinkSnapshot, type ShareOptions, type ShareOrigin, type ShareSnapshot } from './shares/shares';
export type { ShareOptions, ShareOrigin } from './shares/shares';
import {
  TunnelBusyError,
  isLive,
  joinUrl,
  localUrlOf,
  snapshotOf,
  type CloudflaredInfo,
  type TunnelApi,
  type TunnelError,
  type TunnelMetrics,
  type TunnelSnapshot,
  type TunnelState,
  type TunnelTarget,
  type AccessMode,
  type FailedState,
  type RestartingState,
  type StartingState,
  type ConnectingState,
  type ActiveState,
  type ReconnectingState,
} from './model/tunnelState';

export interface TunnelControllerOptions {
  /** Finds the binary and its version; throws `CloudflaredError` (message names the fix). */
  findCloudflared: () => Promise<CloudflaredInfo>;
  /** Folder for run records and the empty config file (extension global storage, or a user folder for the CLI). */
  stateDir: string;
  spawn?: SpawnFn;
  /** How long `start()` waits for the URL and the first edge connection. */
  startTimeoutMs?: number;
  /** cloudflared's `--grace-period`; SIGKILL follows one second after it. */
  stopGraceMs?: number;
  hostHeader?: HostHeaderMode;
  protocol?: EdgeProtocol;
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
  /** Environment the child's is built from (TUNNEL_* removed). */
  baseEnv?: NodeJS.ProcessEnv;
  /** Metrics polling period while live; 0 turns polling off. */
  metricsIntervalMs?: number;
  /**
   * Access mode for starts whose target does not name one. `secret` (default): the access gate
   * sits between cloudflared and the origin, so only requests carrying the share secret (bearer
   * header or `/<secret>` path prefix) reach it. `open`: no gate, anyone with the URL gets in.
   */
  access?: AccessMode;
  /**
   * Where the share secret lives between starts (and sessions), so a stable hostname keeps a
   * stable MCP URL: the gate takes the stored secret (a new one is made and stored when there is
   * none, or it is malformed), and `rotateSecret()` stores its replacement. Without a store each
   * start makes a new secret. Either way an automatic restart keeps the secret it had.
   */
  shareSecretStore?: ShareSecretStore | undefined;
  /**
   * The inspector's recorder (what passed the gate, per share, as MCP calls; see gate/recorder.ts).
   * Default: on, with its defaults; `false`: nothing is recorded.
   */
  inspector?: Omit<RecorderOptions, 'secrets'> | false;
  /**
   * Run a named tunnel (stable hostname routed to it in Cloudflare) instead of a quick tunnel.
   * The token is read at each start and never appears in argv or logs.
   */
  named?: NamedTunnel | undefined;
  /**
   * Restart automatically after cloudflared dies unexpectedly while live (not after a failed
   * start): exponential backoff, at most `maxRestarts` within `windowMs`. `false` turns it off.
   */
  autoRestart?: RestartPolicy | false;
  /** "Share for…" by default: every new share stops by itself after this time / idle time. */
  autoStop?: LifetimeRequest | undefined;
}

export interface ShareSecretStore {
  get(key: string): Promise<string | undefined>;
  set(key: string, secret: string): Promise<void>;
}

/** 32 random bytes in base64url are 43 characters; a stored or given secret needs at least 32 of these. */
export const SHARE_SECRET_PATTERN = /^[A-Za-z0-9_-]{32,512}$/;

export interface NamedTunnel {
  /** The hostname routed to the tunnel in Cloudflare, e.g. `mcp.example.com`. */
  hostname: string;
  /** The tunnel token (from SecretStorage, an environment variable or a file). */
  token: () => Promise<string | undefined>;
}


/** A quick tunnel's URL changes when it restarts: anyone holding the old one needs the new one. */
export interface TunnelRestartEvent {
  attempt: number;
  previousUrl: string | undefined;
  url: string | undefined;
  state: TunnelState;
}

/** One line for the log channel: cloudflared's own lines at their level, and our events. */
export interface TunnelLogEntry {
  source: 'cloudflared' | 'tunnel';
  level: LogLevel;
  message: string;
}

export const DEFAULT_START_TIMEOUT_MS = 45_000;
export const DEFAULT_STOP_GRACE_MS = 5_000;
const LAST_LINES = 50;
const LAST_LINE_CHARS = 500;

interface Run {
  id: string;
  target: TunnelTarget;
  /** The protocol this run asked for (`auto` unless set, or HTTP/2 because QUIC was remembered blocked). */
  protocol?: EdgeProtocol;
  /** When QUIC was remembered blocked, if that is why this run uses HTTP/2. */
  http2Since?: number;
  startedAt: number;
  proc?: SpawnedProcess;
  pid?: number | undefined;
  /** What the log told us (URL, metrics address, edge connections, QUIC): see cloudflared/runReducer.ts. */
  edge: RunLogState;
  lastLines: string[];
  /** The same lines as the parser typed them (secrets redacted): what failures are classified from. */
  lastParsed: LogLine[];
  cloudflared?: CloudflaredInfo;
  configPath?: string;
  stopRequested: boolean;
  /** Cancels the run's preparation (a stop, a start timeout before the spawn). */
  abort: AbortController;
  /** Set when we decided the run failed before it exited (timeout). */
  failure?: TunnelError;
  ended: boolean;
  startPromise: Promise<TunnelState>;
  settleStart: (s: TunnelState) => void;
  startSettled: boolean;
  /** Resolves as the run ends (state settled): queued starts and restarts go on from here. */
  exited: Promise<void>;
  markExited: () => void;
  /** Set when the run ends: resolves once its run record is removed (stop() waits for it too). */
  removed?: Promise<void>;
  stopPromise?: Promise<void>;
  startTimer?: NodeJS.Timeout;
  killTimer?: NodeJS.Timeout;
  poller?: MetricsPoller;
  /** The access gate of this run, in `secret` mode. */
  gate?: AccessGate;
  /** Every share secret this run has had: cut out of cloudflared's lines (debug logs requests). */
  secrets: string[];
}

/** What cloudflared's lines show instead of a share secret. */
export const REDACTED_SECRET = '<share-secret>';

function pushLine(run: Run, text: string, line: LogLine): void {
  const t = text.length > LAST_LINE_CHARS ? `${text.slice(0, LAST_LINE_CHARS)}…` : text;
  run.lastLines.push(t);
  if (run.lastLines.length > LAST_LINES) run.lastLines.shift();
  run.lastParsed.push(line);
  if (run.lastParsed.length > LAST_LINES) run.lastParsed.shift();
}

function redactLine(line: LogLine, redact: (t: string) => string): LogLine {
  const fields: Record<string, string> = {};
  for (const [k, v] of Object.entries(line.fields)) fields[k] = redact(v);
  return { ...line, message: redact(line.message), fields };
}

export class TunnelController implements TunnelApi {
  private _state: TunnelState = { status: 'stopped' };
  private _metrics: TunnelMetrics | undefined;
  private _lastError: TunnelError | undefined;
  private _cloudflared: CloudflaredInfo | undefined;
  private run: Run | undefined;
  private options: Required<Omit<TunnelControllerOptions, 'protocol' | 'baseEnv' | 'logLevel' | 'named' | 'access' | 'shareSecretStore' | 'inspector' | 'autoStop'>> &
    Pick<TunnelControllerOptions, 'protocol' | 'baseEnv' | 'logLevel' | 'named' | 'access' | 'shareSecretStore' | 'inspector' | 'autoStop'>;
  private disposed = false;
  /** Times of automatic restarts, for the policy's window. */
  private restarts: number[] = [];
  private restartTimer: NodeJS.Timeout | undefined;
  /** Who shows metrics now (see watchMetrics): the poller runs only while this is > 0. */
  private metricsWatchers = 0;
  /** Bumped by every stop(): a start queued behind a stop gives way to a later stop. */
  private stopGeneration = 0;

  /** What the tunnel carries: kept across automatic restarts, cleared when the tunnel ends. */
  private readonly registry = new ShareRegistry();
  /** A share was added or removed, or its health, secret or counters' meaning changed. */
  readonly onDidChangeShares: Event<void> = this.registry.onDidChange;
  /** Protected so a test subclass can count its listeners (leak checks). */
  protected readonly _onDidChangeState = new Emitter<TunnelState>();
  /** Protected so a test subclass can count its listeners (leak checks). */
  protected readonly _onDidChangeMetrics = new Emitter<TunnelMetrics | undefined>();
  /** Protected so a test subclass can count its listeners (leak checks). */
  protected readonly _onDidLog = new Emitter<TunnelLogEntry>();
  /** Protected so a test subclass can count its listeners (leak checks). */
  protected readonly _onDidRestart = new Emitter<TunnelRestartEvent>();
  /** An automatic restart settled (the URL usually changed). */
  readonly onDidRestart: Event<TunnelRestartEvent> = this._onDidRestart.event;
  readonly onDidChangeState: Event<TunnelState> = this._onDidChangeState.event;
  readonly onDidChangeMetrics: Event<TunnelMetrics | undefined> = this._onDidChangeMetrics.event;
  /** cloudflared's lines and the controller's own events, for a log channel. */
  readonly onDidLog: Event<TunnelLogEntry> = this._onDidLog.event;
  /** The inspector's recorder; undefined when `inspector: false`. Its secrets are the runs'. */
  readonly recorder: Recorder | undefined;
  /** Whether QUIC failed on this machine lately (see cloudflared/protocolMemory.ts). */
  private readonly protocolMemory: ProtocolMemory;

  constructor(options: TunnelControllerOptions) {
    this.options = {
      spawn: spawnProcess,
      startTimeoutMs: DEFAULT_START_TIMEOUT_MS,
      stopGraceMs: DEFAULT_STOP_GRACE_MS,
      hostHeader: 'origin',
      access: 'secret',
      metricsIntervalMs: 2000,
      autoRestart: DEFAULT_RESTART_POLICY,
      ...options,
    };
    this.protocolMemory = protocolMemory(this.options.stateDir);
    this.autoStop = new AutoStop(
      () => this.registry.list().map((sh) => lifetimeViewOf(sh, this.lastRequestAt(sh.id))),
      (id, why) => void this.stopShareByItself(id, why),
    );
    this.registry.onDidChange(() => this.autoStop.reschedule());
    const inspector = this.options.inspector;
    this.recorder = inspector === false ? undefined : new Recorder({ ...inspector, secrets: () => this.run?.secrets ?? [] });
  }

  /** Why the running tunnel uses HTTP/2 when nobody set it (QUIC failed here before), else undefined. */
  protocolNote(): string | undefined {
    const since = this.run?.http2Since;
    return since !== undefined ? `HTTP/2: QUIC failed on this network on ${new Date(since).toLocaleDateString()} (remembered for 7 days)` : undefined;
  }

  private lastRequestAt(id: string): number | undefined {
    return this.run?.gate?.routeStats(id)?.lastRequestAt;
  }

  /** A share's time (or idle time) was up: it stops, saying why. */
  private async stopShareByItself(id: string, why: 'time' | 'idle'): Promise<void> {
    const share = this.registry.get(id);
    if (!share) return;
    const name = displayName(share);
    const idle = share.lifetime?.idleMs;
    const message = why === 'idle' && idle !== undefined ? `${name} stopped by itself: no request for ${shortDuration(idle)}.` : `${name} stopped by itself: its time was up.`;
    this.log('info', message);
    // Said first: the last share stopping ends the tunnel (and the CLI with it).
    this._onDidStopShareByItself.fire({ id, name, why, message });
    await this.stopShare(id);
  }

  /**
   * "Share for…": a share stops by itself after `afterMs`, or after `idleMs` without a request
   * (undefined: until stopped). False if the share is unknown; throws on a bad value.
   */
  setLifetime(shareId: string, req: LifetimeRequest | undefined): boolean {
    const share = this.registry.get(shareId);
    if (!share) return false;
    this.registry.setLifetime(shareId, req);
    const name = displayName(share);
    const line = describeLifetime(lifetimeViewOf(share, this.lastRequestAt(share.id)), Date.now());
    this.log('info', line ? `${name} ${line}.` : `${name} runs until you stop it.`);
    return true;
  }

  private readonly _onDidStopShareByItself = new Emitter<{ id: string; name: string; why: 'time' | 'idle'; message: string }>();
  /** A share stopped by itself (its lifetime): for a notification. */
  readonly onDidStopShareByItself = this._onDidStopShareByItself.event;
  private readonly autoStop: AutoStop;

  /** The calls the inspector recorded (oldest first): one share's, or every share's. */
  activity(shareId?: string): RecordedCall[] {
    return this.recorder?.list(shareId) ?? [];
  }

  /** A call was recorded (never fires without the inspector). */
  readonly onDidRecordActivity: Event<void> = (listener, thisArgs, disposables) =>
    this.recorder ? this.recorder.onDidRecord(() => listener(undefined), thisArgs, disposables) : { dispose: () => undefined };

  get state(): TunnelState {
    return this._state;
  }
  get metrics(): TunnelMetrics | undefined {
    return this._metrics;
  }
  get lastError(): TunnelError | undefined {
    return this._lastError;
  }
  get cloudflared(): CloudflaredInfo | undefined {
    return this._cloudflared;
  }
  /** Requests the live run's access gate let through and refused; undefined without a gate. */
  get accessStats(): { passed: number; rejected: number } | undefined {
    const gate = this.run?.gate;
    return gate && !this.run?.ended ? { passed: gate.stats.passed, rejected: gate.stats.rejected } : undefined;
  }

  /** Settings changed: applies from the next start (a live tunnel keeps running as it is). */
  updateOptions(partial: Partial<Omit<TunnelControllerOptions, 'stateDir' | 'spawn'>>): void {
    this.options = { ...this.options, ...partial };
  }

  snapshot(): TunnelSnapshot {
    return snapshotOf(this._state, Date.now(), this._lastError);
  }

  /** Ends cloudflared processes an earlier, crashed host left behind (see orphans.ts). */
  async reapOrphans(): Promise<ReapResult[]> {
    return reapOrphans(this.options.stateDir, (m) => this.log('warn', m));
  }

  /**
   * Shares `target`: the first share starts cloudflared; a later one only adds a route to the
   * live tunnel's gate (nothing is spawned) and is usable at once. The same target again returns
   * the tunnel as it is. Rejects with `TunnelBusyError` only for the same target in the other
   * access mode (stop that share first).
   */
  start(target: TunnelTarget, options: ShareOptions = {}): Promise<TunnelState> {
    const origin = options.origin;
    const unused = (): void => void origin?.close().catch(() => undefined);
    if (this.disposed) {
      unused();
      return Promise.resolve(this._state);
    }
    const full = { ...target, access: target.access ?? this.options.access ?? 'secret' };
    const run = this.run;
    if (run && !run.stopRequested) {
      const settled = (): Promise<TunnelState> => (run.startSettled ? Promise.resolve(this._state) : run.startPromise);
      if (origin ? this.registry.findOrigin(origin.key) : this.registry.find(target)) {
        unused();
        return settled();
      }
      const other = origin ? undefined : this.registry.conflicting(full);
      if (other) return Promise.reject(new TunnelBusyError(other.target, full));
      // A stop that came while the share was being added wins: the start resolves stopped.
      return this.addShare(run, full, options).then(() => (run.stopRequested ? run.exited.then((): TunnelState => ({ status: 'stopped' })) : settled()));
    }
    if (run?.stopPromise) {
      const generation = this.stopGeneration;
      return run.exited.then((): Promise<TunnelState> | TunnelState => {
        if (generation === this.stopGeneration) return this.start(target, options);
        unused();
        return { status: 'stopped' };
      });
    }
    this.cancelRestart();
    const first = (secret: string | undefined, links: ShareLink[] = []): Promise<TunnelState> => {
      this.registry.clear();
      // A new tunnel: the last one's calls stay visible until now.
      this.recorder?.clear();
      const share = this.registry.add(full, secret, this.withDefaults(options));
      share.links = links;
      this.probe(share);
      return this.launch(full);
    };
    // Synchronous unless a stored secret must be read first (named tunnels), so `starting` is
    // the state as soon as start() returns.
    if (!this.options.shareSecretStore || full.access !== 'secret') return first(undefined);
    const generation = this.stopGeneration;
    return Promise.all([this.storedSecret(full, origin), this.storedLinks(full, origin)]).then(([secret, links]) => {
      // A stop() while the secret was read wins; a start that got there first is joined.
      if (generation !== this.stopGeneration || this.disposed) {
        unused();
        return this._state;
      }
      return this.run ? this.start(target, options) : first(secret, links);
    });
  }

  /** The shares of this tunnel, the primary first. `mcp_url` carries each one's secret. */
  listShares(): ShareSnapshot[] {
    const run = this.run;
    const url = run && !run.ended ? run.edge.url : undefined;
    return this.registry.list().map((sh) =>
      shareSnapshotOf(sh, isLive(this._state) ? url : undefined, run?.gate?.routeOpenPrefix(sh.id), run?.gate?.routeStats(sh.id), new Set(run?.gate?.links(sh.id).map((l) => l.id) ?? [])),
    );
  }

  /** The share a `start(target)` made or reused, if the tunnel carries it. */
  findShare(target: TunnelTarget): ShareSnapshot | undefined {
    const sh = this.registry.find(target);
    return sh ? this.listShares().find((x) => x.id === sh.id) : undefined;
  }

  /**
   * A stdio share runs something else now (its definition in mcp.json changed): `origin` (a new,
   * checked bridge) takes over the share's route, id and secret, so the links handed out keep
   * working; the old bridge and its sessions end (clients start a new session). The same
   * definition again restarts the server. False, and `origin` closed, if the share is gone, is
   * not a stdio share, another share runs that definition, or the tunnel is not running.
   */
  replaceOrigin(id: string, target: TunnelTarget, origin: ShareOrigin): boolean {
    const run = this.run;
    const share = this.registry.get(id);
    const same = this.registry.findOrigin(origin.key);
    if (!run || run.stopRequested || run.ended || !share?.origin || (same && same.id !== id)) {
      void origin.close().catch(() => undefined);
      return false;
    }
    const full = { ...target, access: share.target.access };
    const old = this.registry.replaceOrigin(id, origin, full);
    run.gate?.setRouteOrigin(id, { host: full.host, port: full.port }, { ...(origin.authorization ? { originAuthorization: origin.authorization } : {}), ...(origin.handler ? { handler: origin.handler } : {}) });
    void old?.close().catch(() => undefined);
    const store = this.options.shareSecretStore;
    if (store && share.secret) void store.set(shareKey(full, origin), share.secret).catch((err: unknown) => this.log('warn', `Could not store the share secret under the new definition: ${(err as Error).message}`));
    this.log('info', `Restarted ${origin.name} with its new definition (stdio: ${origin.commandLine}); its links are unchanged.`);
    if (isLive(this._state)) this.setState(this.liveState(run));
    return true;
  }

  /** Stops one share (its route, secret and streams); the last one stops the tunnel. False if unknown. */
  async stopShare(id: string): Promise<boolean> {
    const share = this.registry.get(id);
    if (!share) return false;
    if (this.registry.size === 1) {
      await this.stop();
      return true;
    }
    this.registry.remove(id);
    const run = this.run;
    run?.gate?.removeRoute(id);
    this.log('info', `Stopped sharing ${share.origin ? share.origin.name : joinUrl(localUrlOf(share.target), share.target.path)}; the other shares go on.`);
    if (run && isLive(this._state)) this.setState(this.liveState(run));
    return true;
  }

  private async addShare(run: Run, target: TunnelTarget & { access: AccessMode }, options: ShareOptions): Promise<void> {
    const origin = options.origin;
    const [secret, links] = await Promise.all([this.storedSecret(target, origin), this.storedLinks(target, origin)]);
    // Raced by a stop, or by the same target shared meanwhile.
    if (run !== this.run || run.stopRequested || run.ended || (origin ? this.registry.findOrigin(origin.key) : this.registry.find(target))) {
      void origin?.close().catch(() => undefined);
      return;
    }
    const share = this.registry.add(target, secret, this.withDefaults(options));
    share.links = links;
    if (share.secret) run.secrets.push(share.secret, ...links.map((l) => l.secret));
    this.routeShare(run, share);
    this.log('info', `Sharing ${origin ? `${origin.name} (stdio: ${origin.commandLine})` : joinUrl(localUrlOf(target), target.path)} on the same tunnel (${this.registry.size} shares; access ${target.access}).`);
    this.probe(share);
    if (isLive(this._state)) this.setState(this.liveState(run));
  }

  /** A share's options with the settings' defaults (its lifetime). */
  private withDefaults(options: ShareOptions): ShareOptions {
    const auto = this.options.autoStop;
    return options.lifetime || !auto ? options : { ...options, lifetime: auto };
  }

  private routeShare(run: Run, share: Share): void {
    run.gate?.addRoute({
      id: share.id,
      origin: { host: share.target.host, port: share.target.port },
      access: share.target.access,
      ...(share.secret ? { secret: share.secret } : {}),
      ...(share.origin?.authorization ? { originAuthorization: share.origin.authorization } : {}),
      ...(share.originHeaders ? { originHeaders: share.originHeaders } : {}),
      ...(share.origin?.handler ? { handler: share.origin.handler } : {}),
      ...(share.policy ? { policy: share.policy } : {}),
      name: share.publicName,
    });
    this.restoreLinks(run, share);
  }

  /** A share's links back on a new gate (a restart), the expired ones dropped. */
  private restoreLinks(run: Run, share: Share): void {
    const now = Date.now();
    share.links = share.links.filter((l) => l.expiresAt === undefined || l.expiresAt > now);
    for (const l of share.links) run.gate?.addLink(share.id, { id: l.id, label: l.label, secret: l.secret, ...(l.expiresAt !== undefined ? { expiresAt: l.expiresAt } : {}) });
  }

  /** Is anything listening behind the share? Shown on the share, never a failure of the tunnel. */
  private probe(share: Share): void {
    // A bridge is ours: its server was checked before it was shared.
    if (share.origin) return;
    void probeOrigin(share.target.host, share.target.port).then((h) => {
      if (!this.registry.get(share.id)) return;
      this.registry.setHealth(share.id, h);
      if (!h.ok) this.log('warn', h.message);
    });
  }

  stop(): Promise<void> {
    this.stopGeneration++;
    this.cancelRestart();
    const run = this.run;
    if (!run) {
      this.registry.clear();
      if (this._state.status === 'failed' || this._state.status === 'restarting') this.setState({ status: 'stopped' });
      return Promise.resolve();
    }
    if (run.stopPromise) return run.stopPromise;
    run.stopRequested = true;
    run.abort.abort();
    this.log('info', 'Stopping the tunnel.');
    const sharePath = this.sharePathOfRun(run);
    this.setState({ status: 'stopping', target: this.registry.primary()?.target ?? run.target, ...(run.pid ? { pid: run.pid } : {}), ...(run.edge.url ? { url: run.edge.url } : {}), ...(sharePath ? { sharePath } : {}) });
    this.terminate(run);
    run.stopPromise = run.exited.then(() => run.removed);
    return run.stopPromise;
  }

  /**
   * A new secret for one share (default: the primary): its old secret stops working at once (open
   * streams included); the other shares are untouched. Returns the new `/<secret>` path, or
   * undefined when the share is open or no tunnel runs.
   */
  /**
   * A new link for one recipient of a secret share: its own secret (so its own MCP URL), a label,
   * and maybe an expiry. Revoke it alone with `revokeLink`; at its expiry it stops by itself.
   * Automatic restarts keep it (a quick tunnel's URL changes); undefined for an open or unknown share.
   */
  createLink(shareId: string, link: { label: string; expiresInMs?: number }): ShareLinkSnapshot | undefined {
    const run = this.run;
    const share = this.registry.get(shareId);
    if (!run?.gate || run.ended || !share || share.target.access !== 'secret') return undefined;
    const expiresAt = link.expiresInMs !== undefined ? Date.now() + link.expiresInMs : undefined;
    const made = run.gate.addLink(shareId, { label: link.label, ...(expiresAt !== undefined ? { expiresAt } : {}) });
    if (!made) return undefined;
    share.links.push({ id: made.id, label: made.label, secret: made.secret, ...(expiresAt !== undefined ? { expiresAt } : {}) });
    run.secrets.push(made.secret);
    this.saveLinks(share);
    this.log('info', `New link "${made.label}" for ${displayName(share)}${expiresAt !== undefined ? `, until ${new Date(expiresAt).toLocaleString()}` : ''}.`);
    this.registry.touched(shareId);
    return this.listShares().find((x) => x.id === shareId)?.links.find((l) => l.id === made.id);
  }

  /**
   * A share's tool policy (undefined: every tool shared), from its next request on; streams the
   * old policy judged are cut. Automatic and user restarts keep it. False if the share is unknown.
   */
  setPolicy(shareId: string, policy: ToolPolicy | undefined): boolean {
    const share = this.registry.get(shareId);
    if (!share) return false;
    this.registry.setPolicy(shareId, policy);
    this.run?.gate?.setRoutePolicy(shareId, policy);
    const name = displayName(share);
    this.log('info', policy ? `${name} now shares ${describePolicy(policy) ?? 'every tool'}.` : `${name} shares every tool of its server again.`);
    return true;
  }

  /**
   * How to reach a share's own server directly, as the gate does (its headers, a bridge's token):
   * to ask it for its tools. Never log the headers. Undefined if the share is unknown.
   */
  localEndpoint(shareId: string): { url: string; headers: Record<string, string> } | undefined {
    const share = this.registry.get(shareId);
    if (!share) return undefined;
    const headers: Record<string, string> = { ...(share.originHeaders ?? {}) };
    if (share.origin?.authorization) headers['authorization'] = share.origin.authorization;
    return { url: joinUrl(localUrlOf(share.target), share.target.path), headers };
  }

  /** Revokes one link: it gets 401 ("revoked") from now on and its open streams are cut. */
  revokeLink(shareId: string, linkId: string): boolean {
    const run = this.run;
    const share = this.registry.get(shareId);
    if (!share) return false;
    const ok = run?.gate?.removeLink(shareId, linkId) ?? false;
    share.links = share.links.filter((l) => l.id !== linkId);
    this.saveLinks(share);
    if (ok) this.log('info', `Link revoked: it no longer works.`);
    this.registry.touched(shareId);
    return ok;
  }

  rotateSecret(shareId?: string): string | undefined {
    const run = this.run;
    const share = shareId ? this.registry.get(shareId) : this.registry.primary();
    if (!run?.gate || run.ended || !share || share.target.access !== 'secret') return undefined;
    const secret = run.gate.rotateRoute(share.id);
    if (!secret) return undefined;
    share.secret = secret;
    run.secrets.push(secret);
    this.log('info', 'Share secret rotated: the previous one no longer works.');
    const store = this.options.shareSecretStore;
    if (store) void store.set(shareKey(share.target, share.origin), secret).catch((err: unknown) => this.log('warn', `Could not store the new share secret (the next start will make another): ${(err as Error).message}`));
    this.registry.touched(share.id);
    if (isLive(this._state)) this.setState(this.liveState(run));
    return `/${secret}`;
  }

  async restart(target?: TunnelTarget): Promise<TunnelState> {
    const [primary, ...rest] = this.registry.list();
    const next = target ?? primary?.target ?? this.run?.target ?? ('target' in this._state ? this._state.target : undefined);
    if (!next) throw new Error('Nothing to restart: no tunnel has been started yet.');
    // The shares come back with it, stdio bridges still running (a quick tunnel's URL, and so
    // every MCP URL, changes). A new target replaces the primary (and its bridge).
    const origins = this.registry.detachOrigins();
    const primaryOrigin = primary && !target ? origins.get(primary.id) : undefined;
    if (primary && target) void origins.get(primary.id)?.close().catch(() => undefined);
    const others = rest.map((sh) => ({ target: sh.target, origin: origins.get(sh.id), options: this.registry.optionsOf(sh, origins.get(sh.id)) }));
    // A new target is a new primary: the old one's headers and policy were about its server.
    const primaryOptions: ShareOptions = primary && !target ? this.registry.optionsOf(primary, primaryOrigin) : {};
    const run = this.run;
    const stopped = this.stop();
    const generation = this.stopGeneration;
    // Go on as soon as the run has ended (no window in which the state says stopped while a
    // restart is still due); stop() itself also waits for the run record's removal.
    await (run ? run.exited : stopped);
    // A stop() issued while this one was in flight wins over the restart (like a start it cancels).
    if (generation !== this.stopGeneration) {
      for (const o of [primaryOrigin, ...others.map((x) => x.origin)]) void o?.close().catch(() => undefined);
      return { status: 'stopped' };
    }
    const settled = await this.start(next, primaryOptions);
    for (const o of others) {
      if (this.run && isLive(this._state)) await this.start(o.target, o.options).catch(() => undefined);
      else void o.origin?.close().catch(() => undefined);
    }
    // What the restart itself settled in (the shares added after it change no state).
    return settled;
  }

  /**
   * Stop within `deadlineMs` whatever cloudflared does: SIGTERM, then SIGKILL at the deadline.
   * For deactivate / CLI exit.
   */
  async shutdown(deadlineMs = 4000): Promise<void> {
    const run = this.run;
    const stopped = this.stop();
    if (!run) return stopped;
    const timer = setTimeout(() => this.kill(run, 'SIGKILL'), Math.max(0, deadlineMs - 500));
    try {
      await stopped;
    } finally {
      clearTimeout(timer);
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.autoStop.dispose();
    const done = this.shutdown();
    void done.finally(() => {
      this._onDidChangeState.dispose();
      this._onDidChangeMetrics.dispose();
      this._onDidLog.dispose();
      this._onDidRestart.dispose();
      this.registry.dispose();
      this.recorder?.dispose();
      this._onDidStopShareByItself.dispose();
    });
  }

  private cancelRestart(): void {
    if (!this.restartTimer) return;
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    if (this._state.status === 'restarting') {
      const { restartAt: _a, restartAttempt: _b, status: _s, ...rest } = this._state;
      this.setState({ ...rest, status: 'failed' });
    }
  }

  /** After an unexpected exit of a live run: schedule a restart if the policy allows one. */
  private maybeRestart(run: Run, failed: FailedState): FailedState | RestartingState {
    const policy = this.options.autoRestart;
    if (!policy || this.disposed || !run.edge.url) return failed;
    const now = Date.now();
    const decision = decideRestart(policy, this.restarts, now);
    this.restarts = decision.history;
    if (!decision.restart) {
      this.log('error', `Not restarting again. ${decision.reason}`);
      return { ...failed, error: { ...failed.error, message: `${failed.error.message} (${decision.reason})` } };
    }
    const { attempt, delayMs: delay } = decision;
    this.log('warn', `Restarting the tunnel in ${Math.round(delay / 100) / 10} s (attempt ${attempt} of ${policy.maxRestarts}). A quick tunnel gets a new URL when it restarts.`);
    const previousUrl = run.edge.url;
    // The shares stay in the registry, secrets included: the clients hold them (a named
    // tunnel's URLs then stay the same).
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this._state.status !== 'restarting' || this.run) return;
      void this.launch(run.target).then((state) => {
        this._onDidRestart.fire({ attempt, previousUrl, url: 'url' in state ? state.url : undefined, state });
      });
    }, delay);
    return { ...failed, status: 'restarting', restartAt: now + delay, restartAttempt: attempt };
  }

  // ---- internals ---------------------------------------------------------------------------

  private setState(next: TunnelState): void {
    const prev = this._state;
    if (prev.status === next.status && JSON.stringify(prev) === JSON.stringify(next)) return;
    this._state = next;
    if (next.status === 'failed' || next.status === 'restarting') this._lastError = next.error;
    this._onDidChangeState.fire(next);
  }

  private log(level: LogLevel, message: string, source: TunnelLogEntry['source'] = 'tunnel'): void {
    this._onDidLog.fire({ source, level, message });
  }

  private launch(target: TunnelTarget): Promise<TunnelState> {
    let settle!: (s: TunnelState) => void;
    let markExited!: () => void;
    const run: Run = {
      id: newRunId(),
      target,
      startedAt: Date.now(),
      edge: INITIAL_RUN_LOG_STATE,
      lastLines: [],
      lastParsed: [],
      secrets: [],
      stopRequested: false,
      abort: new AbortController(),
      ended: false,
      startSettled: false,
      startPromise: new Promise<TunnelState>((r) => (settle = r)),
      settleStart: () => undefined,
      exited: new Promise<void>((r) => (markExited = r)),
      markExited: () => undefined,
    };
    run.settleStart = (s) => {
      if (run.startSettled) return;
      run.startSettled = true;
      if (run.startTimer) clearTimeout(run.startTimer);
      settle(s);
    };
    run.markExited = markExited;
    this.run = run;
    const access = target.access === 'open' ? 'open: anyone with the URL gets in' : 'secret: only requests with the share secret get in';
    this.log('info', `Starting a ${this.options.named ? `named tunnel (${this.options.named.hostname})` : 'quick tunnel'} to ${target.host}:${target.port} (access ${access}).`);
    this.setState({ status: 'starting', target, startedAt: run.startedAt });
    run.startTimer = setTimeout(() => this.onStartTimeout(run), this.options.startTimeoutMs);
    void this.spawnRun(run);
    return run.startPromise;
  }

  private async spawnRun(run: Run): Promise<void> {
    let prepared: PreparedRun;
    try {
      prepared = await prepareRun(
        {
          findCloudflared: async () => {
            const info = await this.options.findCloudflared();
            this._cloudflared = info;
            run.cloudflared = info;
            return info;
          },
          named: () => this.options.named,
          startGate: () => this.startGate(run),
          stateDir: this.options.stateDir,
          runId: run.id,
          protocol: () => this.options.protocol,
          quicBlockedAt: () => this.protocolMemory.quicBlockedAt(),
          log: (level, message) => this.log(level, message),
        },
        run.abort.signal,
      );
    } catch (err) {
      // Aborted (a stop, a start timeout): the run ends as its stop or failure says.
      return this.endRun(run, null, null, err instanceof RunPreparationError ? err.error : undefined);
    }
    const { cloudflared: info, named, gate, configPath, protocol } = prepared;
    run.configPath = configPath;
    // A stop between the last step and here: endRun closes the gate and removes the file.
    if (run.abort.signal.aborted) return this.endRun(run, null, null);
    if (named) run.edge = { ...run.edge, url: named.url };
    if (prepared.http2Since !== undefined) run.http2Since = prepared.http2Since;
    const { stateDir } = this.options;
    run.protocol = protocol;
    const spec = buildRun({
      cloudflared: info,
      target: run.target,
      emptyConfigPath: run.configPath,
      gracePeriodMs: this.options.stopGraceMs,
      // Behind the gate, cloudflared passes the public Host on; the gate sets the origin's.
      hostHeader: 'public',
      originUrl: gate.url,
      ...(protocol !== 'auto' ? { protocol } : {}),
      ...(this.options.logLevel ? { logLevel: this.options.logLevel } : {}),
      ...(this.options.baseEnv ? { baseEnv: this.options.baseEnv } : {}),
      ...(named ? { named: { token: named.token } } : {}),
    });
    this.log('debug', `Running ${spec.command} ${spec.args.join(' ')}`);
    let proc: SpawnedProcess;
    try {
      proc = this.options.spawn(spec.command, spec.args, { env: spec.env });
    } catch (err) {
      return this.endRun(run, null, null, this.spawnError(err as NodeJS.ErrnoException, info.path));
    }
    run.proc = proc;
    run.pid = proc.pid;
    proc.on('error', (err: NodeJS.ErrnoException) => {
      // 'error' without a pid means it never started; otherwise 'exit' follows (or already came).
      if (!run.pid) this.endRun(run, null, null, this.spawnError(err, info.path));
      else this.log('warn', `cloudflared process error: ${err.message}`);
    });
    proc.once('exit', (code, signal) => this.endRun(run, code, signal));
    const parser = new CloudflaredLogParser({ json: spec.json });
    proc.stderr?.on('data', (chunk: Buffer) => this.onParsed(run, parser.push(chunk)));
    proc.stderr?.on('end', () => this.onParsed(run, parser.end()));
    const outParser = new CloudflaredLogParser();
    proc.stdout?.on('data', (chunk: Buffer) => this.onParsed(run, outParser.push(chunk)));
    proc.stdout?.on('end', () => this.onParsed(run, outParser.end()));
    if (!run.pid) return;
    if (run.stopRequested) this.terminate(run);
    else if (this.run === run && this._state.status === 'starting') this.setState(this.liveState(run));
    try {
      await writeRunRecord(stateDir, { id: run.id, pid: run.pid, configPath: run.configPath, ownerPid: process.pid, startedAt: run.startedAt, binary: info.path });
      if (run.ended) await removeRun(stateDir, run.id);
    } catch (err) {
      this.log('warn', `Could not record the cloudflared process (orphan clean-up will not know it): ${(err as Error).message}`);
    }
  }

  /** The run's gate with a route per share (an automatic restart brings back every one, secrets and all). */
  private async startGate(run: Run): Promise<AccessGate> {
    const [first, ...rest] = this.registry.list();
    if (!first) throw new RunPreparationAborted();
    const gate = await gateModule().startAccessGate({
      // The monitor's token lives in this bundle's copy of util/selfCheck, not in dist/gate.js's.
      isSelfCheck,
      routeId: first.id,
      ...(first.secret ? { secret: first.secret } : {}),
      mode: first.target.access,
      name: first.publicName,
      ...(first.origin?.authorization ? { originAuthorization: first.origin.authorization } : {}),
      ...(first.originHeaders ? { originHeaders: first.originHeaders } : {}),
      ...(first.origin?.handler ? { handler: first.origin.handler } : {}),
      ...(first.policy ? { policy: first.policy } : {}),
      origin: { host: first.target.host, port: first.target.port },
      hostHeader: this.options.hostHeader,
      log: (level, message) => this.log(level, `[gate] ${message}`),
      // Cf-* headers are Cloudflare's word only on cloudflared's own connections (the recorder
      // is their only reader: without it, no connection is looked up).
      ...(this.recorder
        ? {
            onPass: (req, res, info) => this.recorder?.tap(req, res, info),
            peerCheck: (clientPort, serverPort) => (run.pid ? peerIsProcess(run.pid, clientPort, serverPort) : Promise.resolve(false)),
          }
        : {}),
    });
    // From here shares added meanwhile are routed on it (addShare), and endRun closes it too.
    run.gate = gate;
    try {
      this.restoreLinks(run, first);
      for (const sh of rest) this.routeShare(run, sh);
    } catch (err) {
      await gate.close();
      throw err;
    }
    for (const sh of this.registry.list()) run.secrets.push(...(sh.secret ? [sh.secret] : []), ...sh.links.map((l) => l.secret));
    gate.onDidChangeOriginHealth((h) => {
      if (run !== this.run) return;
      this.registry.setHealth(h.routeId, h.ok ? { ok: true } : { ok: false, message: h.message ?? 'The local server does not answer.' });
    });
    return gate;
  }

  /**
   * A named tunnel's links of this share, as stored (the expired ones dropped), so the links
   * handed out keep working across restarts and editor sessions; [] without a store.
   */
  private async storedLinks(target: TunnelTarget & { access: AccessMode }, origin?: ShareOrigin): Promise<ShareLink[]> {
    const store = this.options.shareSecretStore;
    if (!store || target.access !== 'secret') return [];
    let raw: string | undefined;
    try {
      raw = await store.get(linksKey(target, origin));
    } catch (err) {
      this.log('warn', `Could not read the stored links: ${(err as Error).message}`);
      return [];
    }
    if (!raw) return [];
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      this.log('warn', 'The stored links are unreadable; they are dropped (make new ones).');
      return [];
    }
    const now = Date.now();
    const links = (Array.isArray(parsed) ? parsed : []).flatMap((l: unknown): ShareLink[] => {
      const o = l as Partial<ShareLink> | null;
      if (!o || typeof o.id !== 'string' || !/^[\w-]{1,40}$/.test(o.id) || typeof o.label !== 'string' || typeof o.secret !== 'string' || !SHARE_SECRET_PATTERN.test(o.secret)) return [];
      if (o.expiresAt !== undefined && (typeof o.expiresAt !== 'number' || o.expiresAt <= now)) return [];
      return [{ id: o.id, label: o.label.slice(0, 80), secret: o.secret, ...(o.expiresAt !== undefined ? { expiresAt: o.expiresAt } : {}) }];
    });
    return links;
  }

  /** A named tunnel keeps a share's links (see storedLinks). */
  private saveLinks(share: Share): void {
    const store = this.options.shareSecretStore;
    if (!store || share.target.access !== 'secret') return;
    void store.set(linksKey(share.target, share.origin), JSON.stringify(share.links)).catch((err: unknown) => this.log('warn', `Could not store the links (they last until the tunnel stops): ${(err as Error).message}`));
  }

  /** The store's secret for this share, or a new one put there; undefined without a store, or for an open share. */
  private async storedSecret(target: TunnelTarget & { access: AccessMode }, origin?: ShareOrigin): Promise<string | undefined> {
    const store = this.options.shareSecretStore;
    if (!store || target.access !== 'secret') return undefined;
    const key = shareKey(target, origin);
    let secret: string | undefined;
    try {
      secret = await store.get(key);
    } catch (err) {
      this.log('warn', `Could not read the stored share secret: ${(err as Error).message}`);
    }
    if (secret && SHARE_SECRET_PATTERN.test(secret)) return secret;
    if (secret) this.log('warn', 'The stored share secret is malformed; making a new one.');
    secret = randomBytes(32).toString('base64url');
    try {
      await store.set(key, secret);
    } catch (err) {
      this.log('warn', `Could not store the share secret (the next start will make another): ${(err as Error).message}`);
    }
    return secret;
  }

  private spawnError(err: NodeJS.ErrnoException, binary: string): TunnelError {
    if (err.code === 'ENOENT') {
      return { code: 'not-found', message: `cloudflared was not found at ${binary}. Install it (${INSTALL_URL}) or fix the cloudflared path setting.`, lastLines: [] };
    }
    if (err.code === 'EACCES') {
      return { code: 'not-executable', message: `${binary} could not be executed (permission denied). Run \`chmod +x ${binary}\` or point the cloudflared path setting elsewhere.`, lastLines: [] };
    }
    return { code: 'spawn-failed', message: `cloudflared could not be started: ${err.message}`, lastLines: [] };
  }

  private onParsed(run: Run, lines: ParsedLine[]): void {
    for (const { line, events } of lines) {
      if (!line.message && !line.fields['error']) continue;
      const raw = line.fields['error'] ? `${line.message}${line.message ? ' ' : ''}error=${JSON.stringify(line.fields['error'])}` : line.message;
      // At debug level cloudflared logs each request's URL and headers: never let the secret through.
      const redact = (t: string): string => run.secrets.reduce((acc, secret) => acc.split(secret).join(REDACTED_SECRET), t);
      const text = redact(raw);
      pushLine(run, text, redactLine(line, redact));
      this.log(line.level, text, 'cloudflared');
      if (run.ended || run.stopRequested || this.run !== run) continue;
      for (const ev of events) this.applyEvent(run, ev);
    }
  }

  /** One parsed event through the pure reducer (cloudflared/runReducer.ts), then its effects. */
  private applyEvent(run: Run, ev: CloudflaredEvent): void {
    const { state, effects, changed } = reduceRunLog(run.edge, ev, { now: Date.now(), ...(run.protocol ? { protocol: run.protocol } : {}) });
    run.edge = state;
    if (changed) this.setState(this.liveState(run));
    for (const effect of effects) {
      switch (effect.kind) {
        case 'url-known':
          this.log('info', `Public URL: ${effect.url} (not reachable until the edge connection registers).`);
          break;
        case 'metrics-known':
          this.startPoller(run);
          break;
        case 'registered':
          run.settleStart(this._state);
          void this.crossCheckUrl(run);
          void run.poller?.pollNow();
          break;
        case 'quic-worked':
          void this.protocolMemory.forget().catch(() => undefined);
          break;
        case 'quic-failed':
          this.log('warn', "QUIC connections to Cloudflare's edge fail here (is UDP port 7844 blocked?): the next start uses HTTP/2 (remembered for 7 days).");
          void this.protocolMemory.rememberQuicBlocked().catch((err: unknown) => this.log('debug', `Could not remember the protocol: ${(err as Error).message}`));
          break;
        case 'lost':
          break;
      }
    }
  }

  /** `/<secret>` of the primary share when it asks for one; undefined for an open one. */
  private sharePathOfRun(run: Run): string | undefined {
    const primary = this.registry.primary();
    return primary && run.gate ? run.gate.routeSecretPath(primary.id) : undefined;
  }

  /** The state implied by what we know of a live run. */
  private liveState(run: Run): StartingState | ConnectingState | ActiveState | ReconnectingState {
    const sharePath = this.sharePathOfRun(run);
    const base = {
      target: this.registry.primary()?.target ?? run.target,
      startedAt: run.startedAt,
      pid: run.pid ?? 0,
      ...(run.edge.metricsAddress ? { metricsAddress: run.edge.metricsAddress } : {}),
      ...(sharePath ? { sharePath } : {}),
    };
    const { url, connectedAt, connections } = run.edge;
    if (!url) return { status: 'starting', ...base };
    if (connectedAt === undefined) return { status: 'connecting', ...base, url };
    if (connections.length === 0) return { status: 'reconnecting', ...base, url, connectedAt, connections: [...connections], reason: run.edge.lostReason ?? 'edge connection lost' };
    return { status: 'active', ...base, url, connectedAt, connections: [...connections] };
  }

  /** `/quicktunnel` names the hostname cloudflared really got: trust it over our parse. */
  private async crossCheckUrl(run: Run): Promise<void> {
    if (!run.edge.metricsAddress || !run.edge.url) return;
    try {
      const host = await readQuickTunnel(run.edge.metricsAddress);
      if (!host || run.ended || this.run !== run) return;
      const url = `https://${host}`;
      if (url !== run.edge.url) {
        this.log('warn', `cloudflared's metrics server reports ${url}, the log said ${run.edge.url}; using ${url}.`);
        run.edge = { ...run.edge, url };
        this.setState(this.liveState(run));
      }
    } catch (err) {
      this.log('debug', `Could not cross-check the URL with /quicktunnel: ${(err as Error).message}`);
    }
  }

  /**
   * Metrics are read only while something shows them: `watchMetrics()` (a visible view, a
   * resource subscriber) starts the poller, the last watcher gone stops it. The last values stay.
   */
  watchMetrics(): Disposable {
    this.metricsWatchers++;
    if (this.run && !this.run.ended) this.startPoller(this.run);
    let disposed = false;
    return {
      dispose: () => {
        if (disposed) return;
        disposed = true;
        this.metricsWatchers--;
        if (this.metricsWatchers === 0 && this.run?.poller) {
          this.run.poller.dispose();
          delete this.run.poller;
        }
      },
    };
  }

  /** One read now (for a reader that does not watch); resolves when it is in, or failed. */
  async refreshMetrics(): Promise<void> {
    const run = this.run;
    if (!run || run.ended || !run.edge.metricsAddress) return;
    if (run.poller) {
      await run.poller.pollNow();
      return;
    }
    try {
      const m = await readMetrics(run.edge.metricsAddress);
      if (run.ended || this.run !== run) return;
      this._metrics = m;
      this._onDidChangeMetrics.fire(m);
    } catch (err) {
      this.log('debug', `Metrics read failed: ${(err as Error).message}`);
    }
  }

  private startPoller(run: Run): void {
    if (run.poller || !run.edge.metricsAddress || this.options.metricsIntervalMs <= 0 || this.metricsWatchers === 0) return;
    run.poller = new MetricsPoller(run.edge.metricsAddress, {
      intervalMs: this.options.metricsIntervalMs,
      onMetrics: (m) => {
        if (run.ended || this.run !== run) return;
        this._metrics = m;
        this._onDidChangeMetrics.fire(m);
      },
      onError: (e) => this.log('debug', `Metrics read failed: ${e.message}`),
    });
    run.poller.start();
  }

  private onStartTimeout(run: Run): void {
    // A stop requested before the timeout is already ending the run: it ends stopped, not timed out.
    if (run.startSettled || run.ended || run.stopRequested) return;
    const secs = Math.round(this.options.startTimeoutMs / 1000);
    if (run.edge.url) {
      // The URL exists; cloudflared keeps trying to reach the edge. Report honestly and keep going.
      this.log('warn', `No edge connection after ${secs} s; cloudflared keeps trying. The URL will not work until it connects.`);
      run.settleStart(this._state);
      return;
    }
    // Before the spawn (slow lookup or disk) the abort ends the preparation after its current step.
    run.failure = {
      code: 'timeout',
      message: `cloudflared gave no tunnel URL within ${secs} s. Cloudflare's quick-tunnel service may be slow or unreachable from this network; check the connection (and any proxy), then try again.`,
      lastLines: [...run.lastLines],
    };
    this.log('error', run.failure.message);
    run.abort.abort();
    this.terminate(run);
  }

  private kill(run: Run, signal: NodeJS.Signals): void {
    if (run.ended || !run.proc) return;
    try {
      run.proc.kill(signal);
    } catch {
      // already gone
    }
  }

  /** SIGTERM (cloudflared drains up to --grace-period), then SIGKILL a second after the grace. */
  private terminate(run: Run): void {
    if (run.ended || !run.proc || run.killTimer) return;
    this.kill(run, 'SIGTERM');
    run.killTimer = setTimeout(() => {
      this.log('warn', `cloudflared did not exit ${this.options.stopGraceMs + 1000} ms after SIGTERM; killing it.`);
      this.kill(run, 'SIGKILL');
    }, this.options.stopGraceMs + 1000);
  }

  private endRun(run: Run, code: number | null, signal: NodeJS.Signals | null, error?: TunnelError): void {
    if (run.ended) return;
    run.ended = true;
    if (run.startTimer) clearTimeout(run.startTimer);
    if (run.killTimer) clearTimeout(run.killTimer);
    run.poller?.dispose();
    // stop() resolves once the run record is gone too, so a host that exits right after leaves nothing.
    run.removed = Promise.all([removeRun(this.options.stateDir, run.id), run.gate?.close()]).then(
      () => undefined,
      () => undefined,
    );
    const wasCurrent = this.run === run;
    if (wasCurrent) this.run = undefined;
    if (wasCurrent && this._metrics) {
      this._metrics = undefined;
      this._onDidChangeMetrics.fire(undefined);
    }
    let next: TunnelState;
    if (run.stopRequested) {
      // A stop wins even over a failure already under way (a start that timed out while its
      // preparation step was still running, then Stop or dispose): the user asked for stopped.
      this.log('info', run.proc ? `cloudflared exited (${signal ? `signal ${signal}` : `code ${code}`}).` : 'Start cancelled.');
      next = { status: 'stopped' };
    } else {
      let err = error ?? run.failure ?? this.describeExit(run, code, signal);
      if (run.edge.quic === 'failed' && run.edge.connectedAt === undefined) err = { ...err, message: `${err.message} QUIC (UDP 7844) fails on this network: start again and MCP Tunnel uses HTTP/2 (remembered for 7 days).` };
      if (!error && !run.failure) this.log('error', err.message);
      next = { status: 'failed', target: run.target, error: err };
      // Only a run that got as far as a URL restarts: a failed start would just fail again.
      if (wasCurrent && !run.failure && run.startSettled && run.edge.url) next = this.maybeRestart(run, next);
    }
    // The shares end with the tunnel, unless an automatic restart brings them back.
    if (wasCurrent && next.status !== 'restarting') this.registry.clear();
    if (wasCurrent) this.setState(next);
    run.settleStart(wasCurrent ? this._state : next);
    run.markExited();
  }

  private describeExit(run: Run, code: number | null, signal: NodeJS.Signals | null): TunnelError {
    const lastLines = [...run.lastLines];
    const { kind, detail } = classifyFailure(run.lastParsed, code);
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    const d = detail ? ` (${detail})` : '';
    const base = { exitCode: code, signal, lastLines };
    switch (kind) {
      case 'no-network':
        return { ...base, code: 'no-network', message: `cloudflared could not reach Cloudflare's quick-tunnel service${d}. Check the internet connection, DNS, proxy or firewall, then start again.` };
      case 'rate-limited':
        return { ...base, code: 'service-unavailable', message: `Cloudflare's quick-tunnel service is rate limiting this machine (429 Too Many Requests). Wait a few minutes before starting again, or use a named tunnel.` };
      case 'service-unavailable':
        return { ...base, code: 'service-unavailable', message: `Cloudflare's quick-tunnel service did not give a tunnel${d}. It may be down or overloaded: try again in a minute, or use a named tunnel.` };
      case 'edge-unreachable':
        return { ...base, code: 'edge-unreachable', message: `cloudflared could not connect to Cloudflare's edge${d}. If this network blocks UDP port 7844 (QUIC), set the protocol to http2 and start again.` };
      case 'incorrect-usage':
        return { ...base, code: 'incorrect-usage', message: `This cloudflared (${run.cloudflared?.version ?? 'unknown version'}) rejected the command line${d}. Update cloudflared: ${INSTALL_URL}` };
      case 'updated':
        return { ...base, code: 'updated', message: `cloudflared replaced itself with an update and exited (code ${code}). Start the tunnel again.` };
      case 'config':
        return { ...base, code: 'exited', message: `cloudflared rejected its configuration${d}.` };
      default: {
        const last = [...lastLines].reverse().find((l) => /err|fail|fatal|cannot|could not|unable/i.test(l)) ?? lastLines[lastLines.length - 1];
        const phase = run.edge.connectedAt ? 'while the tunnel was live' : run.edge.url ? 'before connecting to the edge' : 'before the tunnel URL was issued';
        return { ...base, code: 'exited', message: `cloudflared ${how} ${phase}${last ? `: ${last}` : ''}. See the log for details, then start again.` };
      }
    }
  }
}

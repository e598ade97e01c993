/**
 * Checks each share's public URL with the reachability doctor once the tunnel is active (and each
 * share that appears while it is), one share at a time, and keeps the latest result per share for
 * the UI, the CLI and agents. Never before `active`: probing a brand-new name before cloudflared
 * registered it makes resolvers cache the miss (negative caching, up to 30 min).
 */
import { selfCheckHeaders } from '../util/selfCheck';
import { Emitter, DisposableStore, type Disposable, type Event } from '../util/events';
import type { TunnelState } from '../model/tunnelState';
import type { ShareSnapshot } from '../shares/shares';
// Types only: the check itself (reachability.ts) is given, so the extension can load it on first use (dist/doctor.js).
import type { ReachabilityResult, ReachabilityTarget } from './reachability';

/** What the monitor needs of the controller (TunnelController has it). */
export interface ReachabilitySource {
  readonly state: TunnelState;
  readonly onDidChangeState: Event<TunnelState>;
  readonly onDidChangeShares: Event<void>;
  listShares(): Array<Pick<ShareSnapshot, 'id' | 'mcp_url' | 'kind'>>;
}

/** checkReachability with its dependencies bound (tests point it at a fake edge). */
export type ReachabilityCheck = (target: ReachabilityTarget, onProgress?: (progress: ReachabilityResult) => void) => Promise<ReachabilityResult>;

/** What the tree and the MCP server read of the monitor. */
export interface ReachabilityView {
  result(shareId: string): ReachabilityResult | undefined;
  readonly onDidChange: Event<unknown>;
}

export interface ReachabilityMonitorOptions {
  /** The check to run (`redirectedCheck` in reachability.ts, or a test's). */
  check: ReachabilityCheck;
  /** Check every share once when the tunnel becomes active and each new one (default true); false: only check(). */
  auto?: boolean | (() => boolean);
}

/** A share's result changed: a progress state, an outcome, or undefined (cleared). */
export interface ReachabilityChange {
  shareId: string;
  result: ReachabilityResult | undefined;
}

interface Running {
  shareId: string;
  url: string;
  abort: AbortController;
}

export class ReachabilityMonitor implements Disposable, ReachabilityView {
  private readonly _onDidChange = new Emitter<ReachabilityChange>();
  /** A share's result changed (progress, outcome, or cleared). */
  readonly onDidChange: Event<ReachabilityChange> = this._onDidChange.event;
  private readonly check_: ReachabilityCheck;
  private readonly auto: () => boolean;
  private readonly subscriptions = new DisposableStore();
  /** The last outcome per share, with the URL it was for. */
  private readonly outcomes = new Map<string, { url: string; result: ReachabilityResult }>();
  /** The progress of the check under way, per share. */
  private readonly progress = new Map<string, ReachabilityResult>();
  /** The URL each share was last checked (or is being checked) for: the automatic checks run once per URL. */
  private readonly attempted = new Map<string, string>();
  private readonly queue: string[] = [];
  private readonly waiters = new Map<string, Array<(r: ReachabilityResult | undefined) => void>>();
  private running: Running | undefined;
  /** The public URL of the active run the results belong to. */
  private runUrl: string | undefined;
  private disposed = false;

  constructor(
    private readonly source: ReachabilitySource,
    options: ReachabilityMonitorOptions,
  ) {
    this.check_ = options.check;
    const auto = options.auto ?? true;
    this.auto = typeof auto === 'function' ? auto : () => auto;
    this.subscriptions.add(source.onDidChangeState((s) => this.onState(s)));
    this.subscriptions.add(source.onDidChangeShares(() => this.onShares()));
    this.onState(source.state);
  }

  /** The share's latest result: the check under way (`checking`, `waiting-dns`), else the last outcome. */
  result(shareId: string): ReachabilityResult | undefined {
    return this.progress.get(shareId) ?? this.outcomes.get(shareId)?.result;
  }

  /** Every share's latest result, by share id. */
  results(): Map<string, ReachabilityResult> {
    const all = new Map<string, ReachabilityResult>();
    for (const [id, o] of this.outcomes) all.set(id, o.result);
    for (const [id, p] of this.progress) all.set(id, p);
    return all;
  }

  /**
   * Checks one share (or all) now, after any check under way; resolves with their outcomes. Empty
   * while the tunnel is not active; a share that goes away meanwhile is left out.
   */
  check(shareId?: string): Promise<ReachabilityResult[]> {
    if (this.disposed || this.source.state.status !== 'active') return Promise.resolve([]);
    const ids = this.source
      .listShares()
      .filter((s) => s.mcp_url && (shareId === undefined || s.id === shareId))
      .map((s) => s.id);
    const outcomes = ids.map((id) => new Promise<ReachabilityResult | undefined>((resolve) => this.waiters.set(id, [...(this.waiters.get(id) ?? []), resolve])));
    for (const id of ids) this.enqueue(id);
    this.pump();
    return Promise.all(outcomes).then((rs) => rs.filter((r): r is ReachabilityResult => r !== undefined));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.subscriptions.dispose();
    this.reset(false);
    this._onDidChange.dispose();
  }

  private onState(s: TunnelState): void {
    if (s.status === 'active') {
      if (s.url !== this.runUrl) this.reset(true);
      this.runUrl = s.url;
      this.checkNewShares();
    } else if (s.status === 'connecting' || s.status === 'reconnecting') {
      // The URL stays; a check now would only see the edge without a connection. Again once active.
      this.abortRunning();
    } else {
      this.reset(true);
      this.runUrl = undefined;
    }
  }

  private onShares(): void {
    const live = new Map(this.source.listShares().map((s) => [s.id, s.mcp_url]));
    for (const id of new Set([...this.outcomes.keys(), ...this.progress.keys(), ...this.attempted.keys(), ...this.queue])) {
      if (!live.has(id)) this.drop(id);
    }
    if (this.source.state.status === 'active') this.checkNewShares();
  }

  /** Queues the shares not checked yet for their current URL (automatic mode). */
  private checkNewShares(): void {
    if (!this.auto() || this.disposed) return;
    for (const s of this.source.listShares()) if (s.mcp_url && this.attempted.get(s.id) !== s.mcp_url) this.enqueue(s.id);
    this.pump();
  }

  private enqueue(id: string): void {
    if (this.running?.shareId !== id && !this.queue.includes(id)) this.queue.push(id);
  }

  /** Starts the next queued check unless one runs: one at a time, only while active. */
  private pump(): void {
    if (this.running || this.disposed || this.source.state.status !== 'active') return;
    const id = this.queue.shift();
    if (id === undefined) return;
    const url = this.source.listShares().find((s) => s.id === id)?.mcp_url;
    if (!url) {
      this.settle(id, undefined);
      this.pump();
      return;
    }
    const run: Running = { shareId: id, url, abort: new AbortController() };
    this.running = run;
    this.attempted.set(id, url);
    const current = () => this.running === run;
    void this.check_({ mcpUrl: url, headers: selfCheckHeaders(), signal: run.abort.signal }, (p) => current() && this.setProgress(id, p))
      .then(
        (result) => {
          if (!current()) return;
          this.outcomes.set(id, { url, result });
          this.progress.delete(id);
          this._onDidChange.fire({ shareId: id, result });
          this.settle(id, result);
        },
        () => {
          // Aborted (then whoever aborted cleaned up), or a URL the check refuses: nothing to keep.
          if (!current()) return;
          this.clearProgress(id);
          this.settle(id, undefined);
        },
      )
      .finally(() => {
        if (current()) this.running = undefined;
        this.pump();
      });
  }

  private setProgress(id: string, p: ReachabilityResult): void {
    this.progress.set(id, p);
    this._onDidChange.fire({ shareId: id, result: p });
  }

  private clearProgress(id: string): void {
    if (this.progress.delete(id)) this._onDidChange.fire({ shareId: id, result: this.result(id) });
  }

  private settle(id: string, result: ReachabilityResult | undefined): void {
    const waiting = this.waiters.get(id);
    this.waiters.delete(id);
    for (const w of waiting ?? []) w(result);
  }

  /** Aborts the check under way; its share is checked again (automatic mode) when the tunnel is active. */
  private abortRunning(): void {
    const run = this.running;
    if (!run) return;
    this.running = undefined;
    run.abort.abort(new Error('reachability check cancelled'));
    this.attempted.delete(run.shareId);
    this.clearProgress(run.shareId);
    this.settle(run.shareId, undefined);
  }

  /** A share went away: its check stops, its result goes. */
  private drop(id: string): void {
    if (this.running?.shareId === id) this.abortRunning();
    const i = this.queue.indexOf(id);
    if (i >= 0) this.queue.splice(i, 1);
    this.attempted.delete(id);
    this.settle(id, undefined);
    const hadOutcome = this.outcomes.delete(id);
    const hadProgress = this.progress.delete(id);
    if (hadOutcome || hadProgress) this._onDidChange.fire({ shareId: id, result: undefined });
  }

  /** The run ended or changed: every check stops, every result goes. */
  private reset(announce: boolean): void {
    this.abortRunning();
    const ids = new Set([...this.outcomes.keys(), ...this.progress.keys()]);
    for (const id of this.queue.splice(0)) this.settle(id, undefined);
    for (const id of [...this.waiters.keys()]) this.settle(id, undefined);
    this.outcomes.clear();
    this.progress.clear();
    this.attempted.clear();
    if (announce) for (const id of ids) this._onDidChange.fire({ shareId: id, result: undefined });
  }
}

/**
 * A TunnelApi whose states the test drives: `start()` walks starting → connecting → active with a
 * fake URL (or stops at `connecting`, or fails, as `nextOutcome` says). Real Emitter, real snapshotOf.
 */
import type { RecordedCall } from '../../src/core/gate/recorder';
import { Emitter } from '../../src/core/util/events';
import { shareName, type ShareSnapshot } from '../../src/core/shares/shares';
import { sameTarget } from '../../src/core/model/target';
import {
  TunnelBusyError,
  isLive,
  snapshotOf,
  type CloudflaredInfo,
  type TunnelApi,
  type TunnelError,
  type TunnelMetrics,
  type TunnelSnapshot,
  type TunnelState,
  type TunnelStatus,
  type TunnelTarget,
} from '../../src/core/model/tunnelState';

export type FakeOutcome = 'active' | 'connecting' | { fail: TunnelError };

export const FAKE_URL = 'https://quiet-fox-lake.trycloudflare.com';
export const FAKE_PID = 4242;
/** The share path a fake run in secret mode gets (only when the target asks for `secret` explicitly). */
export const FAKE_SHARE_PATH = '/fake-share-secret-0123456789abcdefghijklmnopqrstu';
/** The one share a fake tunnel carries while live. */
export const FAKE_SHARE_ID = 'sh-0000beef';

export class FakeController implements TunnelApi {
  readonly stateEmitter = new Emitter<TunnelState>();
  readonly metricsEmitter = new Emitter<TunnelMetrics | undefined>();
  readonly onDidChangeState = this.stateEmitter.event;
  readonly onDidChangeMetrics = this.metricsEmitter.event;
  readonly sharesEmitter = new Emitter<void>();
  readonly onDidChangeShares = this.sharesEmitter.event;
  readonly activityEmitter = new Emitter<void>();
  readonly onDidRecordActivity = this.activityEmitter.event;
  recorded: RecordedCall[] = [];
  activity(shareId?: string): RecordedCall[] {
    return this.recorded.filter((c) => shareId === undefined || c.share_id === shareId);
  }
  /** How the next `start()` ends. */
  nextOutcome: FakeOutcome = 'active';
  /** If set, `start()` waits for it after `starting` (to observe in-flight starts). */
  gate: Promise<void> | undefined;
  readonly startCalls: TunnelTarget[] = [];
  stopCalls = 0;
  readonly states: TunnelState[] = [];
  cloudflared: CloudflaredInfo | undefined = { path: '/usr/local/bin/cloudflared', version: '2026.8.2' };
  lastError: TunnelError | undefined;
  private current: TunnelState = { status: 'stopped' };
  private currentMetrics: TunnelMetrics | undefined;
  private inflight: Promise<TunnelState> | undefined;

  get state(): TunnelState {
    return this.current;
  }
  get metrics(): TunnelMetrics | undefined {
    return this.currentMetrics;
  }

  /** Set the state (fires only on change, like the real controller). */
  setState(next: TunnelState): void {
    if (next === this.current) return;
    this.current = next;
    if (next.status === 'failed') this.lastError = next.error;
    this.states.push(next);
    this.stateEmitter.fire(next);
  }

  setMetrics(next: TunnelMetrics | undefined): void {
    this.currentMetrics = next;
    this.metricsEmitter.fire(next);
  }

  start(target: TunnelTarget): Promise<TunnelState> {
    this.startCalls.push(target);
    const s = this.current;
    if (isLive(s)) {
      if (!sameTarget(s.target, target)) return Promise.reject(new TunnelBusyError(s.target, target));
      return this.inflight ?? Promise.resolve(s);
    }
    const run = this.run(target);
    this.inflight = run;
    void run.finally(() => {
      if (this.inflight === run) this.inflight = undefined;
    });
    return run;
  }

  private async run(target: TunnelTarget): Promise<TunnelState> {
    const startedAt = Date.now();
    const share = target.access === 'secret' ? { sharePath: FAKE_SHARE_PATH } : {};
    this.setState({ status: 'starting', target, startedAt, pid: FAKE_PID, ...share });
    await (this.gate ?? tick());
    if (this.status() !== 'starting') return this.current; // stopped meanwhile
    const outcome = this.nextOutcome;
    if (typeof outcome === 'object') {
      this.setState({ status: 'failed', target, error: outcome.fail });
      return this.current;
    }
    this.setState({ status: 'connecting', target, startedAt, pid: FAKE_PID, url: FAKE_URL, metricsAddress: '127.0.0.1:20241', ...share });
    await tick();
    if (outcome === 'connecting' || this.status() !== 'connecting') return this.current;
    this.setState({
      status: 'active',
      target,
      startedAt,
      pid: FAKE_PID,
      url: FAKE_URL,
      metricsAddress: '127.0.0.1:20241',
      ...share,
      connectedAt: Date.now(),
      connections: [{ connIndex: 0, location: 'ams01', protocol: 'quic' }],
    });
    return this.current;
  }

  async stop(): Promise<void> {
    this.stopCalls++;
    const s = this.current;
    if (s.status === 'stopped' || s.status === 'failed') return;
    this.setState({ status: 'stopping', ...('target' in s ? { target: s.target } : {}), pid: FAKE_PID, ...('url' in s ? { url: s.url } : {}) });
    await tick();
    this.currentMetrics = undefined;
    this.setState({ status: 'stopped' });
  }

  async restart(target?: TunnelTarget): Promise<TunnelState> {
    const s = this.current;
    const next = target ?? ('target' in s && s.target ? s.target : undefined);
    await this.stop();
    if (!next) return this.current;
    return this.start(next);
  }

  /** Read through a call so TypeScript does not keep a narrowing across awaits. */
  private status(): TunnelStatus {
    return this.current.status;
  }

  snapshot(): TunnelSnapshot {
    return snapshotOf(this.current, Date.now(), this.lastError);
  }

  /** One share while live: the tunnel's own target (this fake carries no other). */
  listShares(): ShareSnapshot[] {
    const s = this.current;
    if (!isLive(s)) return [];
    const snap = this.snapshot();
    return [
      {
        id: FAKE_SHARE_ID,
        name: shareName(s.target),
        kind: 'port',
        command: null,
        detail: null,
        policy: null,
        stops_at: null,
        stop_reason: null,
        idle_stop_minutes: null,
        access: snap.access ?? 'secret',
        local_url: snap.local_url ?? '',
        local_mcp_url: snap.local_mcp_url ?? '',
        mcp_url: snap.mcp_url,
        created_at: new Date(s.startedAt).toISOString(),
        requests: 0,
        errors: 0,
        last_request_at: null,
        reachable: null,
        problem: null,
        links: [],
      },
    ];
  }

  findShare(target: TunnelTarget): ShareSnapshot | undefined {
    const s = this.current;
    return isLive(s) && sameTarget(s.target, target) ? this.listShares()[0] : undefined;
  }

  metricsWatchers = 0;
  watchMetrics(): { dispose(): void } {
    this.metricsWatchers++;
    let done = false;
    return { dispose: () => void (!done && ((done = true), this.metricsWatchers--)) };
  }

  refreshMetrics(): Promise<void> {
    return Promise.resolve();
  }

  async stopShare(id: string): Promise<boolean> {
    if (id !== FAKE_SHARE_ID || !isLive(this.current)) return false;
    await this.stop();
    return true;
  }

  /** Listeners on both emitters (leak checks). */
  get listenerCount(): number {
    return this.stateEmitter.listenerCount + this.metricsEmitter.listenerCount;
  }
}

function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

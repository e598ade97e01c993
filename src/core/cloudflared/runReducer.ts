/**
 * Pure log → state reducer for one cloudflared run: the parser's typed events (log.ts) move what
 * we know of the run (URL, metrics address, edge connections, QUIC outcome), and say which side
 * effects the controller owes (a log line, the metrics poller, settling start(), remembering the
 * protocol). No I/O, no clock: the caller passes `now`. The controller turns the result into a
 * {@link TunnelState} (see tunnelController.ts `liveState`).
 */
import type { CloudflaredEvent } from './log';
import type { EdgeProtocol } from './locate';
import type { EdgeConnection } from '../model/tunnelState';

/** What one run's log has told us so far. */
export interface RunLogState {
  /** The public URL (a quick tunnel's from its banner; a named tunnel's is set before the spawn). */
  readonly url?: string;
  /** `127.0.0.1:<port>` of cloudflared's metrics server. */
  readonly metricsAddress?: string;
  /** First registration (epoch ms): uptime counts from here and survives reconnects. */
  readonly connectedAt?: number;
  /** Registered edge connections, by connIndex ascending. */
  readonly connections: readonly EdgeConnection[];
  /**
   * Set while every connection of a run that had registered is down: why (cloudflared's error,
   * else the down reason). Cleared by the next registration.
   */
  readonly lostReason?: string;
  /**
   * QUIC failed on this run before any registration (a dial error while asking for QUIC), or a
   * QUIC connection registered. Decided once per run.
   */
  readonly quic?: 'failed' | 'worked';
}

export const INITIAL_RUN_LOG_STATE: RunLogState = Object.freeze({ connections: Object.freeze([]) });

export interface ReduceContext {
  /** Epoch ms of the event. */
  now: number;
  /** The protocol the run asked for; `http2` runs never blame QUIC. Default `auto`. */
  protocol?: EdgeProtocol;
}

/** What the controller owes after an event. */
export type RunEffect =
  /** The URL became known: say so (it does not work until a connection registers). */
  | { kind: 'url-known'; url: string }
  /** The metrics server's address became known: the poller may start. */
  | { kind: 'metrics-known'; address: string }
  /** A connection registered and the URL is known: start() settles, the URL is cross-checked, metrics read. */
  | { kind: 'registered' }
  /** A QUIC connection registered: forget an earlier "QUIC is blocked here". */
  | { kind: 'quic-worked' }
  /** QUIC failed before any registration: remember to use HTTP/2 next time. */
  | { kind: 'quic-failed' }
  /** The last connection of a live run dropped: the tunnel is reconnecting. */
  | { kind: 'lost'; reason: string };

export interface ReduceResult {
  state: RunLogState;
  effects: RunEffect[];
  /** The tunnel's state (as the controller derives it) should be recomputed and published. */
  changed: boolean;
}

function withConnection(list: readonly EdgeConnection[], c: EdgeConnection): EdgeConnection[] {
  return [...list.filter((x) => x.connIndex !== c.connIndex), c].sort((a, b) => a.connIndex - b.connIndex);
}

/**
 * One event → the next state and its effects. Events that say nothing new return the same
 * `state` object and no effects.
 */
export function reduceRunLog(state: RunLogState, event: CloudflaredEvent, ctx: ReduceContext): ReduceResult {
  const same: ReduceResult = { state, effects: [], changed: false };
  switch (event.kind) {
    case 'url':
      // The first banner wins (a later box in the same run is not a new tunnel).
      if (state.url) return same;
      // A registration logged before the banner: the URL works from now.
      return { state: { ...state, url: event.url }, effects: [{ kind: 'url-known', url: event.url }, ...(state.connectedAt !== undefined ? [{ kind: 'registered' } as const] : [])], changed: true };
    case 'metrics':
      if (state.metricsAddress === event.address) return same;
      return { state: { ...state, metricsAddress: event.address }, effects: [{ kind: 'metrics-known', address: event.address }], changed: state.url !== undefined };
    case 'registered': {
      const effects: RunEffect[] = [];
      let quic = state.quic;
      if (event.protocol === 'quic' && quic !== 'worked') {
        quic = 'worked';
        effects.push({ kind: 'quic-worked' });
      }
      const conn: EdgeConnection = {
        connIndex: event.connIndex,
        ...(event.location ? { location: event.location } : {}),
        ...(event.ip ? { ip: event.ip } : {}),
        ...(event.protocol ? { protocol: event.protocol } : {}),
      };
      const { lostReason: _dropped, ...rest } = state;
      const next: RunLogState = { ...rest, connections: withConnection(state.connections, conn), connectedAt: state.connectedAt ?? ctx.now, ...(quic ? { quic } : {}) };
      if (state.url) effects.push({ kind: 'registered' });
      return { state: next, effects, changed: state.url !== undefined };
    }
    case 'down': {
      const effects: RunEffect[] = [];
      let quic = state.quic;
      // A quick tunnel in auto (or quic) only ever dials QUIC: a failed dial before any
      // registration is QUIC failing. After a registration it is a passing hiccup.
      if (event.reason === 'dial-failed' && ctx.protocol !== 'http2' && quic === undefined && state.connectedAt === undefined) {
        quic = 'failed';
        effects.push({ kind: 'quic-failed' });
      }
      // "Retrying" and a failed dial name a connection only when cloudflared does; the others
      // mean the connection they name (or the first) is gone.
      const index = event.reason === 'retrying' || event.reason === 'dial-failed' ? event.connIndex : (event.connIndex ?? 0);
      const connections = index === undefined ? state.connections : state.connections.filter((c) => c.connIndex !== index);
      let lostReason = state.lostReason;
      let changed = false;
      if (state.connectedAt !== undefined && connections.length === 0 && lostReason === undefined) {
        lostReason = event.error ?? event.reason;
        effects.push({ kind: 'lost', reason: lostReason });
        changed = true;
      }
      if (connections === state.connections && quic === state.quic && lostReason === state.lostReason) return same;
      return { state: { ...state, connections, ...(quic ? { quic } : {}), ...(lostReason !== undefined ? { lostReason } : {}) }, effects, changed };
    }
    default:
      return same;
  }
}

/** Folds a sequence of events (tests, replaying a transcript). */
export function reduceRunLogAll(events: readonly CloudflaredEvent[], ctx: ReduceContext, state: RunLogState = INITIAL_RUN_LOG_STATE): { state: RunLogState; effects: RunEffect[] } {
  const effects: RunEffect[] = [];
  for (const ev of events) {
    const r = reduceRunLog(state, ev, ctx);
    state = r.state;
    effects.push(...r.effects);
  }
  return { state, effects };
}

/**
 * "Share for…": a share may stop by itself at a time, or after so long without a request. Pure:
 * the controller asks which shares are due and when to look again, and stops them.
 */

/** When a share stops by itself; neither: it runs until stopped. */
export interface ShareLifetime {
  /** Epoch ms. */
  stopAt?: number;
  /** Stop after this long without a request (counted from the last one, or from the start). */
  idleMs?: number;
}

/** The lifetime a user or setting asks for, relative to now. */
export interface LifetimeRequest {
  afterMs?: number;
  idleMs?: number;
}

export interface LifetimeView {
  id: string;
  createdAt: number;
  lifetime?: ShareLifetime;
  lastRequestAt?: number;
}

/** Minutes (a setting, a flag, a pick) as a lifetime request; 0 or none: no limit of that kind; undefined when neither limits. */
export function lifetimeInMinutes(afterMinutes: number | undefined, idleMinutes: number | undefined): LifetimeRequest | undefined {
  const ms = (m: number | undefined): number | undefined => (m !== undefined && m > 0 ? m * 60_000 : undefined);
  const afterMs = ms(afterMinutes);
  const idleMs = ms(idleMinutes);
  if (afterMs === undefined && idleMs === undefined) return undefined;
  return { ...(afterMs !== undefined ? { afterMs } : {}), ...(idleMs !== undefined ? { idleMs } : {}) };
}

/** Longest a share may be asked to live or idle: 30 days (a longer one is "until stopped"). */
export const MAX_LIFETIME_MS = 30 * 86_400_000;

/** `{ afterMs, idleMs }` → a lifetime from `now`; undefined when it limits nothing. Throws on a bad value. */
export function lifetimeFrom(req: LifetimeRequest | undefined, now: number): ShareLifetime | undefined {
  if (!req) return undefined;
  const check = (v: number | undefined, what: string): number | undefined => {
    if (v === undefined || v === 0) return undefined;
    if (!Number.isFinite(v) || v < 1000 || v > MAX_LIFETIME_MS) throw new RangeError(`${what} must be from 1 second to 30 days (got ${v} ms).`);
    return Math.round(v);
  };
  const after = check(req.afterMs, 'A share\'s time');
  const idle = check(req.idleMs, 'A share\'s idle time');
  if (after === undefined && idle === undefined) return undefined;
  return { ...(after !== undefined ? { stopAt: now + after } : {}), ...(idle !== undefined ? { idleMs: idle } : {}) };
}

/** When the share stops by itself (the earlier of its deadlines), and why; undefined: never. */
export function deadlineOf(s: LifetimeView): { at: number; why: 'time' | 'idle' } | undefined {
  const l = s.lifetime;
  if (!l) return undefined;
  const idleAt = l.idleMs !== undefined ? (s.lastRequestAt ?? s.createdAt) + l.idleMs : undefined;
  if (l.stopAt !== undefined && (idleAt === undefined || l.stopAt <= idleAt)) return { at: l.stopAt, why: 'time' };
  return idleAt !== undefined ? { at: idleAt, why: 'idle' } : undefined;
}

/** The shares due now, and the next time one may be (to look again then). */
export function lifetimeDue(shares: readonly LifetimeView[], now: number): { due: Array<{ id: string; why: 'time' | 'idle' }>; nextAt?: number } {
  const due: Array<{ id: string; why: 'time' | 'idle' }> = [];
  let nextAt: number | undefined;
  for (const s of shares) {
    const d = deadlineOf(s);
    if (!d) continue;
    if (d.at <= now) due.push({ id: s.id, why: d.why });
    else nextAt = nextAt === undefined ? d.at : Math.min(nextAt, d.at);
  }
  return { due, ...(nextAt !== undefined ? { nextAt } : {}) };
}

/** `1 h`, `45 min`, `30 s`: a duration in the largest unit that fits (rounded up: never promise more). */
export function shortDuration(ms: number): string {
  const s = Math.max(0, Math.ceil(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.ceil(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  const rest = m % 60;
  return rest ? `${h} h ${rest} min` : `${h} h`;
}

/** One line for the UI: `stops in 46 min` / `stops after 30 min without requests (in 12 min)`. */
export function describeLifetime(s: LifetimeView, now: number): string | undefined {
  const d = deadlineOf(s);
  if (!d || !s.lifetime) return undefined;
  const left = shortDuration(d.at - now);
  if (d.why === 'time') return `stops in ${left}`;
  return `stops after ${shortDuration(s.lifetime.idleMs ?? 0)} without requests (in ${left})`;
}

/**
 * Stops shares when they are due: one timer, set to the next deadline; at it, the shares due are
 * stopped and the rest looked at again (a request since may have moved an idle deadline).
 */
export class AutoStop {
  private timer: NodeJS.Timeout | undefined;
  private disposed = false;

  constructor(
    private readonly shares: () => readonly LifetimeView[],
    private readonly stop: (id: string, why: 'time' | 'idle') => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** Look again (a share came, went or got a lifetime). */
  reschedule(): void {
    if (this.disposed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const { due, nextAt } = lifetimeDue(this.shares(), this.now());
    for (const d of due) this.stop(d.id, d.why);
    if (due.length > 0) {
      // Stopping changed the list: look again on the next turn.
      this.timer = setTimeout(() => this.reschedule(), 0);
      this.timer.unref();
      return;
    }
    if (nextAt === undefined) return;
    // Node fires a timer beyond 2^31 ms at once: wake up earlier and look again.
    this.timer = setTimeout(() => this.reschedule(), Math.min(2 ** 31 - 1, Math.max(0, nextAt - this.now()) + 5));
    this.timer.unref();
  }

  dispose(): void {
    this.disposed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

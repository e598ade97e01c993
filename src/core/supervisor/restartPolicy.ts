/**
 * When to restart cloudflared after it died while live: a pure decision from the policy, the
 * times of the earlier automatic restarts and the clock. Exponential backoff, at most
 * `maxRestarts` within `windowMs`; the controller only carries it out.
 */

export interface RestartPolicy {
  maxRestarts: number;
  windowMs: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = { maxRestarts: 3, windowMs: 5 * 60_000, baseDelayMs: 1000, maxDelayMs: 30_000 };

export type RestartDecision =
  /** Restart after `delayMs`; `history` is the new list of restart times (this one included). */
  | { restart: true; delayMs: number; attempt: number; history: number[] }
  /** Give up: `reason` says why, for the user; `history` is what is left in the window. */
  | { restart: false; reason: string; history: number[] };

export function decideRestart(policy: RestartPolicy, history: readonly number[], now: number): RestartDecision {
  const recent = history.filter((t) => now - t < policy.windowMs);
  if (recent.length >= policy.maxRestarts) {
    const mins = Math.round(policy.windowMs / 60_000);
    return { restart: false, reason: `Gave up after ${recent.length} automatic restarts in ${mins} minutes.`, history: recent };
  }
  const attempt = recent.length + 1;
  const delayMs = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  return { restart: true, delayMs, attempt, history: [...recent, now] };
}

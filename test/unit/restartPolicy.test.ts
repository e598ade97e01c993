/** The restart policy on its own: a pure function of the policy, the restart history and the clock. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_RESTART_POLICY, decideRestart } from '../../src/core/supervisor/restartPolicy';

const P = { maxRestarts: 3, windowMs: 60_000, baseDelayMs: 1000, maxDelayMs: 3000 };

describe('decideRestart', () => {
  it('backs off exponentially, capped at maxDelayMs, counting only restarts inside the window', () => {
    const a = decideRestart(P, [], 0);
    assert.deepEqual(a, { restart: true, delayMs: 1000, attempt: 1, history: [0] });
    const b = decideRestart(P, a.history, 10_000);
    assert.deepEqual(b, { restart: true, delayMs: 2000, attempt: 2, history: [0, 10_000] });
    const c = decideRestart({ ...P, maxRestarts: 5 }, [0, 1, 2], 3);
    assert.equal(c.restart && c.delayMs, 3000, 'capped');
  });

  it('gives up at maxRestarts within the window, and says so; old restarts fall out of the window', () => {
    const full = [0, 10_000, 20_000];
    const d = decideRestart(P, full, 30_000);
    assert.equal(d.restart, false);
    assert.equal(!d.restart && d.reason, 'Gave up after 3 automatic restarts in 1 minutes.');
    const later = decideRestart(P, full, 65_000);
    assert.deepEqual(later, { restart: true, delayMs: 3000, attempt: 3, history: [10_000, 20_000, 65_000] }, 'the third attempt: 4 s, capped at 3 s');
  });

  it('the default: 3 restarts in 5 minutes, 1 s, 2 s, 4 s', () => {
    let history: number[] = [];
    const delays: number[] = [];
    for (let i = 0; i < 4; i++) {
      const d = decideRestart(DEFAULT_RESTART_POLICY, history, i * 1000);
      history = d.history;
      if (d.restart) delays.push(d.delayMs);
    }
    assert.deepEqual(delays, [1000, 2000, 4000]);
  });
});

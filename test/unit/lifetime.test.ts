/** "Share for…": when a share stops by itself (pure rules, and the one timer that acts on them). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AutoStop, deadlineOf, describeLifetime, lifetimeDue, lifetimeFrom, shortDuration, type LifetimeView } from '../../src/core/shares/lifetime';

describe('share lifetime', () => {
  it('a request becomes a lifetime from now; nothing asked is no lifetime; bad values are refused', () => {
    assert.deepEqual(lifetimeFrom({ afterMs: 60_000 }, 1000), { stopAt: 61_000 });
    assert.deepEqual(lifetimeFrom({ idleMs: 30_000, afterMs: 0 }, 1000), { idleMs: 30_000 });
    assert.equal(lifetimeFrom({}, 1000), undefined);
    assert.equal(lifetimeFrom(undefined, 1000), undefined);
    assert.throws(() => lifetimeFrom({ afterMs: 10 }, 0), /from 1 second to 30 days/);
    assert.throws(() => lifetimeFrom({ idleMs: 31 * 86_400_000 }, 0), /idle time must be/);
    assert.throws(() => lifetimeFrom({ afterMs: Number.NaN }, 0), /must be/);
  });

  it('the deadline is the earlier of the time and the idle limit, counted from the last request (else the start)', () => {
    const s: LifetimeView = { id: 'a', createdAt: 0, lifetime: { stopAt: 10_000, idleMs: 3000 } };
    assert.deepEqual(deadlineOf(s), { at: 3000, why: 'idle' });
    assert.deepEqual(deadlineOf({ ...s, lastRequestAt: 8000 }), { at: 10_000, why: 'time' });
    assert.equal(deadlineOf({ id: 'b', createdAt: 0 }), undefined);
    const { due, nextAt } = lifetimeDue([s, { ...s, id: 'c', lastRequestAt: 5000 }, { id: 'd', createdAt: 0 }], 4000);
    assert.deepEqual(due, [{ id: 'a', why: 'idle' }]);
    assert.equal(nextAt, 8000);
    assert.equal(describeLifetime({ ...s, lastRequestAt: 8000 }, 4000), 'stops in 6 s');
    assert.equal(describeLifetime({ id: 'e', createdAt: 0, lifetime: { idleMs: 1_800_000 } }, 60_000), 'stops after 30 min without requests (in 29 min)');
    assert.deepEqual([shortDuration(500), shortDuration(61_000), shortDuration(3_600_000), shortDuration(5_400_000)], ['1 s', '2 min', '1 h', '1 h 30 min']);
  });

  it('AutoStop stops a share when it is due, and looks again when a request moved its idle deadline', async () => {
    const t0 = Date.now();
    const views: LifetimeView[] = [
      { id: 'timed', createdAt: t0, lifetime: { stopAt: t0 + 150 } },
      { id: 'idle', createdAt: t0, lifetime: { idleMs: 250 } },
    ];
    const stopped: Array<[string, string, number]> = [];
    const auto = new AutoStop(
      () => views,
      (id, why) => {
        stopped.push([id, why, Date.now() - t0]);
        views.splice(views.findIndex((v) => v.id === id), 1);
      },
    );
    auto.reschedule();
    // A request at 200 ms moves the idle share's deadline to 450 ms.
    setTimeout(() => {
      const idle = views.find((v) => v.id === 'idle');
      if (idle) idle.lastRequestAt = Date.now();
    }, 200);
    await new Promise((r) => setTimeout(r, 700));
    auto.dispose();
    assert.deepEqual(stopped.map(([id, why]) => [id, why]), [['timed', 'time'], ['idle', 'idle']]);
    assert.ok((stopped[0]?.[2] ?? 0) >= 150, `timed stopped at ${stopped[0]?.[2]} ms`);
    assert.ok((stopped[1]?.[2] ?? 0) >= 440, `idle stopped at ${stopped[1]?.[2]} ms, after its request moved it`);
  });
});

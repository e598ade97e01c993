/** Shared bits of the reliability suites: a seeded PRNG, spawn trackers, bounded waits. */
import { readdirSync } from 'node:fs';
import type { SpawnFn } from '../../src/core/supervisor/processRunner';
import { spawnProcess } from '../../src/core/supervisor/processRunner';
import { FakeProcess } from './fakeProcess';
import { isAlive } from './proc';
import { sleep } from './wait';

/** mulberry32: a tiny, fast, seedable PRNG; returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Counts the children a controller spawns and when each one exits. Its 'exit' listener is
 * registered before the controller's, so `alive` is updated before the controller reacts.
 */
export class SpawnTracker {
  readonly alive = new Set<number>();
  readonly pids: number[] = [];
  /** Children spawned (the objects themselves are not kept: leak checks count the heap). */
  spawned = 0;
  /** Spawns that happened while another child was still alive (must stay empty). */
  readonly overlaps: string[] = [];
  maxAlive = 0;

  constructor(private readonly make: SpawnFn) {}

  readonly spawn: SpawnFn = (command, args, options) => {
    if (this.alive.size > 0) this.overlaps.push(`spawn #${this.spawned + 1} while PID(s) ${[...this.alive].join(', ')} alive`);
    const p = this.make(command, args, options);
    this.spawned++;
    const pid = p.pid;
    if (pid !== undefined) {
      this.pids.push(pid);
      this.alive.add(pid);
      this.maxAlive = Math.max(this.maxAlive, this.alive.size);
      p.once('exit', () => this.alive.delete(pid));
    }
    return p;
  };

  /** PIDs of real processes that still exist (only meaningful with real children). */
  stillRunning(): number[] {
    return this.pids.filter((pid) => isAlive(pid));
  }
}

/** A tracker over real processes (the fake cloudflared executable). */
export function realTracker(): SpawnTracker {
  return new SpawnTracker(spawnProcess);
}

/** A tracker over in-memory FakeProcess objects; `configure(p, index)` scripts each one. */
export function fakeTracker(configure: (p: FakeProcess, index: number) => void): SpawnTracker & { fakes: FakeProcess[] } {
  const fakes: FakeProcess[] = [];
  const t = new SpawnTracker((command, args, options) => {
    const p = new FakeProcess(command, args, options.env);
    fakes.push(p);
    configure(p, fakes.length - 1);
    return p;
  });
  return Object.assign(t, { fakes });
}

export { sleep };

/** Settles within `ms` or rejects with a message naming `what` (the timer never outlives the race). */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: did not settle within ${ms} ms`)), ms);
    }),
  ]);
}

/** Polls `fn` every `every` ms until it returns true, or throws after `ms`. */
export async function until(fn: () => boolean, ms: number, what: string, every = 5): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}

/** Open file descriptors of this process (Linux). */
export function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** `process.getActiveResourcesInfo()` as counts per kind. */
export function activeResources(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}

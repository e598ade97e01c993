/** Controller options for runs of the fake cloudflared: its path, a state dir, a HOME of its own, the scenario. */
import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { findCloudflared } from '../../src/core/cloudflared/locate';
import type { TunnelControllerOptions } from '../../src/core/tunnelController';
import { FAKE_CLOUDFLARED } from './proc';

/** `home` is a fresh `work/home-<n>` (cloudflared must not find a user's config); the fake records itself in `work`. */
export function fakeRunOptions(work: string, n: number, env: Record<string, string>): TunnelControllerOptions {
  const home = path.join(work, `home-${n}`);
  mkdirSync(home, { recursive: true });
  return {
    findCloudflared: () => findCloudflared({ explicitPath: FAKE_CLOUDFLARED }),
    stateDir: path.join(work, 'state'),
    startTimeoutMs: 8000,
    stopGraceMs: 1000,
    baseEnv: { ...process.env, HOME: home, FAKE_CLOUDFLARED_STATE_DIR: work, ...env },
  };
}

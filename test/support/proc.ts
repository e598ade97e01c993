import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { sleep } from './wait';

export { waitFor } from './wait';

export const REPO = path.resolve(__dirname, '..', '..');
/** Transcripts of the real cloudflared, copied from the project's reference material into the repository. */
export const TRANSCRIPTS_DIR = path.join(REPO, 'test', 'fixtures', 'cloudflared-transcripts');
export const FAKE_CLOUDFLARED = path.join(REPO, 'test', 'fixtures', process.platform === 'win32' ? 'cloudflared.cmd' : 'cloudflared');

// cloudflared gets only the environment it needs (core/cloudflared/locate.ts childEnv); the fake's
// scenario variables are passed on by name, as a user would pass a proxy's own variables.
process.env['MCP_TUNNEL_CLOUDFLARED_ENV'] ??= 'FAKE_CLOUDFLARED_*';

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls until `pid` is gone (zombies are not children of ours here: a reaped child is gone). */
export async function waitGone(pid: number, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!isAlive(pid)) return true;
    await sleep(25);
  }
  return !isAlive(pid);
}

/** The fake cloudflared's own record of itself (public port etc.), written when FAKE_CLOUDFLARED_STATE_DIR is set. */
export interface FakeState {
  pid: number;
  publicPort: number;
  url: string;
  metricsAddress?: string;
  urlPrintedAt: number;
}
export function readFakeState(dir: string, pid: number): FakeState | undefined {
  try {
    return JSON.parse(readFileSync(path.join(dir, `${pid}.json`), 'utf8')) as FakeState;
  } catch {
    return undefined;
  }
}

/** The path (share secret included) of a public MCP URL, to request it through the fake's public port. */
export function publicPath(mcpUrl: string | null | undefined): string {
  assert.ok(mcpUrl, 'an MCP URL');
  return new URL(mcpUrl).pathname;
}

/** Remembering that QUIC fails on this network: for 7 days, in the state folder, forgotten on request. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { PROTOCOL_MEMORY_FILE, PROTOCOL_MEMORY_TTL_MS, protocolMemory } from '../../src/core/cloudflared/protocolMemory';

const dir = mkdtempSync(path.join(tmpdir(), 'mcpt-protocol-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('protocolMemory', () => {
  it('remembers for 7 days (file 0600), then not; forget() and a broken file both mean "never"', async () => {
    const m = protocolMemory(path.join(dir, 'state'));
    assert.equal(await m.quicBlockedAt(), undefined);
    const t = Date.parse('2026-12-02T10:00:00Z');
    await m.rememberQuicBlocked(t);
    if (process.platform !== 'win32') assert.equal(statSync(path.join(dir, 'state', PROTOCOL_MEMORY_FILE)).mode & 0o777, 0o600);
    assert.equal(await m.quicBlockedAt(t + 1000), t);
    assert.equal(await m.quicBlockedAt(t + PROTOCOL_MEMORY_TTL_MS - 1), t);
    assert.equal(await m.quicBlockedAt(t + PROTOCOL_MEMORY_TTL_MS), undefined, 'forgotten after 7 days');
    assert.equal(await m.quicBlockedAt(t - 1000), undefined, 'a time in the future (a clock set back) does not count');
    await m.forget();
    assert.equal(await m.quicBlockedAt(t + 1000), undefined);
    writeFileSync(path.join(dir, 'state', PROTOCOL_MEMORY_FILE), '{not json');
    assert.equal(await m.quicBlockedAt(), undefined);
  });
});

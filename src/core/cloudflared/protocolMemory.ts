/**
 * Where QUIC is blocked (UDP 7844), a quick tunnel never connects: cloudflared forces QUIC for
 * quick tunnels and an explicit or forced QUIC never falls back to HTTP/2. So when a start sees
 * QUIC dial failures, this machine remembers it (in the state folder) and the next starts in
 * `auto` mode use `--protocol http2`; the memory is forgotten after `ttlMs` (default 7 days), or as
 * soon as a QUIC connection registers.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

export const PROTOCOL_MEMORY_FILE = 'edge-protocol.json';
export const PROTOCOL_MEMORY_TTL_MS = 7 * 24 * 3_600_000;

export interface ProtocolMemory {
  /** When QUIC last failed here (epoch ms), if it is still remembered. */
  quicBlockedAt(now?: number): Promise<number | undefined>;
  rememberQuicBlocked(now?: number): Promise<void>;
  forget(): Promise<void>;
}

export function protocolMemory(stateDir: string, ttlMs = PROTOCOL_MEMORY_TTL_MS): ProtocolMemory {
  const file = path.join(stateDir, PROTOCOL_MEMORY_FILE);
  return {
    async quicBlockedAt(now = Date.now()) {
      try {
        const v = JSON.parse(await fs.readFile(file, 'utf8')) as { quicBlockedAt?: unknown };
        const at = typeof v.quicBlockedAt === 'number' ? v.quicBlockedAt : undefined;
        return at !== undefined && now - at < ttlMs && at <= now ? at : undefined;
      } catch {
        return undefined; // none, or unreadable: as if never blocked
      }
    },
    async rememberQuicBlocked(now = Date.now()) {
      await fs.mkdir(stateDir, { recursive: true, mode: 0o700 });
      await fs.writeFile(file, `${JSON.stringify({ quicBlockedAt: now })}\n`, { mode: 0o600 });
    },
    async forget() {
      await fs.rm(file, { force: true });
    },
  };
}

/**
 * A named tunnel's share secrets in VS Code's secret storage, one per share target, so each
 * share's MCP URL stays the same across restarts and sessions until it is rotated.
 */
import type * as vscode from 'vscode';
import type { ShareSecretStore } from '../core/tunnelController';

/** All shares' secrets, as JSON `{ "<host>:<port><path>": "<secret>" }`. */
export const SHARE_SECRETS_KEY = 'mcpTunnel.namedTunnel.shareSecrets';
/** Before shares: the one secret of the (default) target. Still read for that target. */
export const LEGACY_SHARE_SECRET_KEY = 'mcpTunnel.namedTunnel.shareSecret';

export function createShareSecretStore(secrets: vscode.SecretStorage, defaultKey: () => string): ShareSecretStore {
  // Writes are read-modify-write of one entry: one at a time.
  let queue: Promise<unknown> = Promise.resolve();
  const read = async (): Promise<Record<string, string>> => {
    const raw = await secrets.get(SHARE_SECRETS_KEY);
    if (!raw) return {};
    try {
      const parsed = JSON.parse(raw) as unknown;
      return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, string>) : {};
    } catch {
      return {};
    }
  };
  return {
    get: async (key) => {
      await queue;
      const all = await read();
      if (typeof all[key] === 'string') return all[key];
      // The URL handed out before shares existed keeps working for the target it was made for.
      return key === defaultKey() ? secrets.get(LEGACY_SHARE_SECRET_KEY) : undefined;
    },
    set: (key, secret) => {
      const next = queue.then(async () => {
        const all = await read();
        all[key] = secret;
        await secrets.store(SHARE_SECRETS_KEY, JSON.stringify(all));
      });
      queue = next.catch(() => undefined);
      return next;
    },
  };
}

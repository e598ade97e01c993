/**
 * Share MCP Server…, Share a Command…, Restart Share and agents' share_mcp_server live in their own
 * bundle, `dist/shareServer.js`, loaded on first use: a computed require, so esbuild leaves it out
 * of dist/extension.js (activation loads only this loader and the command ids).
 */
import * as path from 'node:path';
import type * as ShareServerModule from './shareServer';

export type { ShareServerModule };

export const SHARE_MCP_SERVER = 'mcpTunnel.shareMcpServer';
export const SHARE_COMMAND = 'mcpTunnel.shareCommand';
export const RESTART_SHARE = 'mcpTunnel.restartShare';
/** The commands dist/shareServer.js serves: registered at activation, the module loaded on first use. */
export const SHARE_SERVER_COMMANDS = [SHARE_MCP_SERVER, SHARE_COMMAND, RESTART_SHARE] as const;

export function loadShareServer(): typeof ShareServerModule {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(path.join(__dirname, 'shareServer.js')) as typeof ShareServerModule;
}

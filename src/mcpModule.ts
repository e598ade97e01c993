/**
 * The MCP room (SDK + zod, ~770 KB) is its own bundle, `dist/mcp.js`, loaded on first use by both
 * the extension and the CLI: a computed require, so esbuild leaves it out of their bundles.
 */
import * as path from 'node:path';
import type * as McpModule from './mcp/index';

export type { McpModule };

export function loadMcpModule(): typeof McpModule {
  const file = path.join(__dirname, 'mcp.js');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(file) as typeof McpModule;
}

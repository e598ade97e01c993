/**
 * The bridge room's entry point: a stdio MCP server served as Streamable HTTP, one child per
 * session. Bundled into `dist/mcp.js` with the MCP room (they share the SDK), loaded on first use.
 */
export { startStdioBridge } from './stdioBridge';
export type { BridgeCheck, BridgeLogLevel, StdioBridge, StdioBridgeOptions } from './stdioBridge';
export { reapChildren, resolveCommand, serverEnv } from './child';
export { commandLine, defaultServerName } from './serverName';
export type { StdioServerDefinition } from './child';
export { bridgeOrigin, stdioShareKey } from './shareOrigin';
export type { BridgeOrigin } from './shareOrigin';
export { readMcpConfig, resolveHeaders, resolveServer, splitCommandLine, VariableError } from './mcpConfig';
export type { ConfiguredServer, McpConfig, McpInput, VariableContext } from './mcpConfig';

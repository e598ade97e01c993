/**
 * The MCP room's entry point, bundled apart as `dist/mcp.js` so the SDK and zod stay off the
 * extension's activation path: the extension `require`s it on first use, the CLI at `mcp-tunnel mcp`.
 */
import type { Readable, Writable } from 'node:stream';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { TunnelApi } from '../core/model/tunnelState';
import { createTunnelMcpServer, type TunnelMcpServerOptions } from './tunnelMcpServer';

export { createTunnelMcpServer, MCP_SERVER_NAME, RESOURCE_URIS, SHARE_URI_PREFIX, TOOL_NAMES } from './tunnelMcpServer';
export type { AgentShareResult, McpLogLevel, ResourceUri, TunnelMcpServerOptions } from './tunnelMcpServer';
export { startHttpHost, isLoopbackHostHeader, isLoopbackOrigin, MCP_PATH, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_SESSIONS } from './httpHost';
export type { HttpHost, HttpHostOptions } from './httpHost';
export { listServerTools, type ServerTool } from './serverTools';
/** The stdio bridge rides in this bundle (it shares the SDK). */
export * as bridge from '../bridge/index';

export interface StdioServeOptions extends TunnelMcpServerOptions {
  /** Default `process.stdin`. */
  stdin?: Readable;
  /** Default `process.stdout`. Nothing else may write to it: it carries JSON-RPC. */
  stdout?: Writable;
}

export interface StdioServer {
  readonly server: McpServer;
  /** Resolves when the session ends: stdin ended or `close()` was called. */
  readonly closed: Promise<void>;
  close(): Promise<void>;
}

/**
 * Serve one MCP session over stdio (the CLI `mcp-tunnel mcp`). The session ends when stdin ends;
 * stopping the tunnel afterwards is the caller's choice.
 */
export async function serveStdio(controller: TunnelApi, options: StdioServeOptions): Promise<StdioServer> {
  const { stdin = process.stdin, stdout = process.stdout, ...serverOptions } = options;
  const server = createTunnelMcpServer(controller, serverOptions);
  const transport = new StdioServerTransport(stdin, stdout);
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  // The SDK's stdio transport does not notice the end of its input: close it ourselves.
  const onEnd = (): void => {
    server.close().catch(() => undefined);
  };
  transport.onclose = () => {
    stdin.off('end', onEnd);
    stdin.off('close', onEnd);
    resolveClosed();
  };
  stdin.once('end', onEnd);
  stdin.once('close', onEnd);
  await server.connect(transport);
  return { server, closed, close: () => server.close() };
}

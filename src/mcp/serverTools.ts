/**
 * What tools a share's server offers, asked directly (not through the gate: its policy would cut
 * the list, and the inspector would record the question). The SDK 1.x client over Streamable
 * HTTP: it speaks JSON and SSE answers and follows `nextCursor`.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

export interface ServerTool {
  name: string;
  title?: string;
  description?: string;
  /** The server's annotations say `readOnlyHint: true`. */
  readOnly: boolean;
}

/** Lists every tool (all pages, at most 50) of the MCP server at `url`; throws with why. */
export async function listServerTools(endpoint: { url: string; headers: Record<string, string> }, timeoutMs = 15_000): Promise<ServerTool[]> {
  const client = new Client({ name: 'mcp-tunnel', version: '1' });
  const transport = new StreamableHTTPClientTransport(new URL(endpoint.url), { requestInit: { headers: endpoint.headers } });
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    await client.connect(transport, { signal, timeout: timeoutMs });
    const out: ServerTool[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < 50; page++) {
      const r = await client.listTools(cursor ? { cursor } : {}, { signal, timeout: timeoutMs });
      for (const t of r.tools) {
        out.push({ name: t.name, ...(t.title ? { title: t.title } : {}), ...(t.description ? { description: t.description } : {}), readOnly: t.annotations?.readOnlyHint === true });
      }
      cursor = r.nextCursor;
      if (!cursor) break;
    }
    return out;
  } finally {
    await transport.terminateSession().catch(() => undefined);
    await client.close().catch(() => undefined);
  }
}

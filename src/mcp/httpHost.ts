/**
 * The in-editor MCP endpoint: Streamable HTTP on `127.0.0.1:<ephemeral>/mcp`, one stateful MCP
 * session (one `McpServer`) per client, all over the same controller.
 *
 * Guards, in order, before the SDK transport sees a request:
 *   1. `Host` must be a loopback name and `Origin`, when present, a loopback origin (DNS rebinding) -> 403
 *   2. path must be `/mcp` -> 404 (before auth, so OAuth discovery probes of `/.well-known/*` end fast)
 *   3. `Authorization: Bearer <token>`, compared in constant time -> 401
 *   4. body at most `maxBodyBytes` -> 413; valid JSON -> 400 (-32700)
 *   5. session routing: unknown `Mcp-Session-Id` -> 404; no id and not `initialize` -> 400
 * No CORS headers are ever sent, and the token never appears in logs or error bodies.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import type { TunnelApi } from '../core/model/tunnelState';
import { readCapped } from '../core/util/http';
import { createTunnelMcpServer, type McpLogLevel, type TunnelMcpServerOptions } from './tunnelMcpServer';

export const MCP_PATH = '/mcp';
export const DEFAULT_MAX_SESSIONS = 64;
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

export interface HttpHostOptions {
  /** Bearer token clients must send; default: 32 random bytes, base64url. */
  token?: string;
  /** Port to listen on; default 0 (ephemeral). */
  port?: number;
  /** Loopback address to bind: `127.0.0.1` (default), `::1` or `localhost`. */
  host?: string;
  /** Options of each session's MCP server. */
  serverOptions: TunnelMcpServerOptions;
  /** Live sessions kept at most; beyond it the least recently used session is closed. Default 64. */
  maxSessions?: number;
  /** Largest request body accepted; default 1 MiB. */
  maxBodyBytes?: number;
  log?: (level: McpLogLevel, message: string) => void;
}

export interface HttpHost {
  /** `http://127.0.0.1:<port>/mcp` */
  readonly url: string;
  readonly port: number;
  /** The bearer token (hand it to the client in an `Authorization` header; never log it). */
  readonly token: string;
  /** Live MCP sessions. */
  readonly sessionCount: number;
  /** Close every session and the server, and drop every connection. Idempotent. */
  close(): Promise<void>;
}

interface Session {
  readonly id: string;
  readonly server: McpServer;
  readonly transport: StreamableHTTPServerTransport;
  lastUsed: number;
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]']);

/** `Host` header value: a loopback name with an optional port. */
export function isLoopbackHostHeader(value: string | undefined): boolean {
  if (!value) return false;
  const m = /^(\[[^\]]*\]|[^:]+)(?::(\d{1,5}))?$/.exec(value.toLowerCase());
  return m !== null && m[1] !== undefined && LOOPBACK_NAMES.has(m[1]);
}

/** `Origin` header value: `http(s)://` + a loopback name + an optional port. */
export function isLoopbackOrigin(value: string): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  return (url.protocol === 'http:' || url.protocol === 'https:') && url.origin === value.toLowerCase() && LOOPBACK_NAMES.has(url.hostname);
}

/** Start the host; resolves once it listens. */
export async function startHttpHost(controller: TunnelApi, options: HttpHostOptions): Promise<HttpHost> {
  const log = (level: McpLogLevel, message: string): void => options.log?.(level, message);
  const token = options.token ?? randomBytes(32).toString('base64url');
  if (!/^[\x21-\x7e]{16,}$/.test(token)) throw new Error('The MCP host token must be at least 16 visible ASCII characters.');
  const bindHost = options.host ?? '127.0.0.1';
  if (!['127.0.0.1', '::1', 'localhost'].includes(bindHost)) throw new Error(`The MCP host binds to loopback only (127.0.0.1, ::1 or localhost), not ${bindHost}.`);
  const maxSessions = Math.max(1, options.maxSessions ?? DEFAULT_MAX_SESSIONS);
  const maxBodyBytes = Math.max(1, options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES);
  const tokenDigest = digest(token);

  const sessions = new Map<string, Session>();
  let closing: Promise<void> | undefined;

  const isAuthorized = (header: string | undefined): boolean => {
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header ?? '');
    // Digests have equal length, so timingSafeEqual never throws and the token length does not leak.
    return m?.[1] !== undefined && timingSafeEqual(digest(m[1]), tokenDigest);
  };

  const closeSession = async (session: Session, why: string): Promise<void> => {
    sessions.delete(session.id);
    log('debug', `MCP session ${shortId(session.id)} closed (${why})`);
    try {
      await session.server.close();
    } catch (err) {
      log('debug', `closing MCP session ${shortId(session.id)}: ${errorText(err)}`);
    }
  };

  const newSession = async (req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> => {
    // Policy at the cap: close the least recently used session rather than refuse the new one.
    // Every client holds the token (trusted), and a client whose session is gone gets 404 and
    // re-initializes per the spec, whereas a refusal would lock the editor out for good if some
    // client leaked sessions.
    while (sessions.size >= maxSessions) {
      const oldest = [...sessions.values()].reduce((a, b) => (b.lastUsed < a.lastUsed ? b : a));
      await closeSession(oldest, `evicted: more than ${maxSessions} sessions`);
    }
    const server = createTunnelMcpServer(controller, options.serverOptions);
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => {
        sessions.set(id, { id, server, transport, lastUsed: Date.now() });
        log('debug', `MCP session ${shortId(id)} opened (${sessions.size} live)`);
      },
      onsessionclosed: (id) => {
        if (sessions.delete(id)) log('debug', `MCP session ${shortId(id)} ended by the client`);
      },
    });
    transport.onclose = () => {
      const id = transport.sessionId;
      if (id !== undefined && sessions.get(id)?.transport === transport) sessions.delete(id);
    };
    transport.onerror = (err) => log('debug', `MCP transport: ${err.message}`);
    await server.connect(transport);
    await transport.handleRequest(req, res, body);
    const session = transport.sessionId === undefined ? undefined : sessions.get(transport.sessionId);
    // A failed initialize never registers a session, and close() may have run meanwhile: drop it.
    if (!session) await server.close();
    else if (closing) await closeSession(session, 'host closed');
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (closing) return sendError(res, 503, -32000, 'Server is shutting down');
    if (!isLoopbackHostHeader(req.headers.host)) {
      log('warn', `MCP host: rejected a request with a non-loopback Host header (${JSON.stringify(req.headers.host ?? '')})`);
      return sendError(res, 403, -32000, 'Forbidden: Host must be a loopback name');
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !isLoopbackOrigin(origin)) {
      log('warn', `MCP host: rejected a request from Origin ${JSON.stringify(origin)}`);
      return sendError(res, 403, -32000, 'Forbidden: Origin must be a loopback origin');
    }
    const path = (req.url ?? '').split('?')[0];
    if (path !== MCP_PATH) return sendError(res, 404, -32000, `Not found: the MCP endpoint is ${MCP_PATH}`);
    if (!isAuthorized(req.headers.authorization)) {
      log('warn', 'MCP host: rejected a request without a valid bearer token');
      return sendError(res, 401, -32001, 'Unauthorized: missing or invalid bearer token', { 'WWW-Authenticate': 'Bearer' });
    }
    const method = req.method ?? '';
    if (method !== 'GET' && method !== 'POST' && method !== 'DELETE') {
      return sendError(res, 405, -32000, 'Method not allowed', { Allow: 'GET, POST, DELETE' });
    }

    let body: unknown;
    if (method === 'POST') {
      const raw = await readBody(req, maxBodyBytes);
      if (raw === undefined) {
        return sendError(res, 413, -32000, `Payload too large: the body limit is ${maxBodyBytes} bytes`, { Connection: 'close' });
      }
      try {
        body = JSON.parse(raw) as unknown;
      } catch {
        return sendError(res, 400, -32700, 'Parse error: Invalid JSON');
      }
    }

    const sessionId = req.headers['mcp-session-id'];
    if (typeof sessionId === 'string') {
      const session = sessions.get(sessionId);
      if (!session) return sendError(res, 404, -32001, 'Session not found');
      session.lastUsed = Date.now();
      if (method === 'GET') log('debug', `MCP session ${shortId(sessionId)}: notification stream opened`);
      return session.transport.handleRequest(req, res, body);
    }
    if (method === 'POST' && (isInitializeRequest(body) || (Array.isArray(body) && body.some((m) => isInitializeRequest(m))))) {
      return newSession(req, res, body);
    }
    return sendError(res, 400, -32000, 'Bad Request: no valid Mcp-Session-Id header; send initialize first');
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log('error', `MCP host: ${errorText(err)}`);
      if (!res.headersSent) sendError(res, 500, -32603, 'Internal error');
      else res.end();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, bindHost, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log('error', `MCP host: ${err.message}`));

  const port = (server.address() as AddressInfo).port;
  const urlHost = bindHost.includes(':') ? `[${bindHost}]` : bindHost;
  const url = `http://${urlHost}:${port}${MCP_PATH}`;
  log('info', `MCP host listening on ${url}`);

  return {
    url,
    port,
    token,
    get sessionCount() {
      return sessions.size;
    },
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        await Promise.all([...sessions.values()].map((s) => closeSession(s, 'host closed')));
        server.closeAllConnections();
        await closed;
        log('info', 'MCP host closed');
      })();
      return closing;
    },
  };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** The body as text, or undefined if it is longer than `max` bytes (the rest is drained unread). */
function readBody(req: IncomingMessage, max: number): Promise<string | undefined> {
  return readCapped(req, max).then((body) => body?.toString('utf8'));
}

function sendError(res: ServerResponse, status: number, code: number, message: string, headers: Record<string, string> = {}): void {
  const body = JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null });
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function shortId(id: string): string {
  return id.slice(0, 8);
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

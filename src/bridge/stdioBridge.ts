/**
 * The stdio bridge: serves one stdio MCP server as Streamable HTTP (MCP 2025-11-25 and earlier
 * 2025 revisions) on 127.0.0.1:<ephemeral>, reachable from outside only through the gate.
 *
 * - **One child per MCP session.** `initialize` (no `Mcp-Session-Id`) spawns a child (or takes the
 *   warm spare) and answers with a new session id; nothing is shared between sessions. A session
 *   ends on DELETE, after `idleTimeoutMs` without a request (an open GET stream does not keep it
 *   alive: most clients never send DELETE), when its child exits, and when the bridge closes.
 *   At most `maxSessions` at once: beyond that `initialize` gets 503 and spawns nothing.
 * - **Unknown or ended session → 404** (the spec's signal to initialize again), never 400.
 * - **Both directions pass**: each POST that carries requests is answered on its own stream, JSON
 *   when the answer is only the response(s), SSE as soon as the server sends anything else first
 *   (progress, logging, sampling, elicitation…). A message from the server that belongs to no
 *   request (a progress token names its request) goes on the newest open POST stream of that
 *   session (quick tunnels hold back GET streams, cloudflared#1449), else the GET stream, else it
 *   waits (bounded) for one. Clients' responses and notifications (cancellation) go to the child.
 * - **A child that dies mid-request**: each pending request gets a JSON-RPC error naming the exit
 *   and the last stderr lines; the session ends (its id then gets 404, so the client starts anew).
 * - Clients of the 2026-07-28 revision (no initialize, no sessions) get, on their first request, the
 *   answer that makes them fall back to the 2025 handshake (see `answerSessionless`).
 *
 * The HTTP side is hand-written on node:http (the SDK's StreamableHTTPServerTransport routes a
 * server's requests only to the GET stream, which quick tunnels hold back, and costs an order of
 * magnitude more per call; npm run bench); the stdio side uses the SDK's framing (ReadBuffer).
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { Emitter, type Event } from '../core/util/events';
import { StdioChild, type ChildExit, type ChildOptions, type StdioServerDefinition } from './child';
import { commandLine } from './serverName';

export type BridgeLogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface StdioBridgeOptions extends Omit<ChildOptions, 'log'> {
  server: StdioServerDefinition;
  /** The MCP endpoint's path. Default `/mcp`. */
  path?: string;
  /** Live sessions (children) at most. Default 16. */
  maxSessions?: number;
  /** A session without a request this long ends (its child too). Default 30 min. */
  idleTimeoutMs?: number;
  /** Keep one child started ahead, so a new session's `initialize` needs no spawn. Default true. */
  warmSpare?: boolean;
  /** Largest request body. Default 4 MiB. */
  maxBodyBytes?: number;
  log?: (level: BridgeLogLevel, message: string) => void;
  /**
   * Every request must carry `Authorization: Bearer <token>` (the gate adds it), so other local
   * users cannot drive the server through the loopback port. Default (unset or undefined): a random one; `null`: none.
   */
  accessToken?: string | null | undefined;
}

export interface BridgeCheck {
  ok: boolean;
  /** When ok: how many tools the server lists, and what it calls itself. */
  tools?: number;
  serverName?: string;
  /** When not ok: what went wrong and what to do, with the last stderr lines. */
  message?: string;
  stderr?: string[];
}

export interface StdioBridge {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** `/mcp`. */
  readonly path: string;
  readonly server: StdioServerDefinition;
  /** `npx -y … ` as a command line. */
  readonly commandLine: string;
  /** The bearer token every request needs (see `accessToken`), or undefined if none. Never log it. */
  readonly accessToken: string | undefined;
  /**
   * The in-process entry: the gate in this process hands a request (already checked, its path
   * without the secret) straight to the bridge, with no loopback hop and so no token.
   */
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** Live sessions. */
  sessionCount(): number;
  /** The live sessions, oldest first: id and the PID of its child. */
  listSessions(): Array<{ id: string; pid: number | undefined }>;
  /** Children alive (sessions, the spare, a check). */
  childCount(): number;
  /** Spawns one child, `initialize`, `tools/list`, ends it. */
  check(timeoutMs?: number): Promise<BridgeCheck>;
  /** A session began or ended, or a child exited unexpectedly (with why). */
  readonly onDidChange: Event<{ sessions: number; problem?: string }>;
  close(): Promise<void>;
}

const DEFAULT_MAX_SESSIONS = 16;
const DEFAULT_IDLE_MS = 30 * 60_000;
const DEFAULT_MAX_BODY = 4 * 1024 * 1024;
/** Server messages kept for a session with no open stream at most. */
const MAX_QUEUED = 200;
/** SSE comment this often on a stream with nothing to say (proxies cut silent streams). */
const KEEPALIVE_MS = 25_000;
const SUPPORTED_VERSIONS = ['2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05'];

type Id = string | number;
const idKey = (id: Id): string => (typeof id === 'number' ? `n${id}` : `s${id}`);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
const isRequest = (m: JSONRPCMessage): m is JSONRPCMessage & { id: Id; method: string } => 'method' in m && 'id' in m && m.id !== undefined;
const isResponse = (m: JSONRPCMessage): m is JSONRPCMessage & { id: Id } => !('method' in m) && 'id' in m;

function jsonRpcError(id: Id | null, code: number, message: string, data?: unknown): string {
  return JSON.stringify({ jsonrpc: '2.0', id, error: { code, message, ...(data !== undefined ? { data } : {}) } });
}

function exitText(name: string, e: ChildExit, stderr: string[]): string {
  const how = e.spawnError ? `could not be started: ${e.spawnError}` : e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`;
  const tail = stderr.length ? ` Last stderr: ${stderr.slice(-5).join(' | ')}` : '';
  return `The MCP server "${name}" ${how}.${tail}`;
}

/** One HTTP response carrying a POST's answers (JSON or SSE) or the GET stream. */
class Stream {
  sse = false;
  closed = false;
  /** Requests of this POST still unanswered. */
  pending = 0;
  /** JSON mode: the responses, sent together when the last arrives. */
  readonly responses: string[] = [];
  private keepalive: NodeJS.Timeout | undefined;

  constructor(
    readonly res: ServerResponse,
    readonly sessionId: string,
    readonly acceptsSse: boolean,
    /** The POST body was an array (a JSON-RPC batch): answer with an array. */
    readonly batch: boolean,
    readonly isGet: boolean,
  ) {
    res.once('close', () => this.onClosed());
  }

  private onClosed(): void {
    this.closed = true;
    if (this.keepalive) clearInterval(this.keepalive);
  }

  startSse(): void {
    if (this.sse || this.closed) return;
    this.sse = true;
    this.res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', 'x-accel-buffering': 'no', 'mcp-session-id': this.sessionId });
    this.res.flushHeaders();
    // Responses that came before the switch (held for a JSON answer) go first, in their order.
    for (const json of this.responses.splice(0)) this.res.write(`event: message\ndata: ${json}\n\n`);
    this.keepalive = setInterval(() => {
      if (!this.closed) this.res.write(': keep-alive\n\n');
    }, KEEPALIVE_MS);
    this.keepalive.unref();
  }

  /** A server message for this stream; switches a POST to SSE. False if it cannot take it. */
  event(json: string): boolean {
    if (this.closed || !this.acceptsSse) return false;
    this.startSse();
    this.res.write(`event: message\ndata: ${json}\n\n`);
    return true;
  }

  /** One of this POST's responses; ends the stream after the last. */
  respond(json: string): void {
    if (this.closed) return;
    this.pending--;
    if (this.sse) this.res.write(`event: message\ndata: ${json}\n\n`);
    else this.responses.push(json);
    if (this.pending > 0) return;
    if (this.sse) {
      this.end();
      return;
    }
    const body = this.batch ? `[${this.responses.join(',')}]` : (this.responses[0] ?? '');
    this.res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'mcp-session-id': this.sessionId });
    this.res.end(body);
    this.closed = true;
  }

  end(): void {
    if (this.keepalive) clearInterval(this.keepalive);
    if (!this.closed) this.res.end();
    this.closed = true;
  }
}

interface Session {
  id: string;
  child: StdioChild;
  /** Client request id → the stream its response goes on. */
  readonly pending: Map<string, Stream>;
  /** Progress token → the stream of the request that named it. */
  readonly progress: Map<string, Stream>;
  /** Open POST streams, oldest first. */
  readonly posts: Set<Stream>;
  get?: Stream;
  readonly queued: string[];
  idleTimer?: NodeJS.Timeout;
  ended: boolean;
}

/** Starts the bridge; resolves once it listens. Nothing is spawned before the first session (but the spare). */
export async function startStdioBridge(options: StdioBridgeOptions): Promise<StdioBridge> {
  const def = options.server;
  const endpoint = options.path ?? '/mcp';
  const maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
  const idleMs = options.idleTimeoutMs ?? DEFAULT_IDLE_MS;
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const log = options.log ?? (() => undefined);
  const childOptions: ChildOptions = { ...options, log };
  const sessions = new Map<string, Session>();
  const children = new Set<StdioChild>();
  const sockets = new Set<Socket>();
  const changed = new Emitter<{ sessions: number; problem?: string }>();
  let spare: StdioChild | undefined;
  let closed = false;
  const cmd = commandLine(def);

  const spawnChild = (): StdioChild => {
    const child = new StdioChild(def, childOptions);
    children.add(child);
    void child.exited.then(() => children.delete(child));
    return child;
  };
  const refillSpare = (): void => {
    if (options.warmSpare === false || closed || (spare && spare.alive)) return;
    spare = spawnChild();
    const s = spare;
    s.onExit = (e) => {
      if (spare === s) spare = undefined;
      // A spare that dies by itself is not retried here: the next session spawns and reports why.
      if (!closed && !s.killed) log('warn', `${exitText(def.name, e, s.lastStderr())} (the spare; the next session starts a new one)`);
    };
  };
  const takeChild = (): StdioChild => {
    const s = spare;
    spare = undefined;
    const child = s && s.alive ? s : spawnChild();
    child.onExit = () => undefined;
    queueMicrotask(refillSpare);
    return child;
  };

  const touch = (s: Session): void => {
    if (s.idleTimer) clearTimeout(s.idleTimer);
    s.idleTimer = setTimeout(() => {
      if (s.pending.size > 0) {
        touch(s);
        return;
      }
      log('info', `[${def.name}] session ${s.id.slice(0, 8)}… idle for ${Math.round(idleMs / 60_000) || idleMs / 1000 + ' s'}${idleMs >= 60_000 ? ' min' : ''}: ended`);
      endSession(s);
    }, idleMs);
    s.idleTimer.unref();
  };

  const endSession = (s: Session, problem?: string): void => {
    if (s.ended) return;
    s.ended = true;
    sessions.delete(s.id);
    if (s.idleTimer) clearTimeout(s.idleTimer);
    for (const st of s.posts) st.end();
    s.get?.end();
    void s.child.end();
    changed.fire({ sessions: sessions.size, ...(problem ? { problem } : {}) });
  };

  const deliver = (s: Session, m: JSONRPCMessage): void => {
    const json = JSON.stringify(m);
    if (isResponse(m)) {
      const key = idKey(m.id);
      const st = s.pending.get(key);
      if (!st) {
        log('debug', `[${def.name}] response to an unknown request id dropped`);
        return;
      }
      s.pending.delete(key);
      st.respond(json);
      if (st.pending <= 0) s.posts.delete(st);
      return;
    }
    // A notification or a server → client request: its request's stream, else the newest POST, else GET.
    const token = isObject(m) && isObject((m as { params?: unknown }).params) ? (m as { params: { progressToken?: unknown } }).params.progressToken : undefined;
    const owner = typeof token === 'string' || typeof token === 'number' ? s.progress.get(idKey(token)) : undefined;
    if (owner && owner.event(json)) return;
    const posts = [...s.posts].reverse();
    for (const st of posts) if (st.event(json)) return;
    if (s.get && s.get.event(json)) return;
    if (s.queued.length < MAX_QUEUED) s.queued.push(json);
    else log('warn', `[${def.name}] session ${s.id.slice(0, 8)}… has no open stream: a server message was dropped`);
  };

  const childDied = (s: Session, e: ChildExit): void => {
    if (s.ended) return;
    const text = exitText(def.name, e, s.child.lastStderr());
    log('warn', text);
    for (const [key, st] of s.pending) {
      const raw = key.slice(1);
      st.respond(jsonRpcError(key.startsWith('n') ? Number(raw) : raw, -32603, `${text} The next request starts a new session.`, { exitCode: e.code, signal: e.signal, stderr: s.child.lastStderr() }));
    }
    s.pending.clear();
    endSession(s, text);
  };

  const sendJson = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void => {
    if (res.headersSent) return;
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers });
    res.end(body);
  };

  /** The body, parsed; or an error response already sent. */
  const readBody = (req: IncomingMessage, res: ServerResponse): Promise<unknown> =>
    new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let tooBig = false;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBody) {
          if (!tooBig) sendJson(res, 413, jsonRpcError(null, -32600, `Request body larger than ${maxBody} bytes`), { connection: 'close' });
          tooBig = true;
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => {
        if (tooBig) return resolve(undefined);
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown);
        } catch (err) {
          sendJson(res, 400, jsonRpcError(null, -32700, `Parse error: ${(err as Error).message}`));
          resolve(undefined);
        }
      });
      req.on('error', () => resolve(undefined));
    });

  const accepts = (req: IncomingMessage): { json: boolean; sse: boolean } => {
    const a = (req.headers['accept'] ?? '').toLowerCase();
    const any = a === '' || a.includes('*/*');
    return { json: any || a.includes('application/json'), sse: any || a.includes('text/event-stream') };
  };

  /**
   * A POST with no session that is not `initialize`: what a client of the 2026-07-28 revision
   * sends first (`server/discover`, or a call with the revision in `_meta`). 400 with
   * UnsupportedProtocolVersion (-32022) listing the 2025 revisions: such clients then fall back
   * to the 2025 handshake (the 2.x SDK client does; a 5xx, 401/403 or an empty 2xx would make it
   * fail instead). A 2025 client that lost its session gets a plain reading of the same answer.
   */
  const answerSessionless = (res: ServerResponse, id: Id | null): void => {
    sendJson(
      res,
      400,
      jsonRpcError(id, -32022, 'Unsupported protocol version: this server speaks MCP 2025 (initialize first; no Mcp-Session-Id was given)', { supported: SUPPORTED_VERSIONS }),
    );
  };

  const handlePost = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const ct = (req.headers['content-type'] ?? '').toLowerCase();
    if (!ct.includes('application/json')) {
      sendJson(res, 415, jsonRpcError(null, -32000, 'Unsupported Media Type: Content-Type must be application/json'));
      req.resume();
      return;
    }
    const acc = accepts(req);
    if (!acc.json && !acc.sse) {
      sendJson(res, 406, jsonRpcError(null, -32000, 'Not Acceptable: Accept must include application/json or text/event-stream'));
      req.resume();
      return;
    }
    const sid = header(req, 'mcp-session-id');
    // An unknown session is refused before its body is read.
    if (sid !== undefined && !sessions.has(sid)) {
      sendJson(res, 404, jsonRpcError(null, -32001, 'Session not found: it ended (idle, closed, or its server exited). Initialize a new session.'));
      req.resume();
      return;
    }
    const body = await readBody(req, res);
    if (body === undefined || res.headersSent) return;
    const batch = Array.isArray(body);
    const list = (batch ? body : [body]) as unknown[];
    if (list.length === 0 || !list.every((m) => isObject(m) && m['jsonrpc'] === '2.0' && (typeof m['method'] === 'string' || 'result' in m || 'error' in m))) {
      sendJson(res, 400, jsonRpcError(null, -32600, 'Invalid Request: not a JSON-RPC 2.0 message'));
      return;
    }
    const messages = list as JSONRPCMessage[];
    const init = messages.find((m) => 'method' in m && m.method === 'initialize');
    let s = sid !== undefined ? sessions.get(sid) : undefined;
    if (init) {
      if (sid !== undefined || messages.length > 1) {
        sendJson(res, 400, jsonRpcError(null, -32600, 'Invalid Request: initialize must be sent alone, without Mcp-Session-Id'));
        return;
      }
      if (closed) {
        sendJson(res, 503, jsonRpcError(null, -32000, 'This share is stopping.'));
        return;
      }
      if (sessions.size >= maxSessions) {
        log('warn', `[${def.name}] refused a new session: ${maxSessions} are live (the most this share allows)`);
        sendJson(
          res,
          503,
          jsonRpcError((init as { id: Id }).id, -32000, `This share already has ${maxSessions} live sessions, the most it allows. Close one (or wait for an idle one to end), or raise mcpTunnel.stdio.maxSessions.`),
          { 'retry-after': '30' },
        );
        return;
      }
      s = newSession();
    } else if (!s) {
      const only = messages.length === 1 ? messages[0] : undefined;
      answerSessionless(res, only && isRequest(only) ? only.id : null);
      return;
    }
    touch(s);
    const requests = messages.filter(isRequest);
    if (requests.length === 0) {
      s.child.send(messages);
      res.writeHead(202, { 'mcp-session-id': s.id });
      res.end();
      return;
    }
    const st = new Stream(res, s.id, acc.sse, batch, false);
    const session = s;
    st.pending = requests.length;
    s.posts.add(st);
    res.once('close', () => {
      session.posts.delete(st);
      // Answers that can no longer be delivered are dropped when they come (2025: a closed
      // stream does not cancel the request).
    });
    for (const r of requests) {
      session.pending.set(idKey(r.id), st);
      const params = (r as { params?: unknown }).params;
      const token = isObject(params) && isObject(params['_meta']) ? params['_meta']['progressToken'] : undefined;
      if (typeof token === 'string' || typeof token === 'number') session.progress.set(idKey(token), st);
    }
    if (session.queued.length > 0 && st.acceptsSse) {
      for (const q of session.queued.splice(0)) st.event(q);
    }
    session.child.send(messages);
  };

  const newSession = (): Session => {
    const child = takeChild();
    const s: Session = { id: randomUUID(), child, pending: new Map(), progress: new Map(), posts: new Set(), queued: [], ended: false };
    sessions.set(s.id, s);
    child.onMessage = (m) => deliver(s, m);
    child.onExit = (e) => childDied(s, e);
    if (child.exit) queueMicrotask(() => childDied(s, child.exit as ChildExit));
    log('info', `[${def.name}] new session ${s.id.slice(0, 8)}… (${sessions.size} live, PID ${child.pid ?? '-'})`);
    changed.fire({ sessions: sessions.size });
    return s;
  };

  const handleGet = (req: IncomingMessage, res: ServerResponse): void => {
    if (!accepts(req).sse) {
      sendJson(res, 406, jsonRpcError(null, -32000, 'Not Acceptable: Accept must include text/event-stream'));
      return;
    }
    const sid = header(req, 'mcp-session-id');
    const s = sid !== undefined ? sessions.get(sid) : undefined;
    if (sid === undefined) {
      sendJson(res, 400, jsonRpcError(null, -32000, 'Bad Request: Mcp-Session-Id header is required'));
      return;
    }
    if (!s) {
      sendJson(res, 404, jsonRpcError(null, -32001, 'Session not found. Initialize a new session.'));
      return;
    }
    if (s.get && !s.get.closed) {
      sendJson(res, 409, jsonRpcError(null, -32000, 'Conflict: this session already has a GET stream open'));
      return;
    }
    const st = new Stream(res, s.id, true, false, true);
    s.get = st;
    st.startSse();
    for (const q of s.queued.splice(0)) st.event(q);
  };

  const handleDelete = (req: IncomingMessage, res: ServerResponse): void => {
    const sid = header(req, 'mcp-session-id');
    const s = sid !== undefined ? sessions.get(sid) : undefined;
    if (!s) {
      sendJson(res, sid === undefined ? 400 : 404, jsonRpcError(null, -32001, sid === undefined ? 'Bad Request: Mcp-Session-Id header is required' : 'Session not found'));
      return;
    }
    log('info', `[${def.name}] session ${s.id.slice(0, 8)}… closed by the client`);
    endSession(s);
    res.writeHead(200);
    res.end();
  };

  const token = options.accessToken === null ? undefined : (options.accessToken ?? randomBytes(32).toString('base64url'));
  const tokenDigest = token !== undefined ? createHash('sha256').update(`Bearer ${token}`).digest() : undefined;
  /** One request, already past the gate (in-process) or the token check (loopback). */
  const serve = (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const pathname = q < 0 ? url : url.slice(0, q);
    if (pathname !== endpoint) {
      sendJson(res, 404, JSON.stringify({ error: `Not found: this share serves MCP at ${endpoint}` }));
      req.resume();
      return;
    }
    const version = header(req, 'mcp-protocol-version');
    if (version !== undefined && !SUPPORTED_VERSIONS.includes(version) && header(req, 'mcp-session-id') !== undefined) {
      sendJson(res, 400, jsonRpcError(null, -32000, `Bad Request: unsupported MCP-Protocol-Version ${version} (supported: ${SUPPORTED_VERSIONS.join(', ')})`));
      req.resume();
      return;
    }
    switch (req.method) {
      case 'POST':
        void handlePost(req, res).catch((err: unknown) => {
          log('error', `[${def.name}] ${(err as Error).message}`);
          sendJson(res, 500, jsonRpcError(null, -32603, `Internal error: ${(err as Error).message}`));
        });
        return;
      case 'GET':
        handleGet(req, res);
        req.resume();
        return;
      case 'DELETE':
        handleDelete(req, res);
        req.resume();
        return;
      default:
        res.writeHead(405, { allow: 'GET, POST, DELETE', 'content-length': '0' });
        res.end();
        req.resume();
    }
  };
  const server = createServer({ requestTimeout: 0, keepAliveTimeout: 95_000 }, (req, res) => {
    if (tokenDigest && !timingSafeEqual(createHash('sha256').update(header(req, 'authorization') ?? '').digest(), tokenDigest)) {
      sendJson(res, 401, JSON.stringify({ error: 'Unauthorized: this bridge answers only its access gate.' }), { 'www-authenticate': 'Bearer' });
      req.resume();
      return;
    }
    serve(req, res);
  });
  server.on('connection', (sock: Socket) => {
    sock.setNoDelay(true);
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  log('info', `stdio bridge for "${def.name}" (${cmd}) on http://127.0.0.1:${port}${endpoint}`);
  refillSpare();

  const check = async (timeoutMs = 60_000): Promise<BridgeCheck> => {
    const child = spawnChild();
    const answers = new Map<string, (m: JSONRPCMessage) => void>();
    child.onMessage = (m) => {
      if (isResponse(m)) answers.get(idKey(m.id))?.(m);
      else if (isRequest(m)) child.send([{ jsonrpc: '2.0', id: m.id, error: { code: -32601, message: 'not available during the share check' } }]);
    };
    const ask = (id: number, method: string, params: Record<string, unknown>): Promise<Record<string, unknown>> =>
      new Promise((resolve, reject) => {
        answers.set(idKey(id), (m) => {
          const r = m as { result?: Record<string, unknown>; error?: { message?: string } };
          if (r.error) reject(new Error(`${method} failed: ${r.error.message ?? 'error'}`));
          else resolve(r.result ?? {});
        });
        child.send([{ jsonrpc: '2.0', id, method, params }]);
      });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`it did not answer initialize within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
    });
    const died = child.exited.then((e): never => {
      throw Object.assign(new Error(exitText(def.name, e, child.lastStderr())), { exit: e });
    });
    try {
      const init = await Promise.race([ask(1, 'initialize', { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'mcp-tunnel-check', version: '1' } }), timeout, died]);
      child.send([{ jsonrpc: '2.0', method: 'notifications/initialized' }]);
      const caps = isObject(init['capabilities']) ? init['capabilities'] : {};
      let tools = 0;
      if ('tools' in caps) {
        const list = await Promise.race([ask(2, 'tools/list', {}), timeout, died]);
        tools = Array.isArray(list['tools']) ? list['tools'].length : 0;
      }
      const info = isObject(init['serverInfo']) ? init['serverInfo'] : {};
      return { ok: true, tools, ...(typeof info['name'] === 'string' ? { serverName: info['name'] } : {}) };
    } catch (err) {
      const stderr = child.lastStderr();
      const exit = (err as { exit?: ChildExit }).exit;
      const base = exit ? (err as Error).message : `The MCP server "${def.name}" (${cmd}) ${(err as Error).message}.`;
      return { ok: false, message: `${base} ${fixFor(def, exit, stderr)}`, stderr };
    } finally {
      if (timer) clearTimeout(timer);
      await child.end();
    }
  };

  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    path: endpoint,
    accessToken: token,
    server: def,
    commandLine: cmd,
    sessionCount: () => sessions.size,
    listSessions: () => [...sessions.values()].map((x) => ({ id: x.id, pid: x.child.pid })),
    childCount: () => [...children].filter((c) => c.alive).length,
    check,
    handle: serve,
    onDidChange: changed.event,
    close: () => {
      closing ??= (async () => {
        closed = true;
        for (const s of [...sessions.values()]) endSession(s);
        const ending = [...children].map((c) => c.end());
        server.close();
        for (const sock of sockets) sock.destroy();
        await Promise.all(ending);
        changed.dispose();
        log('info', `stdio bridge for "${def.name}" closed`);
      })();
      return closing;
    },
  };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** What to do about a server that did not start. */
function fixFor(def: StdioServerDefinition, exit: ChildExit | undefined, stderr: string[]): string {
  if (exit?.spawnError?.startsWith('command not found')) {
    return /^(npx|npm|node)$/.test(def.command)
      ? 'Install Node.js (it provides npx), or put the full path of the command in the server definition.'
      : `Install ${def.command}, or put its full path in the server definition.`;
  }
  if (exit?.spawnError) return 'Check the command and its folder (cwd) in the server definition.';
  if (!exit) return 'Check that the command starts an MCP server on stdio (some need an argument or a flag).';
  const err = stderr.join('\n');
  if (/ENOTFOUND|EAI_AGAIN|network|registry/i.test(err)) return 'It needed the network (npx fetching a package?): install the package locally, or check the connection.';
  return 'Run the command in a terminal to see why it stops, then share it again.';
}

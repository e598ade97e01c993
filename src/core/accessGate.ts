/**
 * The access gate: a loopback reverse proxy between cloudflared (`--url <gate>`) and the local
 * origin. A quick tunnel is public, so anyone who learns its URL reaches the origin; the gate lets
 * a request through only with the share secret, either as `Authorization: Bearer <secret>` or as
 * the first path segment (`https://x.trycloudflare.com/<secret>/mcp`), and answers everything else
 * with 401 without ever opening a connection to the origin.
 *
 * Otherwise it is transparent: request and response bodies stream both ways (no buffering), SSE
 * events go out as they arrive, WebSocket (any `Upgrade`) is proxied at the socket level, and
 * hop-by-hop headers are handled per RFC 9110 §7.6.1 (but the gate frames every message itself:
 * `Connection` cannot make it drop Content-Length, Transfer-Encoding or Host).
 *
 * Hardening: the credential is checked before any throttling (only failures are slowed down, so a
 * flood of guesses never locks the owner out); a request head must arrive within
 * `headersTimeoutMs`; at most `maxConnections` client connections are open at once; the secret is
 * scrubbed from `Referer` and `Origin` (a page opened through the secret path names it in every
 * subrequest's Referer).
 *
 * Pure Node (`node:http`, `node:net`, `node:crypto`): no dependency, no `vscode`.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import {
  Agent,
  createServer,
  request as httpRequest,
  type ClientRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { pipeline } from 'node:stream';
import { Emitter, type Event } from './events';

/** `secret`: only requests carrying the share secret pass. `open`: everything passes. */
export type AccessGateMode = 'secret' | 'open';
/** Which `Host` the origin sees: its own `host:port` (`origin`) or the incoming one (`public`). */
export type GateHostHeader = 'origin' | 'public';
export type AccessGateLogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface AccessGateOptions {
  /** The local server the gate protects, e.g. `{ host: 'localhost', port: 8002 }`. */
  origin: { host: string; port: number };
  /** The share secret; default 32 random bytes, base64url. At least 16 of `A-Z a-z 0-9 - _ . ~`. */
  secret?: string;
  /** Default `secret`. */
  mode?: AccessGateMode;
  /** Default `origin` (works with servers that accept only localhost Hosts, like the MCP SDK's). */
  hostHeader?: GateHostHeader;
  /** Failed attempts a client may make per minute before its 401s are slowed down. Default 10. */
  maxFailuresPerMinute?: number;
  /**
   * A request head (line and headers) must be complete this long after its first byte (for a new
   * connection: after it opened), else the connection gets 408 and is closed. Bodies and responses
   * are never timed: an SSE stream or a slow upload lasts as long as it keeps going. Default 20 s.
   */
  headersTimeoutMs?: number;
  /** Client connections open at once at most; a connection beyond it is closed at once. Default 1024. */
  maxConnections?: number;
  /** Never receives the secret: every message is redacted before it gets here. */
  log?: (level: AccessGateLogLevel, message: string) => void;
}

export interface AccessGateRejection {
  /** `CF-Connecting-IP` when present (cloudflared sets it), else the socket address. */
  ip: string;
  reason: string;
}

export interface AccessGate {
  /** `http://127.0.0.1:<port>`: what cloudflared's `--url` points at. */
  readonly url: string;
  readonly port: number;
  readonly mode: AccessGateMode;
  /** `/<secret>`: prefix it to a path to share a URL that passes the gate. Never log it. */
  secretPath(): string;
  /**
   * Replaces the secret and returns the new one. The old one stops working at once: later
   * requests with it get 401, and every stream or WebSocket it opened is closed.
   */
  rotateSecret(): string;
  /** Switching to `secret` closes every stream or WebSocket opened while the gate was `open`. */
  setMode(mode: AccessGateMode): void;
  /** Requests (and upgrades) let through and refused since the gate started. */
  readonly stats: { readonly passed: number; readonly rejected: number };
  readonly onDidReject: Event<AccessGateRejection>;
  /** Closes the listener and every socket (client, origin, upgraded) and timer. Idempotent. */
  close(): Promise<void>;
  /** `void close()`, for `context.subscriptions`. */
  dispose(): void;
}

export type AccessCheck = { ok: true; path: string; via: 'bearer' | 'path' } | { ok: false; reason: string };

export const DEFAULT_MAX_FAILURES_PER_MINUTE = 10;
/** Delay added per failure beyond the allowance, and its cap. */
export const FAILURE_DELAY_STEP_MS = 250;
export const FAILURE_DELAY_MAX_MS = 5000;
/** Clients tracked at most; the least recently failing one is forgotten first. */
export const MAX_TRACKED_CLIENTS = 10_000;
/**
 * Delayed 401s pending at most (and at most half of `maxConnections`); beyond it a throttled
 * client's failure is refused with 429 at once, so a flood costs bounded memory.
 */
const MAX_PENDING_DELAYS = 1000;
export const DEFAULT_HEADERS_TIMEOUT_MS = 20_000;
/**
 * More than cloudflared ever opens (a quick tunnel allows 200 requests in flight), well under the
 * process's file descriptor limit.
 */
export const DEFAULT_MAX_CONNECTIONS = 1024;
/** Longer than cloudflared's pool idle timeout (90 s), so it never reuses a socket we are closing. */
const KEEP_ALIVE_TIMEOUT_MS = 95_000;

const SECRET_SHAPE = /^[A-Za-z0-9._~-]{16,512}$/;

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** Digests have equal length, so `timingSafeEqual` never throws and the length does not leak. */
function sameDigest(candidate: string, secretDigest: Buffer): boolean {
  return timingSafeEqual(digest(candidate), secretDigest);
}

/** Whether `candidate` is one of `digests`: one hash, then every digest compared in constant time. */
function anyDigest(candidate: string, digests: readonly Buffer[]): boolean {
  const d = digest(candidate);
  let hit = false;
  for (const s of digests) hit = timingSafeEqual(d, s) || hit;
  return hit;
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

type BearerState = 'none' | 'match' | 'mismatch' | 'other-scheme';

function bearerState(headers: Record<string, string | string[] | undefined>, secretDigest: Buffer): BearerState {
  const auth = first(headers['authorization']);
  if (auth === undefined || auth.trim() === '') return 'none';
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(auth);
  if (!m?.[1]) return 'other-scheme';
  return sameDigest(m[1], secretDigest) ? 'match' : 'mismatch';
}

/** The origin-form target (`/path?query`) of a request line's target, or undefined if it has none. */
function originForm(url: string): string | undefined {
  if (url.startsWith('/')) return url;
  // Absolute form (`GET http://host/path`): keep only its path and query.
  if (/^https?:\/\//i.test(url)) {
    try {
      const u = new URL(url);
      return u.pathname + u.search;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/**
 * The path the origin gets when the first path segment is the secret, exactly (no decoding:
 * `/%2F<secret>` or `/<secret>%2Fmcp` do not match), else undefined.
 */
function strippedPath(target: string, secretDigest: Buffer): string | undefined {
  const q = target.indexOf('?');
  const pathPart = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q);
  const slash = pathPart.indexOf('/', 1);
  const segment = slash < 0 ? pathPart.slice(1) : pathPart.slice(1, slash);
  if (segment === '' || !sameDigest(segment, secretDigest)) return undefined;
  const rest = slash < 0 ? '' : pathPart.slice(slash);
  return (rest === '' ? '/' : rest) + query;
}

function checkWithDigest(url: string, headers: Record<string, string | string[] | undefined>, secretDigest: Buffer): AccessCheck {
  const target = originForm(url);
  if (target === undefined) return { ok: false, reason: 'malformed request target' };
  // The secret path wins: a request that carries it may send its own Authorization to the origin.
  const stripped = strippedPath(target, secretDigest);
  if (stripped !== undefined) return { ok: true, path: stripped, via: 'path' };
  switch (bearerState(headers, secretDigest)) {
    case 'match':
      return { ok: true, path: target, via: 'bearer' };
    case 'mismatch':
      return { ok: false, reason: 'wrong bearer token' };
    case 'other-scheme':
      return { ok: false, reason: 'Authorization is not a Bearer token, and the path does not start with the secret' };
    default:
      return { ok: false, reason: 'no credentials: no Bearer token, and the path does not start with the secret' };
  }
}

/**
 * Whether a request carries `secret`, and the path to send the origin if it does. Pure; the gate
 * uses it. `Authorization: Bearer <secret>` keeps the path; `/<secret>/rest?q` becomes `/rest?q`
 * (`/<secret>` alone becomes `/`). Comparisons hash both sides and use `timingSafeEqual`.
 * An empty secret lets nothing through.
 */
export function checkAccess(req: { url: string; headers: Record<string, string | string[] | undefined> }, secret: string): AccessCheck {
  if (secret === '') return { ok: false, reason: 'no share secret is configured' };
  return checkWithDigest(req.url, req.headers, digest(secret));
}

/**
 * Per-client failure accounting: a leaky bucket that drains `maxPerMinute` failures per minute.
 * While the bucket holds at most `maxPerMinute`, a failure costs nothing; each one beyond adds
 * `FAILURE_DELAY_STEP_MS` to the 401's delay (capped at `FAILURE_DELAY_MAX_MS`). At most
 * `maxClients` clients are tracked (least recently failing forgotten first); no timers.
 */
export class FailureTracker {
  private readonly clients = new Map<string, { level: number; at: number }>();

  constructor(
    readonly maxPerMinute: number = DEFAULT_MAX_FAILURES_PER_MINUTE,
    readonly maxClients: number = MAX_TRACKED_CLIENTS,
    private readonly now: () => number = Date.now,
  ) {
    if (!(maxPerMinute >= 1)) throw new RangeError('maxFailuresPerMinute must be at least 1');
  }

  get size(): number {
    return this.clients.size;
  }

  private levelOf(key: string, t: number): number {
    const e = this.clients.get(key);
    if (!e) return 0;
    const level = Math.max(0, e.level - ((t - e.at) * this.maxPerMinute) / 60_000);
    if (level === 0) this.clients.delete(key);
    return level;
  }

  private delayFor(level: number): number {
    const excess = Math.ceil(level - this.maxPerMinute - 1e-9);
    return excess > 0 ? Math.min(FAILURE_DELAY_STEP_MS * excess, FAILURE_DELAY_MAX_MS) : 0;
  }

  /** The delay the next failure of `key` would get if it failed now (without recording it). */
  peek(key: string): number {
    return this.delayFor(this.levelOf(key, this.now()) + 1);
  }

  /** Records one failure of `key`; returns how long to hold its 401 (ms). */
  fail(key: string): number {
    const t = this.now();
    const level = this.levelOf(key, t) + 1;
    this.clients.delete(key); // re-insert: Map order is the LRU order
    this.clients.set(key, { level, at: t });
    while (this.clients.size > this.maxClients) {
      const oldest = this.clients.keys().next().value;
      if (oldest === undefined) break;
      this.clients.delete(oldest);
    }
    return this.delayFor(level);
  }
}

// RFC 9110 §7.6.1: Connection and the fields it names are hop-by-hop, plus these by convention
// (Keep-Alive, Proxy-Connection, TE, Transfer-Encoding, Upgrade, Trailer, Proxy-*).
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * Never dropped because Connection names them. The gate frames each message itself from these
 * (Content-Length, Transfer-Encoding) and sets Host; letting a peer's `Connection: content-length`
 * remove one would send a body unframed, so the origin (or the client) would read it as the next
 * message: a request that skipped the gate (smuggling), or a response cut loose from its length.
 */
const NEVER_NAMED = new Set(['content-length', 'transfer-encoding', 'host']);

/** The fields `Connection` names that are dropped with it (never a framing field, nor Host). */
function connectionTokens(headers: IncomingHttpHeaders): Set<string> {
  const v = headers['connection'];
  const all = Array.isArray(v) ? v.join(',') : (v ?? '');
  return new Set(
    all
      .split(',')
      .map((t) => t.trim().toLowerCase())
      .filter((t) => t !== '' && !NEVER_NAMED.has(t)),
  );
}

/** End-to-end headers only (the fields Connection names are dropped too). */
function endToEnd(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = connectionTokens(headers);
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k) || named.has(k)) continue;
    out[k] = v;
  }
  return out;
}

/**
 * A Referer or Origin value without a first path segment that is one of the secrets (`digests`):
 * `https://h/<secret>/app?q` becomes `https://h/app?q`, `https://h/<secret>` becomes `https://h/`.
 * A page opened through the secret path names it in every subrequest's Referer; the origin (and
 * whatever it logs) must not learn it. Exact segment, as for the request path; else unchanged.
 */
function withoutSecretSegment(value: string, digests: readonly Buffer[]): string {
  // [scheme:]//authority, then the path, then the rest (query, fragment). Linear: no nesting.
  const m = /^((?:[A-Za-z][A-Za-z0-9+.-]*:)?\/\/[^/?#]*)?(\/[^?#]*)?(.*)$/s.exec(value);
  const pathPart = m?.[2];
  if (!m || pathPart === undefined) return value;
  const slash = pathPart.indexOf('/', 1);
  const segment = slash < 0 ? pathPart.slice(1) : pathPart.slice(1, slash);
  if (!SECRET_SHAPE.test(segment) || !anyDigest(segment, digests)) return value;
  return (m[1] ?? '') + (slash < 0 ? '/' : pathPart.slice(slash)) + (m[3] ?? '');
}

function hostForUrl(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

function errorCode(err: unknown): string {
  if (err && typeof err === 'object') {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const inner = (err as { errors?: unknown }).errors;
    if (Array.isArray(inner) && inner.length > 0) return errorCode(inner[0]);
    const message = (err as { message?: unknown }).message;
    if (typeof message === 'string' && message) return message;
  }
  return String(err);
}

const UNAUTHORIZED_BODY = JSON.stringify({
  error:
    'Unauthorized: this tunnel is protected by a share secret. Send "Authorization: Bearer <secret>", ' +
    'or start the path with the secret: https://<this host>/<secret>/mcp.',
});
const TOO_MANY_BODY = JSON.stringify({ error: 'Too many failed attempts: slow down.' });

/** One proxied exchange (request or upgraded connection) that a revocation must cut. */
interface Exchange {
  generation: number;
  abort(): void;
}

/** Starts the gate on 127.0.0.1:<ephemeral>; resolves once it listens. */
export async function startAccessGate(options: AccessGateOptions): Promise<AccessGate> {
  const originHost = options.origin.host;
  const originPort = options.origin.port;
  if (!originHost || !Number.isInteger(originPort) || originPort < 1 || originPort > 65535) {
    throw new RangeError(`The access gate needs an origin host and a port from 1 to 65535, got ${originHost}:${originPort}.`);
  }
  let secret = options.secret ?? randomBytes(32).toString('base64url');
  if (!SECRET_SHAPE.test(secret)) {
    throw new RangeError('The share secret must be 16 to 512 characters from A-Z a-z 0-9 - _ . ~ (it goes in URLs).');
  }
  let secretDigest = digest(secret);
  let mode: AccessGateMode = options.mode ?? 'secret';
  const hostHeaderMode: GateHostHeader = options.hostHeader ?? 'origin';
  const originUrl = `http://${hostForUrl(originHost)}:${originPort}`;
  const originHostHeader = `${hostForUrl(originHost)}:${originPort}`;
  const tracker = new FailureTracker(options.maxFailuresPerMinute ?? DEFAULT_MAX_FAILURES_PER_MINUTE);
  const headersTimeoutMs = options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
  if (!Number.isInteger(headersTimeoutMs) || headersTimeoutMs < 1) throw new RangeError(`headersTimeoutMs must be a positive integer, got ${headersTimeoutMs}`);
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  if (!Number.isInteger(maxConnections) || maxConnections < 1) throw new RangeError(`maxConnections must be a positive integer, got ${maxConnections}`);
  // A held 401 holds its connection: held ones never take more than half of the connections, so
  // a flood of guesses leaves room for the owner's requests.
  const maxPendingDelays = Math.max(1, Math.min(MAX_PENDING_DELAYS, Math.floor(maxConnections / 2)));

  // Every secret this gate ever held (the last 16) is scrubbed from log lines and from Referer and
  // Origin (an old one may still be in use, or in a browser's history).
  const spent: string[] = [];
  const spentDigests: Buffer[] = [];
  const log = (level: AccessGateLogLevel, message: string): void => {
    if (!options.log) return;
    let text = message;
    for (const s of [secret, ...spent]) text = text.split(s).join('<secret>');
    try {
      options.log(level, text);
    } catch {
      // a failing sink must not break the proxy
    }
  };

  const rejectEmitter = new Emitter<AccessGateRejection>((err) => log('error', `access gate: an onDidReject listener threw: ${errorCode(err)}`));
  const stats = { passed: 0, rejected: 0 };
  const agent = new Agent({ keepAlive: true });
  const clientSockets = new Set<Socket>();
  const exchanges = new Set<Exchange>();
  const delayTimers = new Set<NodeJS.Timeout>();
  let generation = 0;
  let closing: Promise<void> | undefined;

  const revoke = (why: string): void => {
    generation++;
    let cut = 0;
    for (const x of [...exchanges]) {
      if (x.generation < generation) {
        exchanges.delete(x);
        x.abort();
        cut++;
      }
    }
    if (cut > 0) log('info', `access gate: closed ${cut} open stream(s) or WebSocket(s) (${why})`);
  };

  const track = (abort: () => void): (() => void) => {
    const x: Exchange = { generation, abort };
    exchanges.add(x);
    return () => void exchanges.delete(x);
  };

  const clientKey = (req: IncomingMessage): string => first(req.headers['cf-connecting-ip'])?.trim() || req.socket.remoteAddress || 'unknown';

  /**
   * `knowsSecret`: the request itself carries the current secret (path or Bearer), so it may be
   * searched for secrets in ways that are not constant-time: it can learn nothing from the timing.
   */
  const originHeaders = (req: IncomingMessage, stripBearer: boolean, knowsSecret: boolean): OutgoingHttpHeaders => {
    const headers = endToEnd(req.headers);
    // The secret never reaches the origin; another Authorization (the origin's own) does.
    if (stripBearer) delete headers['authorization'];
    for (const name of ['referer', 'origin']) {
      const v = headers[name];
      if (typeof v !== 'string') continue;
      const scrubbed = withoutSecretSegment(v, [secretDigest, ...spentDigests]);
      // A secret anywhere else (a query, a later segment, a second value): drop the whole field.
      if (knowsSecret && [secret, ...spent].some((s) => scrubbed.includes(s))) delete headers[name];
      else headers[name] = scrubbed;
    }
    // We answered `Expect: 100-continue` ourselves (or Node did).
    delete headers['expect'];
    const incomingHost = req.headers.host;
    headers['host'] = hostHeaderMode === 'public' && incomingHost ? incomingHost : originHostHeader;
    if (incomingHost) headers['x-forwarded-host'] = incomingHost;
    headers['x-forwarded-proto'] = 'https';
    return headers;
  };

  /**
   * Decides one request or upgrade. `pass` runs when it may go on (with the origin path, whether
   * Authorization carries the secret, and whether the request carries the secret at all);
   * `refuse` sends the status after the delay.
   */
  const gate = (
    req: IncomingMessage,
    pass: (path: string, stripBearer: boolean, knowsSecret: boolean) => void,
    refuse: (status: 401 | 429) => void,
    onGone: (cb: () => void) => void,
  ): void => {
    const url = req.url ?? '/';
    if (mode === 'open') {
      const target = originForm(url) ?? url;
      const bearer = bearerState(req.headers, secretDigest) === 'match';
      const stripped = strippedPath(target, secretDigest);
      stats.passed++;
      pass(stripped ?? target, bearer, bearer || stripped !== undefined);
      return;
    }
    // The credential first, always, before any throttling: two SHA-256 and a constant-time compare
    // cost next to nothing, and everyone behind cloudflared shares one client key unless
    // CF-Connecting-IP differs, so throttling before checking would let one guesser lock the
    // owner out. Only failures are ever delayed or refused with 429.
    const check = checkWithDigest(url, req.headers, secretDigest);
    if (check.ok) {
      stats.passed++;
      log('debug', `access gate: ${req.method ?? 'GET'} ${check.path} passed (${check.via})`);
      // Via the path, Authorization may still carry the secret too: it goes either way.
      pass(check.path, check.via === 'bearer' || bearerState(req.headers, secretDigest) === 'match', true);
      return;
    }
    stats.rejected++;
    const key = clientKey(req);
    // Bounded memory: once too many 401s are held, a throttled client's failure is refused at once.
    if (delayTimers.size >= maxPendingDelays && tracker.peek(key) > 0) {
      refuse(429);
      return;
    }
    const delay = tracker.fail(key);
    // Never the path or headers: a near miss (`/<secret>x`) or a revoked secret would land in the log.
    log('debug', `access gate: refused ${req.method ?? 'GET'} from ${key}: ${check.reason}`);
    if (delay === FAILURE_DELAY_STEP_MS) log('warn', `access gate: ${key} failed more than ${tracker.maxPerMinute} times in a minute; its 401s are now delayed`);
    rejectEmitter.fire({ ip: key, reason: check.reason });
    if (delay === 0) {
      refuse(401);
      return;
    }
    if (delayTimers.size >= maxPendingDelays) {
      refuse(429);
      return;
    }
    const timer = setTimeout(() => {
      delayTimers.delete(timer);
      refuse(401);
    }, delay);
    delayTimers.add(timer);
    onGone(() => {
      clearTimeout(timer);
      delayTimers.delete(timer);
    });
  };

  const sendJson = (res: ServerResponse, status: number, body: string, extra: OutgoingHttpHeaders = {}): void => {
    if (res.headersSent || res.destroyed) return;
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra });
    res.end(body);
  };

  const notAnswering = (err: unknown): string => `The local server at ${originUrl} is not answering: ${errorCode(err)}. Start it, or check the port.`;

  const handleRequest = (req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void => {
    const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0';
    gate(
      req,
      (path, stripBearer, knowsSecret) => proxyRequest(req, res, path, stripBearer, knowsSecret, expectsContinue),
      (status) => {
        // An unread body is not worth reading: close the connection after the answer.
        const extra: OutgoingHttpHeaders = hasBody && !req.complete ? { connection: 'close' } : {};
        if (status === 401) sendJson(res, 401, UNAUTHORIZED_BODY, { 'www-authenticate': 'Bearer realm="MCP Tunnel"', ...extra });
        else sendJson(res, 429, TOO_MANY_BODY, { 'retry-after': '5', connection: 'close' });
      },
      (cb) => res.once('close', cb),
    );
  };

  const proxyRequest = (req: IncomingMessage, res: ServerResponse, path: string, stripBearer: boolean, knowsSecret: boolean, expectsContinue: boolean): void => {
    const headers = originHeaders(req, stripBearer, knowsSecret);
    if (req.headers['transfer-encoding'] !== undefined && req.headers['content-length'] === undefined) {
      // Keep a chunked body chunked even for methods Node would not chunk by default (GET, DELETE).
      headers['transfer-encoding'] = 'chunked';
    }
    let upstream: ClientRequest;
    try {
      upstream = httpRequest({ host: originHost, port: originPort, method: req.method, path, headers, agent });
    } catch (err) {
      // e.g. a header value Node refuses to send
      sendJson(res, 400, JSON.stringify({ error: `Bad request: ${errorCode(err)}` }), { connection: 'close' });
      return;
    }
    const untrack = track(() => {
      upstream.destroy();
      res.destroy();
    });
    upstream.on('socket', (s: Socket) => s.setNoDelay(true));
    upstream.on('response', (ures: IncomingMessage) => {
      const out = endToEnd(ures.headers);
      res.writeHead(ures.statusCode ?? 502, ures.statusMessage, out);
      // pipe(), not pipeline(): pipeline's AbortController builds a DOMException (stack trace
      // included) for every request it finishes. With the deferred flush below, this cut the
      // gate's CPU per request by a third at saturation (npm run bench, item 5).
      ures.pipe(res);
      // SSE: the status line and headers go out now, not with the first event. A body that came
      // with the headers goes out with them in one write instead of two.
      let bodyStarted = false;
      ures.once('data', () => (bodyStarted = true));
      setImmediate(() => {
        if (!bodyStarted && !res.writableEnded && !res.destroyed) res.flushHeaders();
      });
      // A response cut short (the origin died mid-stream): drop the client's end too, so it sees
      // an aborted response rather than a clean end. (The client leaving is handled below.)
      const cut = (): void => {
        untrack();
        res.destroy();
        upstream.destroy();
      };
      ures.on('error', cut);
      ures.on('close', () => {
        if (!ures.complete) cut();
      });
    });
    upstream.on('error', (err) => {
      untrack();
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (res.destroyed) return;
      log('warn', `access gate: ${notAnswering(err)}`);
      req.unpipe(upstream);
      sendJson(res, 502, JSON.stringify({ error: notAnswering(err) }), { connection: 'close' });
    });
    // The client left before the response finished: abort the origin request too.
    res.on('close', () => {
      untrack();
      if (!res.writableFinished) upstream.destroy();
    });
    if (expectsContinue) res.writeContinue();
    req.pipe(upstream);
  };

  const rawResponse = (socket: Socket, status: number, reason: string, body: string, extra: string[] = []): void => {
    if (socket.destroyed) return;
    const head = [
      `HTTP/1.1 ${status} ${reason}`,
      'Content-Type: application/json; charset=utf-8',
      `Content-Length: ${Buffer.byteLength(body)}`,
      'Cache-Control: no-store',
      'Connection: close',
      ...extra,
    ];
    socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
  };

  const handleUpgrade = (req: IncomingMessage, socket: Socket, head: Buffer): void => {
    socket.on('error', () => socket.destroy());
    gate(
      req,
      (path, stripBearer, knowsSecret) => proxyUpgrade(req, socket, head, path, stripBearer, knowsSecret),
      (status) => {
        if (status === 401) rawResponse(socket, 401, 'Unauthorized', UNAUTHORIZED_BODY, ['WWW-Authenticate: Bearer realm="MCP Tunnel"']);
        else rawResponse(socket, 429, 'Too Many Requests', TOO_MANY_BODY, ['Retry-After: 5']);
      },
      (cb) => socket.once('close', cb),
    );
  };

  const proxyUpgrade = (req: IncomingMessage, socket: Socket, head: Buffer, path: string, stripBearer: boolean, knowsSecret: boolean): void => {
    const headers = originHeaders(req, stripBearer, knowsSecret);
    // An upgrade is the one case where Connection and Upgrade must reach the origin.
    headers['connection'] = 'Upgrade';
    const upgrade = req.headers['upgrade'];
    if (upgrade !== undefined) headers['upgrade'] = upgrade;
    let upstream: ClientRequest;
    try {
      upstream = httpRequest({ host: originHost, port: originPort, method: req.method, path, headers, agent: false });
    } catch (err) {
      rawResponse(socket, 400, 'Bad Request', JSON.stringify({ error: `Bad request: ${errorCode(err)}` }));
      return;
    }
    let originSocket: Socket | undefined;
    const untrack = track(() => {
      upstream.destroy();
      originSocket?.destroy();
      socket.destroy();
    });
    socket.once('close', () => {
      untrack();
      // Let what the client sent before leaving reach the origin, then close.
      if (originSocket) originSocket.destroySoon();
      else upstream.destroy();
    });
    upstream.on('upgrade', (ures: IncomingMessage, usock: Socket, uhead: Buffer) => {
      originSocket = usock;
      if (socket.destroyed) {
        usock.destroy();
        return;
      }
      const named = connectionTokens(ures.headers);
      const lines = [`HTTP/1.1 101 ${ures.statusMessage || 'Switching Protocols'}`];
      for (let i = 0; i + 1 < ures.rawHeaders.length; i += 2) {
        const name = ures.rawHeaders[i] ?? '';
        const lower = name.toLowerCase();
        if (lower !== 'connection' && lower !== 'upgrade' && (HOP_BY_HOP.has(lower) || named.has(lower))) continue;
        lines.push(`${name}: ${ures.rawHeaders[i + 1] ?? ''}`);
      }
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      usock.setNoDelay(true);
      socket.setNoDelay(true);
      if (uhead.length > 0) socket.write(uhead);
      if (head.length > 0) usock.write(head);
      // pipe() ends each side when the other ends (half-close passes through).
      usock.pipe(socket);
      socket.pipe(usock);
      usock.on('error', () => socket.destroy());
      socket.on('error', () => usock.destroy());
      usock.once('close', () => socket.destroySoon());
    });
    upstream.on('response', (ures: IncomingMessage) => {
      // The origin declined the upgrade: relay its answer, close-delimited (the body is decoded).
      const lines = [`HTTP/1.1 ${ures.statusCode ?? 502} ${ures.statusMessage ?? ''}`];
      const named = connectionTokens(ures.headers);
      for (let i = 0; i + 1 < ures.rawHeaders.length; i += 2) {
        const name = ures.rawHeaders[i] ?? '';
        const lower = name.toLowerCase();
        if (HOP_BY_HOP.has(lower) || named.has(lower) || lower === 'content-length') continue;
        lines.push(`${name}: ${ures.rawHeaders[i + 1] ?? ''}`);
      }
      lines.push('Connection: close');
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      pipeline(ures, socket, () => untrack());
    });
    upstream.on('error', (err) => {
      untrack();
      if (originSocket) {
        socket.destroy();
        return;
      }
      log('warn', `access gate: ${notAnswering(err)}`);
      rawResponse(socket, 502, 'Bad Gateway', JSON.stringify({ error: notAnswering(err) }));
    });
    upstream.end();
  };

  // Node's timeouts, and which ones the gate uses:
  // - headersTimeout: from a request's first byte (a new connection's opening) to the end of its
  //   head; then 408 and close. Only the head: a slow client cannot hold a socket by trickling one.
  //   Its checker runs every connectionsCheckingInterval (default 30 s), so that is tied to it.
  // - requestTimeout: until the request BODY is complete. Off: it would cut a slow large upload.
  //   (Off also turns headersTimeout off by default on Node 20, hence the explicit value.)
  // - timeout (socket inactivity): off, as by default: it would cut a quiet SSE stream.
  // - keepAliveTimeout: idle time between a response's end and the next request's first byte.
  const server = createServer(
    { requestTimeout: 0, headersTimeout: headersTimeoutMs, connectionsCheckingInterval: Math.max(10, Math.min(5_000, Math.floor(headersTimeoutMs / 4))) },
    (req, res) => handleRequest(req, res, false),
  );
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  // Beyond the cap, net.Server closes a new connection as soon as it is accepted ('drop').
  server.maxConnections = maxConnections;
  let lastDropLog = 0;
  server.on('drop', () => {
    const t = Date.now();
    if (t - lastDropLog < 60_000) return;
    lastDropLog = t;
    log('warn', `access gate: ${maxConnections} connections are open; closing new ones until some end`);
  });
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => handleRequest(req, res, true));
  server.on('upgrade', handleUpgrade);
  server.on('connection', (s: Socket) => {
    clientSockets.add(s);
    s.once('close', () => clientSockets.delete(s));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log('error', `access gate: ${errorCode(err)}`));
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  log('info', `access gate: ${url} -> ${originUrl} (${mode}, origin sees Host ${hostHeaderMode === 'origin' ? originHostHeader : 'as received'})`);

  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      for (const t of delayTimers) clearTimeout(t);
      delayTimers.clear();
      server.close(() => resolve());
      for (const x of [...exchanges]) x.abort();
      exchanges.clear();
      server.closeAllConnections();
      for (const s of clientSockets) s.destroy();
      agent.destroy();
      rejectEmitter.dispose();
      log('info', 'access gate: closed');
    });
    return closing;
  };

  return {
    url,
    port,
    get mode() {
      return mode;
    },
    secretPath: () => `/${secret}`,
    rotateSecret: () => {
      spent.push(secret);
      spentDigests.push(secretDigest);
      if (spent.length > 16) {
        spent.shift();
        spentDigests.shift();
      }
      secret = randomBytes(32).toString('base64url');
      secretDigest = digest(secret);
      log('info', 'access gate: share secret rotated; the old one no longer works');
      revoke('secret rotated');
      return secret;
    },
    setMode: (next) => {
      if (next === mode) return;
      mode = next;
      log('info', `access gate: mode ${next}`);
      if (next === 'secret') revoke('the gate closed');
    },
    get stats() {
      return { passed: stats.passed, rejected: stats.rejected };
    },
    onDidReject: rejectEmitter.event,
    close,
    dispose: () => void close(),
  };
}

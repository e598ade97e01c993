/**
 * The access gate: a loopback reverse proxy between cloudflared (`--url <gate>`) and the local
 * origin. A quick tunnel is public, so anyone who learns its URL reaches the origin; the gate lets
 * a request through only with the share secret, either as `Authorization: Bearer <secret>` or as
 * the first path segment (`https://x.trycloudflare.com/<secret>/mcp`), and answers everything else
 * with 401 without ever opening a connection to the origin.
 *
 * Otherwise it is transparent: request and response bodies stream both ways (no buffering, unless
 * the share has a tool policy: then each body is read whole and judged, see core/policy), SSE
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
 * Two paths to an origin. The fast one (originLink.ts, responseReader.ts) serves a plain proxied
 * share: Node's server still parses and vets every request, but the gate writes the origin's
 * request head itself onto the client connection's own origin connection and reads the answer with
 * a strict reader, so no `http.request` object is made per request. The slow one (`http.request`)
 * serves what must be read or answered first: a recorder tapping, a tool policy, an OAuth
 * discovery document, `Expect: 100-continue`.
 *
 * Pure Node (`node:http`, `node:net`, `node:crypto`): no dependency, no `vscode`.
 */
import * as nodeCrypto from 'node:crypto';
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
import { Emitter, type Event } from '../util/events';
import { first, readCapped, sendJson } from '../util/http';
import { isSelfCheck, SELF_CHECK_HEADER } from '../util/selfCheck';
import { discoveryForm, discoveryOriginPath, isDiscoveryPath, originBasesOf, publicPrefixOf, rewriteChallenge, rewriteDocument, mapUrl, type PublicMapping } from './oauthDiscovery';
import { readJudged, relayFiltered } from '../policy/policyExchange';
import { ToolGuard, type ToolPolicy } from '../policy/toolPolicy';
import { OriginLink } from './originLink';
import { ResponseHeadError, type Framing, type ResponseHead } from './responseReader';

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
  /**
   * Tells the process's own reachability checks (not counted, not recorded, no idle reset) from
   * traffic. Pass the caller's `isSelfCheck` (util/selfCheck): the gate is a bundle of its own
   * (dist/gate.js) with its own copy of that module, whose token no check ever carries. Default:
   * this module's copy (right only when gate and monitor share one module graph, as in the tests).
   */
  isSelfCheck?: (headers: IncomingHttpHeaders) => boolean;
  /** The first route's id (default `default`). */
  routeId?: string;
  /** The first route's public name, if it is open (see `GateRouteOptions.name`). */
  name?: string;
  /** The first route's `GateRouteOptions.originAuthorization`. */
  originAuthorization?: string;
  /** The first route's `GateRouteOptions.originHeaders`. */
  originHeaders?: Record<string, string>;
  /** The first route's `GateRouteOptions.handler`. */
  handler?: GateHandler;
  /** The first route's `GateRouteOptions.policy`. */
  policy?: ToolPolicy;
  /**
   * Called for every request the gate lets through, before its origin sees it (the inspector's
   * recorder taps it here). Not for WebSocket upgrades. A throw is ignored.
   */
  onPass?: (req: IncomingMessage, res: ServerResponse, info: PassInfo) => void;
  /**
   * Tells whether a client connection is cloudflared's (the process at the other end of
   * `clientPort` → our `serverPort`): what `PassInfo.fromTunnel` answers. Checked once per
   * connection; undefined: it cannot be told here.
   */
  peerCheck?: (clientPort: number, serverPort: number) => Promise<boolean | undefined>;
}

/** What the gate tells `onPass` of a request it let through. */
export interface PassInfo {
  shareId: string;
  /** `share secret`, `link "<label>"` or `open`. */
  link: string;
  /**
   * Did it come through cloudflared (so its `Cf-*` headers are Cloudflare's word)? true / false;
   * null when it cannot be told (no `peerCheck`, not Linux). A promise while the connection's
   * owner is still being looked up (its first request).
   */
  fromTunnel(): boolean | null | Promise<boolean | null>;
}

/**
 * An origin in this process (the stdio bridge): the gate calls it with the request as an origin
 * would see it (its path without the secret, the headers the gate sends) and the client's
 * response, with no loopback HTTP hop in between.
 */
export type GateHandler = (req: IncomingMessage, res: ServerResponse) => void;

export interface AccessGateRejection {
  /** `CF-Connecting-IP` when present (cloudflared sets it), else the socket address. */
  ip: string;
  reason: string;
}

/**
 * One share behind the gate: requests carrying its secret (path prefix or bearer) go to its
 * origin. An `open` route needs no secret: the first open route (the primary) also takes every
 * request no secret matched, so a lone open share keeps `https://<host>/mcp`; every open route is
 * also reachable as `/<name>/…` by its public name.
 */
export interface GateRouteOptions {
  id: string;
  origin: { host: string; port: number };
  /** Default `secret`. */
  access?: AccessGateMode;
  /** Default: 32 random bytes, base64url. */
  secret?: string;
  /** Public path prefix of an open route (`[a-z0-9-]{1,40}`); default `s-<6 hex>`. */
  name?: string;
  /**
   * `Authorization` the gate sends this origin instead of the client's (the stdio bridge's own
   * token, so only the gate can drive it). Never logged.
   */
  originAuthorization?: string;
  /**
   * Headers set on every request toward this origin (replacing the client's of the same name),
   * e.g. a local server's own API key. Names must be HTTP tokens and not hop-by-hop or framing
   * fields; values one line. Never logged.
   */
  originHeaders?: Record<string, string>;
  /** Serve this route in-process instead of proxying to `origin` (which stays its address for messages). */
  handler?: GateHandler;
  /**
   * Which tools its clients may see and call (see core/policy): every request is read whole and
   * judged before the origin sees it, every answer filtered. Such a route is always proxied (its
   * `handler` unused) and takes no WebSocket.
   */
  policy?: ToolPolicy;
}

export interface GateRouteStats {
  /** Requests (and upgrades) this route let through. */
  readonly passed: number;
  /** Of those, answered 5xx or not answered (origin down or gone mid-response). */
  readonly errors: number;
  /** When the last one arrived (epoch ms). */
  readonly lastRequestAt?: number;
  /** Something about its origin the share should show (see `Route.warnings`). */
  readonly warning?: string;
}

/** A route's origin stopped answering (`ok: false`, with why and the fix) or answers again. */
export interface GateOriginHealth {
  routeId: string;
  ok: boolean;
  /** When not ok: names the local server and the fix. */
  message?: string;
}

export interface AccessGate {
  /** `http://127.0.0.1:<port>`: what cloudflared's `--url` points at. */
  readonly url: string;
  readonly port: number;
  /** The first route's mode (the single-share API). */
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
  /** A route's origin stopped answering (502: its local server is down or on another port), or answers again. */
  readonly onDidChangeOriginHealth: Event<GateOriginHealth>;
  /** Adds a route; usable by the next request. Throws on a duplicate id or secret, or a bad origin. */
  addRoute(route: GateRouteOptions): void;
  /** Removes a route and cuts its open streams and WebSockets. False if there was none. */
  removeRoute(id: string): boolean;
  /** A new secret for one route (its streams cut, the others untouched); undefined if unknown. */
  rotateRoute(id: string): string | undefined;
  /**
   * Points a route at another origin (a stdio share's new bridge), its secret and counters kept;
   * its open streams are cut (they belonged to the old origin). False if unknown; throws on a bad origin.
   */
  setRouteOrigin(id: string, origin: { host: string; port: number }, options?: { originAuthorization?: string; handler?: GateHandler }): boolean;
  /**
   * A route's tool policy, from the next request on (undefined: none). Its open streams are cut:
   * they were judged by the old one. False if unknown.
   */
  setRoutePolicy(id: string, policy: ToolPolicy | undefined): boolean;
  /**
   * Another secret for a secret route: one recipient's link, with a label and maybe an expiry
   * (epoch ms). At the expiry, or on `removeLink`, it gets 401 saying so and its streams are cut.
   * Returns the link and its secret (never log it); undefined for an unknown or open route.
   */
  addLink(routeId: string, link: { label: string; expiresAt?: number; secret?: string; id?: string }): (GateLink & { secret: string }) | undefined;
  /** Revokes one link: its requests get 401 ("revoked"), its open streams are cut. False if unknown. */
  removeLink(routeId: string, linkId: string): boolean;
  /** A route's links (without their secrets), oldest first. */
  links(routeId: string): GateLink[];
  /** `/<secret>` of a secret route; undefined for open or unknown routes. Never log it. */
  routeSecretPath(id: string): string | undefined;
  /** The path prefix an open route is addressed by: '' for the primary open route, `/<name>` otherwise. */
  routeOpenPrefix(id: string): string | undefined;
  routeStats(id: string): GateRouteStats | undefined;
  routeIds(): string[];
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
/** What the fast path will not write into a request head (the slow path's http.request refuses it). */
const BAD_TARGET = /[\s\0]/;
const BAD_FIELD_VALUE = /[\r\n\0]/;

/** Node ≥ 20.12's one-shot `crypto.hash` (no Hash object per call), else createHash. */
const oneShot = (nodeCrypto as { hash?: (algorithm: string, data: string, encoding: 'buffer') => Buffer }).hash;

function digest(s: string): Buffer {
  return oneShot ? oneShot('sha256', s, 'buffer') : createHash('sha256').update(s, 'utf8').digest();
}

/**
 * The hex digest of a presented secret (a bearer token, a first path segment), remembered for the
 * next request (a client sends the same one every time): up to 256 of at most 512 characters, then
 * forgotten all at once. A string's digest never changes, so this cache cannot route anything
 * differently; what a secret maps to is looked up anew on every request. A hit needs the exact
 * string, so its timing tells a guesser nothing a 401 does not.
 */
const presentedHex = new Map<string, string>();
function digestHexOf(s: string): string {
  let hex = presentedHex.get(s);
  if (hex === undefined) {
    hex = digest(s).toString('hex');
    if (s.length <= 512) {
      if (presentedHex.size >= 256) presentedHex.clear();
      presentedHex.set(s, hex);
    }
  }
  return hex;
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
  const state = bearerState(headers, secretDigest);
  return state === 'match' ? { ok: true, path: target, via: 'bearer' } : { ok: false, reason: refusalReason(state) };
}

/** Why a request that carried no matching secret was refused (never the secret or the path). */
function refusalReason(bearer: 'mismatch' | 'other-scheme' | 'none'): string {
  switch (bearer) {
    case 'mismatch':
      return 'wrong bearer token';
    case 'other-scheme':
      return 'Authorization is not a Bearer token, and the path does not start with a secret';
    default:
      return 'no credentials: no Bearer token, and the path does not start with a secret';
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
const NO_TOKENS: ReadonlySet<string> = new Set();

function connectionTokens(headers: IncomingHttpHeaders): ReadonlySet<string> {
  const v = headers['connection'];
  if (v === undefined) return NO_TOKENS;
  const all = Array.isArray(v) ? v.join(',') : v;
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
  route: Route;
  generation: number;
  /** The link it came through, if not the share's own secret. */
  link?: Link;
  abort(): void;
}

/** Another secret of a route: one recipient's, with a label and maybe an expiry. */
interface Link {
  id: string;
  label: string;
  secret: string;
  digestHex: string;
  /** Epoch ms; undefined: never. */
  expiresAt?: number;
  timer?: NodeJS.Timeout;
}

/** A link as the gate's users see it (never its secret). */
export interface GateLink {
  id: string;
  label: string;
  expiresAt?: number;
}

interface Route {
  id: string;
  host: string;
  port: number;
  /** `http://host:port`, for messages. */
  url: string;
  /** What the origin sees as Host in `origin` mode. */
  hostHeader: string;
  access: AccessGateMode;
  secret: string;
  digestHex: string;
  name: string;
  originAuthorization?: string;
  originHeaders?: Array<[string, string]>;
  handler?: GateHandler;
  /** Its tool policy's judge, if it has one. */
  guard?: ToolGuard;
  /** Bumped by each revocation: exchanges of older generations are cut. */
  generation: number;
  passed: number;
  errors: number;
  lastRequestAt?: number;
  /** The last attempt to reach the origin failed (until one succeeds). */
  failing: boolean;
  /** Further secrets, one per recipient (see `addLink`). */
  links: Map<string, Link>;
  /** What the share should show about its origin (an OAuth document naming a server the tunnel does not carry). */
  warnings: Set<string>;
}

/** The largest OAuth discovery document the gate reads to rewrite. */
const MAX_DISCOVERY_BYTES = 1024 * 1024;

const ROUTE_NAME = /^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$/;

function checkOrigin(origin: { host: string; port: number }): void {
  if (!origin.host || !Number.isInteger(origin.port) || origin.port < 1 || origin.port > 65535) {
    throw new RangeError(`The access gate needs an origin host and a port from 1 to 65535, got ${origin.host}:${origin.port}.`);
  }
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Fields the gate itself owns (framing, hop-by-hop, routing): never set from a share's headers. */
const RESERVED_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer', 'proxy-connection', 'expect', 'x-forwarded-host', 'x-forwarded-proto']);

/** Lower-cased, checked `originHeaders`; throws a RangeError naming the bad one (never its value). */
function checkOriginHeaders(headers: Record<string, string>): Array<[string, string]> {
  return Object.entries(headers).map(([name, value]) => {
    const lower = name.toLowerCase();
    if (!HEADER_NAME.test(name)) throw new RangeError(`"${name}" is not a valid HTTP header name.`);
    if (RESERVED_HEADERS.has(lower)) throw new RangeError(`The header "${name}" cannot be set for a share (the gate sets it).`);
    if (typeof value !== 'string' || /[\r\n\0]/.test(value)) throw new RangeError(`The value of the header "${name}" must be one line of text.`);
    return [lower, value];
  });
}

function checkSecret(secret: string): void {
  if (!SECRET_SHAPE.test(secret)) {
    throw new RangeError('The share secret must be 16 to 512 characters from A-Z a-z 0-9 - _ . ~ (it goes in URLs).');
  }
}

/** The first path segment of an origin-form target, and the rest (`/` at least) with the query. */
function splitFirstSegment(target: string): { segment: string; rest: string } {
  const q = target.indexOf('?');
  const pathPart = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q);
  const slash = pathPart.indexOf('/', 1);
  const segment = slash < 0 ? pathPart.slice(1) : pathPart.slice(1, slash);
  const rest = slash < 0 ? '' : pathPart.slice(slash);
  return { segment, rest: (rest === '' ? '/' : rest) + query };
}

function bearerToken(headers: Record<string, string | string[] | undefined>): { state: 'none' | 'other-scheme' } | { state: 'token'; token: string } {
  const auth = first(headers['authorization']);
  if (auth === undefined || auth.trim() === '') return { state: 'none' };
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(auth);
  return m?.[1] ? { state: 'token', token: m[1] } : { state: 'other-scheme' };
}

/** Which route a request goes to, with the path the origin gets; or why none. */
type Decision =
  | { ok: true; route: Route; path: string; stripBearer: boolean; knowsSecret: boolean; via: 'path' | 'bearer' | 'open'; link?: Link }
  | { ok: false; reason: string; /** What the 401 says instead of the generic text (an expired or revoked link). */ body?: string };

/** Starts the gate on 127.0.0.1:<ephemeral> with its first route; resolves once it listens. */
export async function startAccessGate(options: AccessGateOptions): Promise<AccessGate> {
  const hostHeaderMode: GateHostHeader = options.hostHeader ?? 'origin';
  const tracker = new FailureTracker(options.maxFailuresPerMinute ?? DEFAULT_MAX_FAILURES_PER_MINUTE);
  const headersTimeoutMs = options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
  if (!Number.isInteger(headersTimeoutMs) || headersTimeoutMs < 1) throw new RangeError(`headersTimeoutMs must be a positive integer, got ${headersTimeoutMs}`);
  const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  if (!Number.isInteger(maxConnections) || maxConnections < 1) throw new RangeError(`maxConnections must be a positive integer, got ${maxConnections}`);
  const selfCheck = options.isSelfCheck ?? isSelfCheck;
  // A held 401 holds its connection: held ones never take more than half of the connections, so
  // a flood of guesses leaves room for the owner's requests.
  const maxPendingDelays = Math.max(1, Math.min(MAX_PENDING_DELAYS, Math.floor(maxConnections / 2)));

  /** Routes in insertion order (the first open one is the primary open route). */
  const routes = new Map<string, Route>();
  /**
   * Every route by the SHA-256 of its secret. A candidate is hashed once and looked up: what a
   * lookup's timing could reveal is about a digest, which tells nothing about a secret.
   */
  const bySecret = new Map<string, Route>();
  /** Links' digests → their route and link. */
  const byLink = new Map<string, { route: Route; link: Link }>();
  /** Digests of links that ended, and how (for the 401's text); bounded. */
  const endedLinks = new Map<string, 'expired' | 'revoked'>();
  const byName = new Map<string, Route>();

  // Every secret this gate ever held (the last 16 rotated out, and those of removed routes) is
  // scrubbed from log lines and from Referer and Origin (an old one may still be in use, or in a
  // browser's history).
  const spent: string[] = [];
  const spentDigests: Buffer[] = [];
  /** Digests of retired secrets: a request still carrying one is refused (never handed to an open share). */
  const spentHex = new Set<string>();
  const retire = (secret: string): void => {
    knownSecrets = undefined;
    spent.push(secret);
    spentDigests.push(digest(secret));
    spentHex.add(digest(secret).toString('hex'));
    if (spentHex.size > 1024) spentHex.delete(spentHex.values().next().value as string);
    if (spent.length > 16) {
      spent.shift();
      spentDigests.shift();
    }
  };
  const liveSecrets = (): string[] => [...routes.values()].flatMap((r) => [r.secret, ...[...r.links.values()].map((l) => l.secret)]);
  /** Every secret live or spent, for scrubbing; rebuilt after a change (not per request or log line). */
  let knownSecrets: string[] | undefined;
  const allSecrets = (): string[] => (knownSecrets ??= [...liveSecrets(), ...spent]);
  const log = (level: AccessGateLogLevel, message: string): void => {
    if (!options.log) return;
    let text = message;
    for (const s of allSecrets()) if (text.includes(s)) text = text.split(s).join('<secret>');
    try {
      options.log(level, text);
    } catch {
      // a failing sink must not break the proxy
    }
  };

  const rejectEmitter = new Emitter<AccessGateRejection>((err) => log('error', `access gate: an onDidReject listener threw: ${errorCode(err)}`));
  const healthEmitter = new Emitter<GateOriginHealth>((err) => log('error', `access gate: an onDidChangeOriginHealth listener threw: ${errorCode(err)}`));
  const stats = { passed: 0, rejected: 0 };
  const agent = new Agent({ keepAlive: true });
  const clientSockets = new Set<Socket>();
  const exchanges = new Set<Exchange>();
  const delayTimers = new Set<NodeJS.Timeout>();
  /** Client connections' owners: cloudflared (true), another process (false), unknown (null), or the lookup. */
  const peers = new WeakMap<Socket, boolean | null | Promise<boolean | null>>();
  /** Client connections' fast-path connections to their origin (see originLink.ts). */
  const originLinks = new Map<Socket, OriginLink>();
  let closing: Promise<void> | undefined;

  const primaryOpen = (): Route | undefined => {
    for (const r of routes.values()) if (r.access === 'open') return r;
    return undefined;
  };

  const originFields = (origin: { host: string; port: number }): Pick<Route, 'host' | 'port' | 'url' | 'hostHeader'> => {
    const h = hostForUrl(origin.host);
    return { host: origin.host, port: origin.port, url: `http://${h}:${origin.port}`, hostHeader: `${h}:${origin.port}` };
  };

  const addRoute = (o: GateRouteOptions): Route => {
    checkOrigin(o.origin);
    if (routes.has(o.id)) throw new RangeError(`The access gate already has a route "${o.id}".`);
    const secret = o.secret ?? randomBytes(32).toString('base64url');
    checkSecret(secret);
    const digestHex = digest(secret).toString('hex');
    if (bySecret.has(digestHex)) throw new RangeError('Another share already uses this secret.');
    const name = o.name ?? `s-${randomBytes(3).toString('hex')}`;
    if (!ROUTE_NAME.test(name)) throw new RangeError(`A share's public name must be 1 to 40 of a-z 0-9 - (got "${name}").`);
    if (byName.has(name)) throw new RangeError(`Another share already has the public name "${name}".`);
    const route: Route = {
      id: o.id,
      ...originFields(o.origin),
      access: o.access ?? 'secret',
      secret,
      digestHex,
      name,
      ...(o.originAuthorization !== undefined ? { originAuthorization: o.originAuthorization } : {}),
      ...(o.originHeaders ? { originHeaders: checkOriginHeaders(o.originHeaders) } : {}),
      ...(o.handler ? { handler: o.handler } : {}),
      ...(o.policy ? { guard: new ToolGuard(o.policy) } : {}),
      generation: 0,
      passed: 0,
      errors: 0,
      failing: false,
      links: new Map(),
      warnings: new Set(),
    };
    routes.set(route.id, route);
    bySecret.set(digestHex, route);
    knownSecrets = undefined;
    byName.set(name, route);
    return route;
  };

  const revoke = (route: Route, why: string): void => {
    route.generation++;
    let cut = 0;
    for (const x of [...exchanges]) {
      if (x.route === route && x.generation < route.generation) {
        exchanges.delete(x);
        x.abort();
        cut++;
      }
    }
    if (cut > 0) log('info', `access gate: closed ${cut} open stream(s) or WebSocket(s) (${why})`);
  };

  /** Ends one link (expired or revoked): its secret is retired, its exchanges cut. */
  const endLink = (route: Route, link: Link, how: 'expired' | 'revoked'): void => {
    if (link.timer) clearTimeout(link.timer);
    route.links.delete(link.id);
    byLink.delete(link.digestHex);
    endedLinks.set(link.digestHex, how);
    if (endedLinks.size > 1024) endedLinks.delete(endedLinks.keys().next().value as string);
    retire(link.secret);
    let cut = 0;
    for (const x of [...exchanges]) {
      if (x.link === link) {
        exchanges.delete(x);
        x.abort();
        cut++;
      }
    }
    log('info', `access gate: link "${link.label}" of share ${route.id} ${how}${cut ? `; closed ${cut} open stream(s)` : ''}`);
  };

  const setSecret = (route: Route, secret: string): void => {
    retire(route.secret);
    bySecret.delete(route.digestHex);
    route.secret = secret;
    route.digestHex = digest(secret).toString('hex');
    bySecret.set(route.digestHex, route);
    knownSecrets = undefined;
  };

  /** The origin answered: if it had been failing, say it is back. */
  const originAnswered = (route: Route): void => {
    if (!route.failing) return;
    route.failing = false;
    healthEmitter.fire({ routeId: route.id, ok: true });
  };

  const track = (route: Route, abort: () => void, link?: Link): (() => void) => {
    const x: Exchange = { route, generation: route.generation, abort, ...(link ? { link } : {}) };
    exchanges.add(x);
    return () => void exchanges.delete(x);
  };

  const first0 = addRoute({
    id: options.routeId ?? 'default',
    origin: options.origin,
    access: options.mode ?? 'secret',
    ...(options.secret !== undefined ? { secret: options.secret } : {}),
    ...(options.name !== undefined ? { name: options.name } : {}),
    ...(options.originAuthorization !== undefined ? { originAuthorization: options.originAuthorization } : {}),
    ...(options.originHeaders ? { originHeaders: options.originHeaders } : {}),
    ...(options.handler ? { handler: options.handler } : {}),
    ...(options.policy ? { policy: options.policy } : {}),
  });
  const firstRoute = (): Route | undefined => routes.get(first0.id) ?? routes.values().next().value;

  const clientKey = (req: IncomingMessage): string => first(req.headers['cf-connecting-ip'])?.trim() || req.socket.remoteAddress || 'unknown';

  const allDigests = (): Buffer[] => [...[...routes.values()].map((r) => Buffer.from(r.digestHex, 'hex')), ...[...byLink.keys()].map((h) => Buffer.from(h, 'hex')), ...spentDigests];

  /**
   * `knowsSecret`: the request itself carries a current secret (path or Bearer), so it may be
   * searched for secrets in ways that are not constant-time: it can learn nothing from the timing.
   */
  const originHeaders = (req: IncomingMessage, route: Route, stripBearer: boolean, knowsSecret: boolean): OutgoingHttpHeaders => {
    const headers = endToEnd(req.headers);
    delete headers[SELF_CHECK_HEADER];
    // The secret never reaches the origin; another Authorization (the origin's own) does.
    if (stripBearer) delete headers['authorization'];
    if (route.originAuthorization !== undefined) headers['authorization'] = route.originAuthorization;
    if (route.originHeaders) for (const [name, value] of route.originHeaders) headers[name] = value;
    for (const name of ['referer', 'origin']) {
      const v = headers[name];
      if (typeof v !== 'string') continue;
      const scrubbed = withoutSecretSegment(v, allDigests());
      // A secret anywhere else (a query, a later segment, a second value): drop the whole field.
      if (knowsSecret && allSecrets().some((s) => scrubbed.includes(s))) delete headers[name];
      else headers[name] = scrubbed;
    }
    // We answered `Expect: 100-continue` ourselves (or Node did).
    delete headers['expect'];
    const incomingHost = req.headers.host;
    headers['host'] = hostHeaderMode === 'public' && incomingHost ? incomingHost : route.hostHeader;
    if (incomingHost) headers['x-forwarded-host'] = incomingHost;
    headers['x-forwarded-proto'] = 'https';
    return headers;
  };

  /**
   * The routing decision: a secret in the first path segment (exact, not decoded), then a bearer
   * secret, then an open route by its public name, then the primary open route. Nothing else
   * passes: a request that matches no secret reaches no secret route's origin.
   */
  /** The link whose secret has this digest, unless it expired (then it ends now). */
  const liveLink = (hex: string | undefined): { route: Route; link: Link } | undefined => {
    const found = hex !== undefined ? byLink.get(hex) : undefined;
    if (found?.link.expiresAt !== undefined && found.link.expiresAt <= Date.now()) {
      endLink(found.route, found.link, 'expired');
      return undefined;
    }
    return found;
  };

  /**
   * An OAuth discovery request carries the secret after the well-known prefix
   * (`/.well-known/oauth-protected-resource/<secret>/mcp`, RFC 9728 §3.1): routed as
   * `/<secret>/mcp` would be, to the document at the origin's root. A segment that is no secret
   * of ours (a root form) is an ordinary request.
   */
  const resolve = (url: string, headers: IncomingHttpHeaders): Decision => {
    const target = originForm(url);
    const form = target !== undefined ? discoveryForm(target) : undefined;
    if (form) {
      const { segment } = splitFirstSegment(form.inner);
      const hex = SECRET_SHAPE.test(segment) ? digestHexOf(segment) : undefined;
      if (hex !== undefined && (bySecret.has(hex) || byLink.has(hex) || endedLinks.has(hex) || spentHex.has(hex))) {
        const d = resolveTarget(form.inner, headers);
        return d.ok && d.via === 'path' ? { ...d, path: discoveryOriginPath(form.doc, d.path) } : d;
      }
    }
    return resolveTarget(target, headers);
  };

  /** `target`: the request target in origin form (undefined: malformed). */
  const resolveTarget = (target: string | undefined, headers: IncomingHttpHeaders): Decision => {
    const bearer = bearerToken(headers);
    const bearerHex = bearer.state === 'token' ? digestHexOf(bearer.token) : undefined;
    const bearerRoute = bearerHex !== undefined ? bySecret.get(bearerHex) : undefined;
    const split = target !== undefined ? splitFirstSegment(target) : undefined;
    const segmentHex = split && split.segment !== '' && SECRET_SHAPE.test(split.segment) ? digestHexOf(split.segment) : undefined;
    const bySegment = segmentHex !== undefined ? bySecret.get(segmentHex) : undefined;
    const segLink = !bySegment ? liveLink(segmentHex) : undefined;
    const bearerLink = !bearerRoute ? liveLink(bearerHex) : undefined;
    const stripsBearer = bearerRoute !== undefined || bearerLink !== undefined;
    // The secret path wins: a request that carries it may send its own Authorization to the origin.
    if (bySegment && split) return { ok: true, route: bySegment, path: split.rest, stripBearer: stripsBearer, knowsSecret: true, via: 'path' };
    if (segLink && split) return { ok: true, route: segLink.route, path: split.rest, stripBearer: stripsBearer, knowsSecret: true, via: 'path', link: segLink.link };
    if (bearerRoute && target !== undefined) return { ok: true, route: bearerRoute, path: target, stripBearer: true, knowsSecret: true, via: 'bearer' };
    if (bearerLink && target !== undefined) return { ok: true, route: bearerLink.route, path: target, stripBearer: true, knowsSecret: true, via: 'bearer', link: bearerLink.link };
    if (target === undefined) return { ok: false, reason: 'malformed request target' };
    // A link that expired or was revoked says so (its holder learns nothing else).
    const ended = (segmentHex !== undefined ? endedLinks.get(segmentHex) : undefined) ?? (bearerHex !== undefined ? endedLinks.get(bearerHex) : undefined);
    if (ended) {
      return { ok: false, reason: `a link that ${ended === 'expired' ? 'expired' : 'was revoked'}`, body: JSON.stringify({ error: ended === 'expired' ? 'Unauthorized: this link has expired. Ask whoever shared it for a new one.' : 'Unauthorized: this link was revoked by whoever shared it.' }) };
    }
    // A secret that was rotated out, or whose share stopped: refused, and never passed on (the
    // old secret in its path or header) to an open share's origin.
    if ((segmentHex !== undefined && spentHex.has(segmentHex)) || (bearerHex !== undefined && spentHex.has(bearerHex))) {
      return { ok: false, reason: 'a revoked secret (rotated, or its share stopped)' };
    }
    const named = split && split.segment !== '' ? byName.get(split.segment) : undefined;
    const open = primaryOpen();
    if (named && named.access === 'open' && named !== open) return { ok: true, route: named, path: split?.rest ?? '/', stripBearer: false, knowsSecret: false, via: 'open' };
    if (open) return { ok: true, route: open, path: target, stripBearer: false, knowsSecret: false, via: 'open' };
    return { ok: false, reason: refusalReason(bearer.state === 'token' ? 'mismatch' : bearer.state) };
  };

  /**
   * Decides one request or upgrade. `pass` runs when it may go on (with its route, the origin
   * path, whether Authorization carries a secret, and whether the request carries one at all);
   * `refuse` sends the status after the delay.
   */
  const gate = (
    req: IncomingMessage,
    pass: (route: Route, path: string, stripBearer: boolean, knowsSecret: boolean, link: Link | undefined, selfCheck?: boolean) => void,
    refuse: (status: 401 | 429, body?: string) => void,
    onGone: (cb: () => void) => void,
  ): void => {
    // The credential first, always, before any throttling: a hash and a lookup cost next to
    // nothing, and everyone behind cloudflared shares one client key unless CF-Connecting-IP
    // differs, so throttling before checking would let one guesser lock the owner out. Only
    // failures are ever delayed or refused with 429.
    const d = resolve(req.url ?? '/', req.headers);
    if (d.ok) {
      // The tunnel's own reachability check is not traffic: not counted, no idle reset, not recorded.
      if (selfCheck(req.headers)) {
        pass(d.route, d.path, d.stripBearer, d.knowsSecret, d.link, true);
        return;
      }
      stats.passed++;
      d.route.passed++;
      d.route.lastRequestAt = Date.now();
      if (d.via !== 'open') log('debug', `access gate: ${req.method ?? 'GET'} ${d.path} passed (${d.via}, share ${d.route.id})`);
      pass(d.route, d.path, d.stripBearer, d.knowsSecret, d.link);
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
    log('debug', `access gate: refused ${req.method ?? 'GET'} from ${key}: ${d.reason}`);
    if (delay === FAILURE_DELAY_STEP_MS) log('warn', `access gate: ${key} failed more than ${tracker.maxPerMinute} times in a minute; its 401s are now delayed`);
    rejectEmitter.fire({ ip: key, reason: d.reason });
    if (delay === 0) {
      refuse(401, d.body);
      return;
    }
    if (delayTimers.size >= maxPendingDelays) {
      refuse(429);
      return;
    }
    const timer = setTimeout(() => {
      delayTimers.delete(timer);
      refuse(401, d.body);
    }, delay);
    delayTimers.add(timer);
    onGone(() => {
      clearTimeout(timer);
      delayTimers.delete(timer);
    });
  };

  const notAnswering = (route: Route, err: unknown): string => `The local server at ${route.url} is not answering: ${errorCode(err)}. Start it, or check the port.`;
  const originFailed = (route: Route, err: unknown): string => {
    route.errors++;
    const message = notAnswering(route, err);
    log('warn', `access gate: ${message}`);
    if (!route.failing) {
      route.failing = true;
      healthEmitter.fire({ routeId: route.id, ok: false, message });
    }
    return message;
  };

  const tapped = (req: IncomingMessage, res: ServerResponse, route: Route, link: Link | undefined): void => {
    if (!options.onPass) return;
    try {
      const socket = req.socket;
      options.onPass(req, res, { shareId: route.id, link: link ? `link "${link.label}"` : route.access === 'open' ? 'open' : 'share secret', fromTunnel: () => peers.get(socket) ?? null });
    } catch {
      // the recorder never breaks an exchange
    }
  };

  const handleRequest = (req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): void => {
    const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] ?? '0') !== '0';
    gate(
      req,
      (route, path, stripBearer, knowsSecret, link, selfCheck) => {
        if (!selfCheck) tapped(req, res, route, link);
        if (route.guard) guarded(req, res, route, route.guard, path, stripBearer, knowsSecret, expectsContinue, link);
        else if (route.handler) handOver(req, res, route, route.handler, path, stripBearer, knowsSecret, expectsContinue, link);
        // The fast path, unless the exchange must be read (recorder, OAuth document) or answered 100 first.
        else if (options.onPass || expectsContinue || isDiscoveryPath(path) || !fastProxy(req, res, route, path, stripBearer, knowsSecret, link)) {
          proxyRequest(req, res, route, path, stripBearer, knowsSecret, expectsContinue, link);
        }
      },
      (status, body) => {
        // An unread body is not worth reading: close the connection after the answer.
        const extra: OutgoingHttpHeaders = hasBody && !req.complete ? { connection: 'close' } : {};
        if (status === 401) sendJson(res, 401, body ?? UNAUTHORIZED_BODY, { 'www-authenticate': 'Bearer realm="MCP Tunnel"', ...extra });
        else sendJson(res, 429, TOO_MANY_BODY, { 'retry-after': '5', connection: 'close' });
      },
      (cb) => res.once('close', cb),
    );
  };

  /** A route with a tool policy: the request judged whole first, then proxied with its answer filtered. */
  const guarded = (req: IncomingMessage, res: ServerResponse, route: Route, guard: ToolGuard, path: string, stripBearer: boolean, knowsSecret: boolean, expectsContinue: boolean, link: Link | undefined): void => {
    const note = (line: string): void => log('info', `access gate: share ${route.id} ${line}`);
    readJudged(
      req,
      res,
      guard,
      expectsContinue,
      (verdict) => proxyRequest(req, res, route, path, stripBearer, knowsSecret, verdict ? false : expectsContinue, link, { guard, note, ...(verdict ? { body: verdict.body, answers: verdict.answers } : {}) }),
      note,
    );
  };

  /** An in-process origin: the same request an origin would get (path, headers), and the client's response. */
  const handOver = (req: IncomingMessage, res: ServerResponse, route: Route, handler: GateHandler, path: string, stripBearer: boolean, knowsSecret: boolean, expectsContinue: boolean, link: Link | undefined): void => {
    req.headers = originHeaders(req, route, stripBearer, knowsSecret) as IncomingHttpHeaders;
    req.url = path;
    const untrack = track(route, () => res.destroy(), link);
    res.once('close', () => {
      untrack();
      if (res.statusCode >= 500) route.errors++;
    });
    if (expectsContinue) res.writeContinue();
    try {
      handler(req, res);
      originAnswered(route);
    } catch (err) {
      const message = originFailed(route, err);
      sendJson(res, 502, JSON.stringify({ error: message }), { connection: 'close' });
    }
  };

  const proxyRequest = (
    req: IncomingMessage,
    res: ServerResponse,
    route: Route,
    path: string,
    stripBearer: boolean,
    knowsSecret: boolean,
    expectsContinue: boolean,
    link: Link | undefined,
    policy?: { guard: ToolGuard; note: (line: string) => void; body?: Buffer; answers?: readonly unknown[] },
  ): void => {
    const headers = originHeaders(req, route, stripBearer, knowsSecret);
    // An OAuth discovery document is read and rewritten (uncompressed, please).
    const discovery = isDiscoveryPath(path) && req.method !== 'HEAD';
    if (discovery) headers['accept-encoding'] = 'identity';
    if (policy) {
      // Its answer is read: uncompressed, please.
      headers['accept-encoding'] = 'identity';
      if (policy.body) {
        delete headers['transfer-encoding'];
        delete headers['content-encoding'];
        headers['content-length'] = policy.body.length;
      }
    } else if (req.headers['transfer-encoding'] !== undefined && req.headers['content-length'] === undefined) {
      // Keep a chunked body chunked even for methods Node would not chunk by default (GET, DELETE).
      headers['transfer-encoding'] = 'chunked';
    }
    let upstream: ClientRequest;
    try {
      upstream = httpRequest({ host: route.host, port: route.port, method: req.method, path, headers, agent });
    } catch (err) {
      // e.g. a header value Node refuses to send
      sendJson(res, 400, JSON.stringify({ error: `Bad request: ${errorCode(err)}` }), { connection: 'close' });
      return;
    }
    const untrack = track(
      route,
      () => {
        upstream.destroy();
        res.destroy();
      },
      link,
    );
    upstream.on('socket', (s: Socket) => s.setNoDelay(true));
    upstream.on('response', (ures: IncomingMessage) => {
      const out = endToEnd(ures.headers);
      if ((ures.statusCode ?? 502) >= 500) route.errors++;
      originAnswered(route);
      // What the origin says about itself names the public URL (OAuth: RFC 9728, RFC 8414).
      const mapping = discovery || out['www-authenticate'] !== undefined || out['location'] !== undefined ? publicMapping(req, route, path) : undefined;
      if (mapping) rewriteSelfReferences(out, mapping);
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
      if (mapping && discovery && ures.statusCode === 200) {
        relayDocument(ures, res, route, out, mapping, cut);
        return;
      }
      if (policy) {
        relayFiltered(ures, res, policy.guard, policy.answers ?? [], out, cut, policy.note);
        return;
      }
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
    });
    upstream.on('error', (err) => {
      untrack();
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (res.destroyed) return;
      const message = originFailed(route, err);
      req.unpipe(upstream);
      sendJson(res, 502, JSON.stringify({ error: message }), { connection: 'close' });
    });
    // The client left before the response finished: abort the origin request too.
    res.on('close', () => {
      untrack();
      if (!res.writableFinished) upstream.destroy();
    });
    if (expectsContinue) res.writeContinue();
    if (policy?.body) upstream.end(policy.body);
    else req.pipe(upstream);
  };

  /**
   * The fast path (see originLink.ts): the request head written by the gate onto the client
   * connection's own origin connection, the body streamed, the answer read by responseReader.ts
   * and relayed with the same header rules as `proxyRequest`. False when it does not apply (a head
   * it will not write: the slow path answers it, e.g. with 400; or the client connection still has
   * an exchange under way with another origin).
   */
  const fastProxy = (req: IncomingMessage, res: ServerResponse, route: Route, path: string, stripBearer: boolean, knowsSecret: boolean, link: Link | undefined): boolean => {
    const socket = req.socket;
    let ol = originLinks.get(socket);
    if (ol && (ol.host !== route.host || ol.port !== route.port)) {
      if (!ol.idle) return false;
      ol.destroy();
      ol = undefined;
    }
    if (BAD_TARGET.test(path)) return false;
    const headers = originHeaders(req, route, stripBearer, knowsSecret);
    const method = req.method ?? 'GET';
    let body: 'none' | 'length' | 'chunked' = 'none';
    if (req.headers['transfer-encoding'] !== undefined) {
      // Node de-chunked it (and refused it with a Content-Length): chunked again toward the origin.
      delete headers['content-length'];
      headers['transfer-encoding'] = 'chunked';
      body = 'chunked';
    } else if (headers['content-length'] !== undefined && headers['content-length'] !== '0') {
      body = 'length';
    }
    let head = `${method} ${path} HTTP/1.1\r\n`;
    for (const name in headers) {
      const v = headers[name];
      if (v === undefined) continue;
      for (const one of Array.isArray(v) ? v : [v]) {
        const text = String(one);
        if (BAD_FIELD_VALUE.test(text)) return false;
        head += `${name}: ${text}\r\n`;
      }
    }
    head += '\r\n';
    if (!ol) {
      if (!originLinks.has(socket)) socket.once('close', () => {
        originLinks.get(socket)?.destroy();
        originLinks.delete(socket);
      });
      ol = new OriginLink(route.host, route.port);
      originLinks.set(socket, ol);
    }
    const linkNow = ol;
    const untrack = track(
      route,
      () => {
        abort();
        res.destroy();
      },
      link,
    );
    const onDrain = (): void => linkNow.resume();
    const abort = linkNow.send({
      method,
      head,
      body,
      req,
      onHead: (h: ResponseHead, framing: Framing) => {
        const out = relayedHeaders(h, framing, req, route, path);
        try {
          res.writeHead(h.status, h.reason, out);
        } catch {
          throw new ResponseHeadError('a header holds a character HTTP does not allow');
        }
        if (h.status >= 500) route.errors++;
        originAnswered(route);
      },
      onData: (d) => {
        if (res.write(d)) return true;
        res.once('drain', onDrain);
        return false;
      },
      onWait: () => {
        if (!res.writableEnded && !res.destroyed) res.flushHeaders();
      },
      onEnd: () => {
        untrack();
        res.end();
      },
      onError: (err, answered) => {
        untrack();
        if (answered || res.headersSent) {
          res.destroy();
          return;
        }
        if (res.destroyed) return;
        const message = err instanceof ResponseHeadError ? unreadable(route, err) : originFailed(route, err);
        sendJson(res, 502, JSON.stringify({ error: message }), { connection: 'close' });
      },
    });
    // The client left before the response finished: abort the origin exchange too.
    res.once('close', () => {
      untrack();
      if (!res.writableFinished) abort();
    });
    return true;
  };

  /** A response head's fields as the client gets them: hop-by-hop dropped, framing the gate's, self-references public. */
  const relayedHeaders = (h: ResponseHead, framing: Framing, req: IncomingMessage, route: Route, path: string): string[] => {
    const { raw, lower: names } = h;
    // Every Connection field's tokens (a response may send more than one).
    let connection: string[] | undefined;
    for (let i = 0; i < names.length; i++) if (names[i] === 'connection') (connection ??= []).push(raw[2 * i + 1] ?? '');
    const named = connection ? connectionTokens({ connection: connection.join(',') }) : undefined;
    const out: string[] = [];
    let length: string | undefined;
    let mapping: PublicMapping | undefined | null = null;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i] ?? '';
      const lower = names[i / 2] ?? '';
      let value = raw[i + 1] ?? '';
      if (lower === 'content-length') {
        length ??= value.split(',')[0]?.trim();
        continue;
      }
      if (HOP_BY_HOP.has(lower) || named?.has(lower)) continue;
      if (lower === 'location' || lower === 'www-authenticate') {
        if (mapping === null) mapping = publicMapping(req, route, path);
        if (mapping) value = lower === 'location' ? (mapUrl(value, mapping) ?? value) : rewriteChallenge(value, mapping);
      }
      out.push(name, value);
    }
    // One Content-Length, when the body has one (or a HEAD or 304 answer names it).
    if (framing.kind === 'length') out.push('Content-Length', String(framing.length));
    else if (framing.kind === 'none' && length !== undefined && h.status !== 204 && h.status >= 200) out.push('Content-Length', length);
    return out;
  };

  const unreadable = (route: Route, err: Error): string => {
    route.errors++;
    const message = `The local server at ${route.url} sent an answer the tunnel cannot pass on: ${err.message}. Check that it is an HTTP/1.1 server (not a TLS or other port).`;
    log('warn', `access gate: ${message}`);
    return message;
  };

  /** How URLs naming this route's origin read from the public side of this request; undefined without a Host. */
  const publicMapping = (req: IncomingMessage, route: Route, path: string): PublicMapping | undefined => {
    const host = req.headers.host?.toLowerCase();
    const target = originForm(req.url ?? '/');
    if (!host || target === undefined || !/^[a-z0-9.:[\]-]+$/.test(host)) return undefined;
    return { originBases: originBasesOf(route.host, route.port, route.hostHeader), publicOrigin: `https://${host}`, prefix: publicPrefixOf(target, path) };
  };

  const rewriteSelfReferences = (out: OutgoingHttpHeaders, m: PublicMapping): void => {
    const challenge = out['www-authenticate'];
    if (typeof challenge === 'string') out['www-authenticate'] = rewriteChallenge(challenge, m);
    else if (Array.isArray(challenge)) out['www-authenticate'] = challenge.map((c) => rewriteChallenge(c, m));
    const location = out['location'];
    if (typeof location === 'string') out['location'] = mapUrl(location, m) ?? location;
  };

  /**
   * A discovery document, read whole (1 MiB at most), with the URLs naming the origin in public
   * form. One naming another local-only server (an authorization server on another port) cannot be
   * mapped: the share says so, once per server.
   */
  const relayDocument = (ures: IncomingMessage, res: ServerResponse, route: Route, out: OutgoingHttpHeaders, m: PublicMapping, cut: () => void): void => {
    const encoded = ures.headers['content-encoding'] !== undefined && ures.headers['content-encoding'] !== 'identity';
    readCapped(ures, MAX_DISCOVERY_BYTES).then(
      (body) => {
        if (res.destroyed) return;
        if (body === undefined) {
          sendJson(res, 502, JSON.stringify({ error: `The OAuth discovery document of ${route.url} is over ${MAX_DISCOVERY_BYTES / 1024} KiB; the tunnel reads it to put its public URL in, and refuses one that large.` }), { connection: 'close' });
          return;
        }
        let sent = body;
        if (!encoded) {
          try {
            const r = rewriteDocument(JSON.parse(body.toString('utf8')) as unknown, m);
            if (r.changed) sent = Buffer.from(JSON.stringify(r.doc), 'utf8');
            for (const base of r.unmapped) warnRoute(route, `its OAuth metadata names ${base}, which the tunnel does not carry: clients on the internet cannot reach it. Serve the authorization server from the shared server itself (${route.url}), or give it a public URL.`);
          } catch {
            // not JSON: passed on as it is
          }
        }
        delete out['transfer-encoding'];
        out['content-length'] = sent.length;
        res.writeHead(200, ures.statusMessage, out);
        res.end(sent);
      },
      () => cut(),
    );
  };

  const warnRoute = (route: Route, message: string): void => {
    if (route.warnings.has(message)) return;
    if (route.warnings.size >= 8) return;
    route.warnings.add(message);
    log('warn', `access gate: share ${route.id}: ${message}`);
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
      (route, path, stripBearer, knowsSecret, link) =>
        route.guard
          ? rawResponse(socket, 403, 'Forbidden', JSON.stringify({ error: 'This share has a tool policy: its traffic must be read, so it takes no WebSocket upgrades.' }))
          : route.handler
          ? rawResponse(socket, 400, 'Bad Request', JSON.stringify({ error: 'This share does not take WebSocket upgrades.' }))
          : proxyUpgrade(req, socket, head, route, path, stripBearer, knowsSecret, link),
      (status, body) => {
        if (status === 401) rawResponse(socket, 401, 'Unauthorized', body ?? UNAUTHORIZED_BODY, ['WWW-Authenticate: Bearer realm="MCP Tunnel"']);
        else rawResponse(socket, 429, 'Too Many Requests', TOO_MANY_BODY, ['Retry-After: 5']);
      },
      (cb) => socket.once('close', cb),
    );
  };

  const proxyUpgrade = (req: IncomingMessage, socket: Socket, head: Buffer, route: Route, path: string, stripBearer: boolean, knowsSecret: boolean, link: Link | undefined): void => {
    const headers = originHeaders(req, route, stripBearer, knowsSecret);
    // An upgrade is the one case where Connection and Upgrade must reach the origin.
    headers['connection'] = 'Upgrade';
    const upgrade = req.headers['upgrade'];
    if (upgrade !== undefined) headers['upgrade'] = upgrade;
    let upstream: ClientRequest;
    try {
      upstream = httpRequest({ host: route.host, port: route.port, method: req.method, path, headers, agent: false });
    } catch (err) {
      rawResponse(socket, 400, 'Bad Request', JSON.stringify({ error: `Bad request: ${errorCode(err)}` }));
      return;
    }
    let originSocket: Socket | undefined;
    const untrack = track(
      route,
      () => {
        upstream.destroy();
        originSocket?.destroy();
        socket.destroy();
      },
      link,
    );
    socket.once('close', () => {
      untrack();
      // Let what the client sent before leaving reach the origin, then close.
      if (originSocket) originSocket.destroySoon();
      else upstream.destroy();
    });
    upstream.on('upgrade', (ures: IncomingMessage, usock: Socket, uhead: Buffer) => {
      originSocket = usock;
      originAnswered(route);
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
      rawResponse(socket, 502, 'Bad Gateway', JSON.stringify({ error: originFailed(route, err) }));
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
    const check = options.peerCheck;
    if (check && s.remotePort !== undefined) {
      // Once per connection (cloudflared keeps its connections alive): a few /proc reads.
      const lookup = check(s.remotePort, port).then(
        (owner) => {
          peers.set(s, owner ?? null);
          return owner ?? null;
        },
        () => {
          peers.set(s, null);
          return null;
        },
      );
      peers.set(s, lookup);
    }
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
  log('info', `access gate: ${url} -> ${first0.url} (${first0.access}, origin sees Host ${hostHeaderMode === 'origin' ? first0.hostHeader : 'as received'})`);

  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      for (const t of delayTimers) clearTimeout(t);
      delayTimers.clear();
      server.close(() => resolve());
      for (const x of [...exchanges]) x.abort();
      exchanges.clear();
      for (const l of originLinks.values()) l.destroy();
      originLinks.clear();
      server.closeAllConnections();
      for (const s of clientSockets) s.destroy();
      agent.destroy();
      rejectEmitter.dispose();
      healthEmitter.dispose();
      log('info', 'access gate: closed');
    });
    return closing;
  };

  /** The single-share API acts on the first route (or, once it is removed, the oldest left). */
  const primary = (): Route => {
    const r = firstRoute();
    if (!r) throw new Error('The access gate has no route.');
    return r;
  };

  return {
    url,
    port,
    get mode() {
      return primary().access;
    },
    secretPath: () => `/${primary().secret}`,
    rotateSecret: () => {
      const r = primary();
      setSecret(r, randomBytes(32).toString('base64url'));
      log('info', 'access gate: share secret rotated; the old one no longer works');
      revoke(r, 'secret rotated');
      return r.secret;
    },
    setMode: (next) => {
      const r = primary();
      if (next === r.access) return;
      r.access = next;
      log('info', `access gate: mode ${next}`);
      if (next === 'secret') revoke(r, 'the gate closed');
    },
    addRoute: (o) => {
      const r = addRoute(o);
      log('info', `access gate: share ${r.id} -> ${r.url} (${r.access})`);
    },
    removeRoute: (id) => {
      const r = routes.get(id);
      if (!r) return false;
      routes.delete(id);
      bySecret.delete(r.digestHex);
      for (const link of [...r.links.values()]) endLink(r, link, 'revoked');
      byName.delete(r.name);
      retire(r.secret);
      revoke(r, `share ${id} stopped`);
      log('info', `access gate: share ${id} removed`);
      return true;
    },
    rotateRoute: (id) => {
      const r = routes.get(id);
      if (!r) return undefined;
      setSecret(r, randomBytes(32).toString('base64url'));
      log('info', `access gate: share ${id}'s secret rotated; the old one no longer works`);
      revoke(r, 'secret rotated');
      return r.secret;
    },
    setRouteOrigin: (id, origin, o = {}) => {
      const r = routes.get(id);
      if (!r) return false;
      checkOrigin(origin);
      Object.assign(r, originFields(origin), { failing: false });
      if (o.originAuthorization !== undefined) r.originAuthorization = o.originAuthorization;
      else delete r.originAuthorization;
      if (o.handler) r.handler = o.handler;
      else delete r.handler;
      revoke(r, `share ${id} points elsewhere`);
      r.warnings.clear();
      log('info', `access gate: share ${id} -> ${r.url}`);
      return true;
    },
    setRoutePolicy: (id, policy) => {
      const r = routes.get(id);
      if (!r) return false;
      if (policy) {
        // The guard keeps what the server said of its tools (read-only needs it).
        if (r.guard) r.guard.policy = policy;
        else r.guard = new ToolGuard(policy);
      } else {
        delete r.guard;
      }
      revoke(r, `share ${id}'s tool policy changed`);
      log('info', `access gate: share ${id} ${policy ? 'has a new tool policy' : 'has no tool policy'}`);
      return true;
    },
    addLink: (routeId, o) => {
      const r = routes.get(routeId);
      if (!r || r.access !== 'secret') return undefined;
      const secret = o.secret ?? randomBytes(32).toString('base64url');
      checkSecret(secret);
      const digestHex = digest(secret).toString('hex');
      if (bySecret.has(digestHex) || byLink.has(digestHex)) throw new RangeError('Another share or link already uses this secret.');
      const link: Link = { id: o.id ?? `ln-${randomBytes(4).toString('hex')}`, label: o.label.trim() || 'link', secret, digestHex, ...(o.expiresAt !== undefined ? { expiresAt: o.expiresAt } : {}) };
      // Checked at each request too (a sleeping machine's timers run late); the timer cuts streams.
      // (Node fires a timer beyond 2^31 ms at once: such a far expiry is left to the request check.)
      const delay = link.expiresAt !== undefined ? Math.max(0, link.expiresAt - Date.now()) : undefined;
      if (delay !== undefined && delay < 2 ** 31 - 1) {
        link.timer = setTimeout(() => r.links.get(link.id) === link && endLink(r, link, 'expired'), delay);
        link.timer.unref();
      }
      r.links.set(link.id, link);
      byLink.set(digestHex, { route: r, link });
      knownSecrets = undefined;
      log('info', `access gate: link "${link.label}" for share ${r.id}${link.expiresAt !== undefined ? `, until ${new Date(link.expiresAt).toISOString()}` : ''}`);
      return { id: link.id, label: link.label, ...(link.expiresAt !== undefined ? { expiresAt: link.expiresAt } : {}), secret };
    },
    removeLink: (routeId, linkId) => {
      const r = routes.get(routeId);
      const link = r?.links.get(linkId);
      if (!r || !link) return false;
      endLink(r, link, 'revoked');
      return true;
    },
    links: (routeId) => [...(routes.get(routeId)?.links.values() ?? [])].map((l) => ({ id: l.id, label: l.label, ...(l.expiresAt !== undefined ? { expiresAt: l.expiresAt } : {}) })),
    routeSecretPath: (id) => {
      const r = routes.get(id);
      return r && r.access === 'secret' ? `/${r.secret}` : undefined;
    },
    routeOpenPrefix: (id) => {
      const r = routes.get(id);
      if (!r || r.access !== 'open') return undefined;
      return r === primaryOpen() ? '' : `/${r.name}`;
    },
    routeStats: (id) => {
      const r = routes.get(id);
      return r ? { passed: r.passed, errors: r.errors, ...(r.lastRequestAt !== undefined ? { lastRequestAt: r.lastRequestAt } : {}), ...(r.warnings.size > 0 ? { warning: [...r.warnings][0] } : {}) } : undefined;
    },
    routeIds: () => [...routes.keys()],
    onDidChangeOriginHealth: healthEmitter.event,
    get stats() {
      return { passed: stats.passed, rejected: stats.rejected };
    },
    onDidReject: rejectEmitter.event,
    close,
    dispose: () => void close(),
  };
}

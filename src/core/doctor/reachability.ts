/**
 * The reachability doctor: does a client on the internet get an answer from a share's public MCP
 * URL? "Active" only means cloudflared registered with Cloudflare's edge; the name may not resolve
 * yet, the edge may refuse (1033, 1015), the local server may be down or reject the tunnelled Host,
 * and quick tunnels hold back GET SSE (cloudflared#1449). This checks from this machine through
 * the public URL, as a remote client would: the system resolver (with a wait for a brand-new
 * name), then one MCP `initialize`, then the notification stream of a stateful server.
 *
 * Nothing here logs or returns the URL's path or the request headers: they carry the share secret.
 */
import { lookup as systemLookup } from 'node:dns/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { performance } from 'node:perf_hooks';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleepFor } from 'node:timers/promises';

/**
 * Where a check stands or ended. `checking` and `waiting-dns` are progress only (never returned by
 * checkReachability); every other state is an outcome with a message and, unless `ok`, a fix.
 */
export type ReachabilityState =
  /** Progress: the check runs. */
  | 'checking'
  /** Progress: the name does not resolve yet; retrying with backoff. */
  | 'waiting-dns'
  /** A remote client gets an MCP answer. */
  | 'ok'
  /** The name did not resolve here before the deadline (and whether public DNS knows it). */
  | 'dns'
  /** 530 / error 1033: the edge has no connector for this name. */
  | 'not-registered'
  /** 429 / error 1015 from Cloudflare (or the gate slowing down wrong secrets). */
  | 'rate-limited'
  /** Another Cloudflare error (530, 52x) with its error code. */
  | 'edge-error'
  /** 421, or 400/403 about the Host: the local server rejects the tunnelled Host. */
  | 'host-rejected'
  /** 406: the server refused the request's Accept header. */
  | 'accept-refused'
  /** 502 / 504: the tunnel works, nothing answers on the local port. */
  | 'nothing-listening'
  /** 401 from the gate: the secret in the URL is not (or no longer) accepted. */
  | 'unauthorized'
  /** An answer that is not JSON-RPC, or 404/405: the path is not the MCP endpoint. */
  | 'not-mcp'
  /** The request reached the local server, which failed (500, 503, a 403 not about the Host…). */
  | 'server-error'
  /** Requests work, but the GET notification stream is held back on the way (quick tunnels). */
  | 'sse-buffered'
  /** No HTTP answer at all: connect, TLS or timeout (the message says which). */
  | 'unreachable';

export interface ReachabilityResult {
  state: ReachabilityState;
  /** True only for `ok`. */
  ok: boolean;
  /** What happened, in one or two sentences; names the host at most, never the path. */
  message: string;
  /** What to do about it; null when there is nothing to do. */
  fix: string | null;
  /** HTTP status of the MCP request, or null when none came. */
  status: number | null;
  /** Request sent → response headers (ms), or null. */
  rtt_ms: number | null;
  /** Request sent → first complete SSE event of a streamed answer (ms), or null. */
  first_event_ms: number | null;
  /** When the check ended (ISO 8601). */
  checked_at: string;
  host: string;
}

export interface ReachabilityTarget {
  /** The public MCP URL, usually with the share secret in its path. Never logged. */
  mcpUrl: string;
  /** Extra request headers (e.g. `Authorization: Bearer <secret>`). Never logged. */
  headers?: Record<string, string>;
  /** An MCP endpoint (default): send `initialize`. False: any answer from the server will do. */
  isMcp?: boolean;
  signal?: AbortSignal;
}

/** Connect here instead of the URL's host (like curl's --connect-to); Host and TLS name stay the URL's. */
export interface ConnectTo {
  host: string;
  port: number;
  protocol: 'http' | 'https';
}

export interface ResolvedAddress {
  address: string;
  family: number;
}

export interface ProbeRequest {
  url: URL;
  method: 'POST' | 'GET' | 'DELETE';
  headers: Record<string, string>;
  body?: string;
  /** What the system resolver gave for the URL's host (connect there). */
  addresses: ResolvedAddress[];
  signal: AbortSignal;
}

export interface ProbeResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: AsyncIterable<Buffer>;
  /** Stops reading and closes the connection. */
  close(): void;
}

/** What public DNS (DNS over HTTPS) says about a name. */
export type DohAnswer = 'exists' | 'nxdomain' | 'unknown';

/** Everything the check touches, injectable; each defaults to the real thing. */
export interface ReachabilityDeps {
  /** The system resolver (default: node:dns lookup, all addresses). */
  lookup?: (hostname: string) => Promise<ResolvedAddress[]>;
  /** Public DNS (default: Cloudflare's DNS over HTTPS, 3 s). */
  doh?: (hostname: string, signal: AbortSignal) => Promise<DohAnswer>;
  /** Sends one HTTP request (default: node:http/https, to `connectTo` or the resolved address). */
  request?: (req: ProbeRequest) => Promise<ProbeResponse>;
  /** Connect there instead (the default `lookup` then resolves nothing, as curl --connect-to). */
  connectTo?: ConnectTo;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Wall clock (ms) for the DNS deadline and `checked_at`. */
  now?: () => number;
  /** How long to wait for a name to resolve (60 s). */
  dnsDeadlineMs?: number;
  /** Wait before DNS retry `attempt` (0-based): 1 s, 2 s, 4 s … at most 10 s. */
  backoffMs?: (attempt: number) => number;
  /** The MCP request and its answer, at most (15 s). */
  timeoutMs?: number;
  /** How long the GET notification stream may take to answer before it counts as held back (3 s). */
  sseWaitMs?: number;
}

/** The protocol revision the check speaks (most servers and clients still do). */
export const DOCTOR_PROTOCOL_VERSION = '2025-11-25';
export const DEFAULT_DNS_DEADLINE_MS = 60_000;
export const DEFAULT_TIMEOUT_MS = 15_000;
export const DEFAULT_SSE_WAIT_MS = 3_000;
/** What the check reads of an answer at most. */
const MAX_BODY_BYTES = 64 * 1024;
const DOH_TIMEOUT_MS = 3_000;
const DELETE_TIMEOUT_MS = 3_000;
/** Resolver errors that mean "no such name (yet)": worth waiting for. */
const NAME_MISSING = new Set(['ENOTFOUND', 'ENODATA', 'EAI_NONAME', 'EAI_NODATA', 'EAI_AGAIN', 'NXDOMAIN', 'ESERVFAIL']);
const INITIALIZE_BODY = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: DOCTOR_PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'mcp-tunnel-doctor', version: '1.0.0' } },
});

type Deps = Required<Omit<ReachabilityDeps, 'connectTo'>>;
type Outcome = Pick<ReachabilityResult, 'state' | 'message' | 'fix'> & Partial<Pick<ReachabilityResult, 'status' | 'rtt_ms' | 'first_event_ms'>>;

/**
 * Checks `target` from here as a remote client would; resolves with the outcome (never rejects
 * for a network failure: that is an outcome). Rejects only when `target.signal` aborts, with its
 * reason. `onProgress` hears `checking` once, then `waiting-dns` before each DNS retry.
 */
export async function checkReachability(
  target: ReachabilityTarget,
  deps: ReachabilityDeps = {},
  onProgress?: (progress: ReachabilityResult) => void,
): Promise<ReachabilityResult> {
  const url = parseTarget(target.mcpUrl);
  const d = withDefaults(deps);
  const signal = target.signal ?? new AbortController().signal;
  signal.throwIfAborted();
  const scrub = scrubber(target);
  const finish = (o: Outcome): ReachabilityResult => ({
    state: o.state,
    ok: o.state === 'ok',
    message: scrub(o.message),
    fix: o.fix === null ? null : scrub(o.fix),
    status: o.status ?? null,
    rtt_ms: o.rtt_ms ?? null,
    first_event_ms: o.first_event_ms ?? null,
    checked_at: new Date(d.now()).toISOString(),
    host: url.hostname,
  });
  onProgress?.(finish({ state: 'checking', message: `Checking ${showUrl(url)} from the internet side…`, fix: null }));
  const resolved = await resolveName(url.hostname, d, signal, (o) => onProgress?.(finish(o)));
  if ('failed' in resolved) return finish(resolved.failed);
  return finish(await probe(url, target, resolved.addresses, d, signal));
}

/** `https://host/…`: what a message may show of a URL whose path is secret. */
export function showUrl(url: URL | string): string {
  const u = typeof url === 'string' ? new URL(url) : url;
  return `${u.protocol}//${u.host}/…`;
}

/** Parses `--connect-to` / MCP_TUNNEL_DOCTOR_CONNECT_TO: `HOST=ADDR:PORT` (https) or `HOST=http://ADDR:PORT`; HOST may be `*`. */
export function parseConnectTo(spec: string): { host: string; to: ConnectTo } {
  const m = /^([^=\s]+)=(?:(https?):\/\/)?(\[[0-9a-fA-F:.]+\]|[^:/[\]\s]+):(\d{1,5})\/?$/.exec(spec.trim());
  const port = m ? Number(m[4]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) {
    throw new Error(`"${spec}" is not HOST=ADDR:PORT (e.g. x.trycloudflare.com=127.0.0.1:8443, or *=http://127.0.0.1:8080 for plain HTTP)`);
  }
  return { host: (m[1] ?? '').toLowerCase(), to: { host: (m[3] ?? '').replace(/^\[|\]$/g, ''), port, protocol: m[2] === 'http' ? 'http' : 'https' } };
}

/** Where to connect for `mcpUrl` under a parsed --connect-to rule; undefined when the rule names another host. */
export function connectToFor(rule: { host: string; to: ConnectTo } | undefined, mcpUrl: string): ConnectTo | undefined {
  if (!rule) return undefined;
  let host: string;
  try {
    host = new URL(mcpUrl).hostname.toLowerCase();
  } catch {
    return undefined;
  }
  return rule.host === '*' || rule.host === host ? rule.to : undefined;
}

function parseTarget(mcpUrl: string): URL {
  let url: URL;
  try {
    url = new URL(mcpUrl);
  } catch {
    // Not the input in the message: it may hold a secret.
    throw new Error('The MCP URL to check is not a URL (https://<host>/<secret>/mcp).');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error(`The MCP URL to check must be https:// (got ${url.protocol}//…).`);
  return url;
}

function withDefaults(deps: ReachabilityDeps): Deps {
  const to = deps.connectTo;
  return {
    lookup: deps.lookup ?? (to ? () => Promise.resolve([{ address: to.host, family: isIP(to.host) === 6 ? 6 : 4 }]) : (h) => systemLookup(h, { all: true })),
    doh: deps.doh ?? cloudflareDoh,
    request: deps.request ?? nodeRequest(to),
    sleep: deps.sleep ?? ((ms, signal) => sleepFor(ms, undefined, { signal })),
    now: deps.now ?? Date.now,
    dnsDeadlineMs: deps.dnsDeadlineMs ?? DEFAULT_DNS_DEADLINE_MS,
    backoffMs: deps.backoffMs ?? ((attempt) => Math.min(1000 * 2 ** attempt, 10_000)),
    timeoutMs: deps.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    sseWaitMs: deps.sseWaitMs ?? DEFAULT_SSE_WAIT_MS,
  };
}

/** Replaces the URL's path segments and the header values in text from outside (errors, bodies) with `…`. */
function scrubber(target: ReachabilityTarget): (text: string) => string {
  let secrets: string[] = [];
  try {
    secrets = new URL(target.mcpUrl).pathname.split('/').filter((s) => s.length >= 8);
  } catch {
    // checkReachability refuses it before anything is said
  }
  for (const v of Object.values(target.headers ?? {})) secrets.push(v, ...v.split(/\s+/).filter((s) => s.length >= 8));
  secrets = secrets.filter(Boolean).sort((a, b) => b.length - a.length);
  return (text) => secrets.reduce((t, s) => t.split(s).join('…'), text);
}

// ------------------------------------------------------------------------------------------------
// DNS: the system resolver, with a wait for a brand-new name; public DNS to tell why it fails
// ------------------------------------------------------------------------------------------------

async function resolveName(
  host: string,
  d: Deps,
  signal: AbortSignal,
  progress: (o: Outcome) => void,
): Promise<{ addresses: ResolvedAddress[] } | { failed: Outcome }> {
  const family = isIP(host);
  if (family) return { addresses: [{ address: host, family }] };
  const started = d.now();
  for (let attempt = 0; ; attempt++) {
    let code: string;
    try {
      const addresses = await d.lookup(host);
      if (addresses.length > 0) return { addresses };
      code = 'ENODATA';
    } catch (err) {
      signal.throwIfAborted();
      code = errorCode(err);
      if (!NAME_MISSING.has(code)) return { failed: { state: 'dns', message: `${host} could not be resolved on this machine (${code}).`, fix: "Check this machine's DNS settings and network, then check again." } };
    }
    const publicDns = await d.doh(host, signal);
    signal.throwIfAborted();
    const left = d.dnsDeadlineMs - (d.now() - started);
    if (left <= 0) return { failed: dnsFailure(host, publicDns, Math.round((d.now() - started) / 1000)) };
    progress(waitingForDns(host, publicDns));
    await d.sleep(Math.min(d.backoffMs(attempt), left), signal);
  }
}

/** Progress while the name does not resolve yet. */
function waitingForDns(host: string, publicDns: DohAnswer): Outcome {
  const why = {
    exists: 'public DNS already knows it, your resolver has not caught up yet',
    nxdomain: 'public DNS does not know it yet either; a new quick-tunnel name takes seconds to tens of seconds',
    unknown: 'public DNS could not be asked',
  }[publicDns];
  return { state: 'waiting-dns', message: `Waiting for DNS: ${host} does not resolve here yet (${why})…`, fix: null };
}

/** The final word when the name never resolved before the deadline. */
function dnsFailure(host: string, publicDns: DohAnswer, seconds: number): Outcome {
  switch (publicDns) {
    case 'exists':
      return {
        state: 'dns',
        message: `${host} does not resolve on this machine after ${seconds} s, but public DNS already knows it: your resolver has not caught up yet (negative caching can hold a miss for up to 30 min).`,
        fix: 'Flush the DNS cache (Linux: resolvectl flush-caches; macOS: sudo dscacheutil -flushcache; sudo killall -HUP mDNSResponder; Windows: ipconfig /flushdns) or wait; clients using another resolver may reach it already.',
      };
    case 'nxdomain':
      return {
        state: 'dns',
        message: `${host} does not exist on public DNS (yet) after ${seconds} s: no client can reach it.`,
        fix: 'Check again in a minute; if the name still does not exist, restart the tunnel for a new URL (with --protocol http2, or mcpTunnel.protocol "http2", if UDP 7844 is blocked here).',
      };
    case 'unknown':
      return {
        state: 'dns',
        message: `${host} does not resolve on this machine after ${seconds} s, and public DNS could not be asked (offline, or DNS over HTTPS blocked).`,
        fix: "Check this machine's network and DNS, then check again.",
      };
  }
}

/** Cloudflare's DNS over HTTPS: does public DNS know the name? Never throws but for an abort. */
async function cloudflareDoh(hostname: string, signal: AbortSignal): Promise<DohAnswer> {
  try {
    const res = await fetch(`https://cloudflare-dns.com/dns-query?name=${encodeURIComponent(hostname)}&type=A`, {
      headers: { accept: 'application/dns-json' },
      signal: AbortSignal.any([signal, AbortSignal.timeout(DOH_TIMEOUT_MS)]),
    });
    if (!res.ok) return 'unknown';
    const answer = (await res.json()) as { Status?: unknown; Answer?: unknown };
    if (answer.Status === 3) return 'nxdomain';
    return answer.Status === 0 && Array.isArray(answer.Answer) && answer.Answer.length > 0 ? 'exists' : 'unknown';
  } catch {
    signal.throwIfAborted();
    return 'unknown';
  }
}

// ------------------------------------------------------------------------------------------------
// HTTP: one request, as a client on the internet sends it
// ------------------------------------------------------------------------------------------------

/** node:http(s) to `to` (Host and TLS name stay the URL's), or to the addresses the resolver gave. */
function nodeRequest(to: ConnectTo | undefined): (req: ProbeRequest) => Promise<ProbeResponse> {
  return (req) =>
    new Promise((resolve, reject) => {
      const secure = to ? to.protocol === 'https' : req.url.protocol === 'https:';
      const hostname = req.url.hostname.replace(/^\[|\]$/g, '');
      const options: https.RequestOptions = {
        method: req.method,
        host: to?.host ?? hostname,
        port: to?.port ?? (Number(req.url.port) || (secure ? 443 : 80)),
        path: `${req.url.pathname}${req.url.search}`,
        headers: { host: req.url.host, ...req.headers },
        agent: false,
        signal: req.signal,
        ...(secure && !isIP(hostname) ? { servername: hostname } : {}),
        ...(!to && req.addresses.length > 0 ? { lookup: pinnedLookup(req.addresses) } : {}),
      };
      const outgoing = (secure ? https : http).request(options, (res) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
        resolve({
          status: res.statusCode ?? 0,
          headers,
          body: res,
          close: () => {
            res.destroy();
            outgoing.destroy();
          },
        });
      });
      outgoing.on('error', reject);
      outgoing.end(req.body);
    });
}

/** A lookup that answers with what the system resolver said a moment ago (no second lookup). */
function pinnedLookup(addresses: ResolvedAddress[]): LookupFunction {
  return (_hostname, options, callback) => {
    const first = addresses[0] ?? { address: '0.0.0.0', family: 4 };
    if (options.all) callback(null, addresses);
    else callback(null, first.address, first.family);
  };
}

/** Why a request got no answer, as an error code (`ECONNREFUSED`, `CERT_HAS_EXPIRED`, `TIMEOUT`…). */
function errorCode(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: unknown }; name?: unknown };
  if (typeof e?.code === 'string') return e.code;
  if (typeof e?.cause?.code === 'string') return e.cause.code;
  return typeof e?.name === 'string' ? e.name : 'ERROR';
}

/** An abort signal that follows `parent` and also fires after `ms`; `timedOut()` tells which. */
function deadline(parent: AbortSignal, ms: number): { signal: AbortSignal; timedOut: () => boolean; done: () => void } {
  const ac = new AbortController();
  let fired = false;
  const onAbort = () => ac.abort(parent.reason);
  parent.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(() => {
    fired = true;
    ac.abort(new Error('timeout'));
  }, ms);
  return {
    signal: ac.signal,
    timedOut: () => fired,
    done: () => {
      clearTimeout(timer);
      parent.removeEventListener('abort', onAbort);
    },
  };
}

/** The MCP request (or a GET for a plain HTTP share), its answer classified, then the notification stream. */
async function probe(url: URL, target: ReachabilityTarget, addresses: ResolvedAddress[], d: Deps, signal: AbortSignal): Promise<Outcome> {
  const isMcp = target.isMcp ?? true;
  const headers: Record<string, string> = isMcp
    ? { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': DOCTOR_PROTOCOL_VERSION, ...target.headers }
    : { accept: '*/*', ...target.headers };
  const limit = deadline(signal, d.timeoutMs);
  const sent = performance.now();
  let res: ProbeResponse | undefined;
  try {
    res = await d.request({ url, method: isMcp ? 'POST' : 'GET', headers, ...(isMcp ? { body: INITIALIZE_BODY } : {}), addresses, signal: limit.signal });
    const rtt = Math.round(performance.now() - sent);
    const answer = await readAnswer(res, sent, isMcp);
    res.close(); // one answer (or its first event) is all the check needs
    const outcome = { status: res.status, rtt_ms: rtt, first_event_ms: answer.firstEventMs };
    const verdict = classify(res.status, res.headers, answer.text, isMcp, url);
    if (verdict !== 'answered') return { ...verdict, ...outcome };
    const signIn = res.status === 401 ? ' (the server asks clients to sign in with OAuth)' : '';
    const ok: Outcome = { state: 'ok', message: `Reachable from the internet · ${rtt} ms${signIn}`, fix: null, ...outcome };
    const sessionId = res.headers['mcp-session-id'];
    if (!isMcp || !sessionId) return ok;
    return { ...(await checkNotificationStream(url, target, sessionId, addresses, d, signal, rtt)), ...outcome };
  } catch (err) {
    signal.throwIfAborted();
    return noAnswer(url, err, limit.timedOut(), res?.status, d.timeoutMs);
  } finally {
    limit.done();
    res?.close();
  }
}

/** The answer's text (capped), and when its first SSE event came if it streams. */
async function readAnswer(res: ProbeResponse, sent: number, isMcp: boolean): Promise<{ text: string; firstEventMs: number | null }> {
  const streamed = /^text\/event-stream/i.test(res.headers['content-type'] ?? '');
  if (!streamed) return { text: isMcp || res.status >= 400 ? await readCappedText(res.body) : '', firstEventMs: null };
  const decoder = new StringDecoder('utf8');
  let buffered = '';
  for await (const chunk of res.body) {
    buffered += decoder.write(chunk);
    const data = firstEventData(buffered);
    if (data !== undefined) return { text: data, firstEventMs: Math.round(performance.now() - sent) };
    if (buffered.length > MAX_BODY_BYTES) break;
  }
  return { text: '', firstEventMs: null };
}

async function readCappedText(body: AsyncIterable<Buffer>): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= MAX_BODY_BYTES) break;
  }
  return Buffer.concat(chunks).subarray(0, MAX_BODY_BYTES).toString('utf8');
}

/** The `data` of the first complete SSE event that has some (priming events and comments have none). */
export function firstEventData(stream: string): string | undefined {
  const events = stream.split(/\r?\n\r?\n/);
  events.pop(); // incomplete (or empty) tail
  for (const event of events) {
    const data = event
      .split(/\r?\n/)
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(5).replace(/^ /, ''));
    if (data.some((line) => line.trim() !== '')) return data.join('\n');
  }
  return undefined;
}

function isJsonRpc(text: string): { error?: { message?: unknown } } | undefined {
  try {
    const msg = JSON.parse(text) as unknown;
    const one = (Array.isArray(msg) ? (msg as unknown[])[0] : msg) as { jsonrpc?: unknown; result?: unknown; error?: unknown } | null;
    return one && typeof one === 'object' && one.jsonrpc === '2.0' && ('result' in one || 'error' in one) ? (one as { error?: { message?: unknown } }) : undefined;
  } catch {
    return undefined;
  }
}

/** A Cloudflare error code in an edge page (`error code: 1033`, `Error 1015`). */
function cloudflareCode(body: string): string | undefined {
  return /\berror(?: code)?:?\s*(\d{3,4})\b/i.exec(body)?.[1];
}

const HOST_REJECTION = /invalid host|host header|host (?:is )?not allowed|not allowed host|this host|dns rebinding|misdirected/i;

/**
 * What an HTTP answer says about reachability: an outcome, or `answered` when it came from the
 * MCP server itself (then the notification stream is next). Pure.
 */
export function classify(status: number, headers: Record<string, string>, body: string, isMcp: boolean, url: URL): Outcome | 'answered' {
  const host = url.hostname;
  const code = cloudflareCode(body);
  if (status === 429 || code === '1015') return rateLimited(status, headers, body);
  if (status === 530 && code === '1033') {
    return {
      state: 'not-registered',
      message: `Cloudflare's edge has no tunnel connection for ${host} (530, error 1033): cloudflared is not registered for this URL (any more).`,
      fix: 'Check that the tunnel is still running; if cloudflared cannot keep a connection (UDP 7844 / QUIC blocked here), set mcpTunnel.protocol to "http2" (CLI: --protocol http2) and restart it.',
    };
  }
  if (status === 530 || (status >= 520 && status <= 527)) {
    return {
      state: 'edge-error',
      message: `Cloudflare's edge answered ${status}${code && code !== String(status) ? ` (error ${code})` : ''} for ${host}: it could not get an answer from the tunnel.`,
      fix: `Restart the tunnel; if it persists, look up Cloudflare error ${code ?? status} (developers.cloudflare.com/support/troubleshooting/cloudflare-errors/).`,
    };
  }
  if (status === 401) return unauthorized(headers, body, isMcp, host);
  if (status === 421 || ((status === 400 || status === 403) && HOST_REJECTION.test(body))) {
    return {
      state: 'host-rejected',
      message: `Your local server rejected the request (${status}) because of its Host header: it refuses requests addressed to ${host} (e.g. the MCP SDK's DNS-rebinding guard, Vite, FastMCP).`,
      fix: 'Let the tunnel send the server its own host:port: set mcpTunnel.hostHeader to "origin" (CLI: --host-header origin), or add the public hostname to the server\'s allowed hosts.',
    };
  }
  if (status === 502 || status === 504) {
    return {
      state: 'nothing-listening',
      message: `The tunnel works, but nothing answers on the local port behind ${host} (${status}).`,
      fix: 'Start your MCP server (or check the port the share points at), then check again.',
    };
  }
  if (isMcp && status === 406) {
    return {
      state: 'accept-refused',
      message: `Your server refused the request's Accept header (406), although it accepts both application/json and text/event-stream as Streamable HTTP requires.`,
      fix: 'Check that the share points at a Streamable HTTP endpoint (an SSE-only 2024-11-05 server needs its /sse URL) and that nothing in front of the server rewrites Accept.',
    };
  }
  if (!isMcp) return 'answered';
  if (status === 404 || status === 405) {
    return {
      state: 'not-mcp',
      message: `Not the MCP endpoint: ${host} answers, but ${status === 404 ? 'the path is not found (404)' : 'POST is not allowed there (405)'}: the path is not the MCP endpoint.`,
      fix: "Check the share's path: it must be the server's MCP endpoint (often /mcp).",
    };
  }
  const rpc = isJsonRpc(body);
  if (rpc) return 'answered'; // an MCP server, even if it refused initialize (a 2026-07-28-only server may)
  if (status >= 200 && status < 300) {
    return {
      state: 'not-mcp',
      message: `Not an MCP endpoint: ${host} answers (${status}${headers['content-type'] ? `, ${headers['content-type'].split(';')[0]}` : ''}), but not with a JSON-RPC answer to initialize.`,
      fix: "Check the share's path and port: they must be the MCP server's Streamable HTTP endpoint (often /mcp).",
    };
  }
  return {
    state: 'server-error',
    message: `The request reached your server through ${host}, which answered ${status}${status === 403 ? ' (forbidden)' : ''} instead of an MCP answer.`,
    fix: "Look at the MCP server's own log for why it failed the request.",
  };
}

function rateLimited(status: number, headers: Record<string, string>, body: string): Outcome {
  const after = Number(headers['retry-after']);
  const retry = Number.isFinite(after) && after > 0 ? `; retry in ${Math.round(after)} s` : '';
  if (/too many failed attempts/i.test(body)) {
    return {
      state: 'rate-limited',
      message: `The tunnel's gate is slowing down this client after repeated wrong secrets (429)${retry}.`,
      fix: 'Use the current MCP URL of the share, and wait before trying again.',
    };
  }
  return {
    state: 'rate-limited',
    message: `Cloudflare rate-limits this quick tunnel (${status}${cloudflareCode(body) === '1015' ? ', error 1015' : ''})${retry}.`,
    fix: 'Wait and check again; quick tunnels allow 200 requests in flight at most. For steady traffic use a named tunnel (mcpTunnel.tunnelMode "named", CLI: --named).',
  };
}

function unauthorized(headers: Record<string, string>, body: string, isMcp: boolean, host: string): Outcome | 'answered' {
  const challenge = headers['www-authenticate'] ?? '';
  // The server's own OAuth (behind an open share, or passed through): it answers, asking to sign in.
  if (/resource_metadata=/i.test(challenge) || (!isMcp && !/realm="MCP Tunnel"/i.test(challenge))) return 'answered';
  const why = /expired/i.test(body) ? 'the link has expired' : /revoked/i.test(body) ? 'the link was revoked' : 'it was rotated or revoked, or the URL is mistyped';
  return {
    state: 'unauthorized',
    message: `The tunnel at ${host} refused the secret this URL carries (401): ${why}. Nothing reached your server.`,
    fix: "Copy the share's current MCP URL (or create a new link) and give it to the client again.",
  };
}

/** No HTTP answer (or a cut one): connect, TLS, or timeout, said which. */
function noAnswer(url: URL, err: unknown, timedOut: boolean, status: number | undefined, timeoutMs: number): Outcome {
  const host = url.hostname;
  const seconds = timeoutMs < 1000 ? `${timeoutMs} ms` : `${Math.round(timeoutMs / 1000)} s`;
  if (timedOut) {
    return {
      state: 'unreachable',
      message: status === undefined ? `${host} did not answer within ${seconds}.` : `${host} answered ${status} but its MCP answer did not come within ${seconds}.`,
      fix: status === undefined ? 'Check that your MCP server answers initialize locally; a proxy or firewall on this machine may also hold outbound HTTPS.' : 'Your server (or something in front of it) holds the answer back: check that it answers initialize locally.',
    };
  }
  const code = errorCode(err);
  const tls = /CERT|TLS|SSL|EPROTO|SELF_SIGNED|ALTNAME|VERIFY/i.test(code);
  return {
    state: 'unreachable',
    message: tls ? `A TLS connection to ${host} failed (${code}).` : `Could not connect to ${host} (${code}).`,
    fix: tls
      ? "Something on this machine's path intercepts HTTPS (a proxy or antivirus), or the system clock is wrong: fix that, or check from another network."
      : "Check this machine's internet connection, proxy and firewall (outbound HTTPS to Cloudflare), then check again.",
  };
}

// ------------------------------------------------------------------------------------------------
// The notification stream (GET SSE) of a stateful server, and a polite goodbye
// ------------------------------------------------------------------------------------------------

async function checkNotificationStream(
  url: URL,
  target: ReachabilityTarget,
  sessionId: string,
  addresses: ResolvedAddress[],
  d: Deps,
  signal: AbortSignal,
  rtt: number,
): Promise<Outcome> {
  const session = { 'mcp-session-id': sessionId, 'mcp-protocol-version': DOCTOR_PROTOCOL_VERSION, ...target.headers };
  const held = await streamHeldBack(url, session, addresses, d, signal);
  await endSession(url, session, addresses, d, signal);
  if (!held) return { state: 'ok', message: `Reachable from the internet · ${rtt} ms`, fix: null };
  return {
    state: 'sse-buffered',
    message: `Reachable from the internet · ${rtt} ms, but your server's notification stream (GET SSE) is held back on the way (quick tunnels deliver it only when it closes, cloudflared#1449): server-to-client notifications arrive late or never.`,
    fix: 'Use a named tunnel (mcpTunnel.tunnelMode "named", CLI: --named), or a server that streams on POST or speaks MCP 2026-07-28; requests and their answers work meanwhile.',
  };
}

/** True when the GET stream's headers do not come within `sseWaitMs`; any answer (200, 405…) is fine. */
async function streamHeldBack(url: URL, session: Record<string, string>, addresses: ResolvedAddress[], d: Deps, signal: AbortSignal): Promise<boolean> {
  const limit = deadline(signal, d.sseWaitMs);
  try {
    const res = await d.request({ url, method: 'GET', headers: { accept: 'text/event-stream', ...session }, addresses, signal: limit.signal });
    res.close();
    return false;
  } catch {
    signal.throwIfAborted();
    return limit.timedOut();
  } finally {
    limit.done();
  }
}

/** DELETE the session the check opened; errors do not matter. */
async function endSession(url: URL, session: Record<string, string>, addresses: ResolvedAddress[], d: Deps, signal: AbortSignal): Promise<void> {
  const limit = deadline(signal, DELETE_TIMEOUT_MS);
  try {
    const res = await d.request({ url, method: 'DELETE', headers: session, addresses, signal: limit.signal });
    res.close();
  } catch {
    signal.throwIfAborted();
  } finally {
    limit.done();
  }
}

/**
 * checkReachability that connects where a `--connect-to` rule says for the host it names, else
 * through DNS. `rule` is read at each check.
 */
export function redirectedCheck(rule: () => { host: string; to: ConnectTo } | undefined): (target: ReachabilityTarget, onProgress?: (progress: ReachabilityResult) => void) => Promise<ReachabilityResult> {
  return (target, onProgress) => {
    const connectTo = connectToFor(rule(), target.mcpUrl);
    return checkReachability(target, connectTo ? { connectTo } : {}, onProgress);
  };
}

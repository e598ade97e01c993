/**
 * The inspector's recorder: what passed the gate, per share, as MCP calls — who (the MCP client
 * from `initialize`, else the User-Agent), from where (Cloudflare's `Cf-Connecting-Ip` /
 * `Cf-Ipcountry`, as cloudflared reports them), which method and tool / resource / prompt, the
 * outcome (HTTP status, JSON-RPC error code), how long, how many bytes, and the bodies (bounded,
 * redacted). A batch is split into its calls; an SSE response is one entry with its events.
 * Both MCP revisions: 2025 bodies, and 2026-07-28's `Mcp-Method` / `Mcp-Name` headers, checked
 * against the body.
 *
 * Secrets never get in: share secrets (the gate's, live and retired) are replaced before anything
 * is stored; `Bearer …` values and the values of keys named like authorization, cookie, token,
 * secret, password or API key are redacted; request headers are not kept (only the User-Agent).
 *
 * Bounded: a ring of `maxEntries` per share; bodies kept up to `maxBodyBytes` each (then cut, with
 * the full size noted); nothing parsed beyond that.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Emitter, type Event } from '../util/events';

export interface RecordedCall {
  /** `a-<n>`: unique in this recorder. */
  id: string;
  /** Epoch ms when the request arrived. */
  at: number;
  share_id: string;
  /** Which link (secret) was used: its label; `open` for an open share. */
  link: string;
  /** MCP client `name version` from its initialize (remembered per session), else the User-Agent. */
  client: string | null;
  /**
   * As cloudflared reports it (Cf-Connecting-Ip / Cf-Ipcountry); null when absent, or when the
   * request did not come through cloudflared (a local process can send any header).
   */
  remote_ip: string | null;
  country: string | null;
  /** It came through cloudflared (true), from another local process (false), or that cannot be told here (null: not Linux). */
  from_tunnel: boolean | null;
  http_method: string;
  status: number;
  /** JSON-RPC method, `client response` (an answer to a server request), `GET stream`, `DELETE session`, or null when the body is not JSON-RPC. */
  method: string | null;
  /** tools/call's tool, resources/*'s URI, prompts/get's prompt. */
  name: string | null;
  /** The JSON-RPC error code of the answer, if it is an error. */
  error_code: number | null;
  /** The tool result said isError. */
  tool_error: boolean;
  duration_ms: number;
  bytes_in: number;
  bytes_out: number;
  /** SSE responses: how many events. */
  events: number | null;
  session: string | null;
  /** The 2026-07-28 headers disagreed with the body (Mcp-Method / Mcp-Name). */
  header_mismatch: boolean;
  /** Redacted, at most maxBodyBytes; null when capture is off. */
  request_body: string | null;
  response_body: string | null;
  /** Set when a body was cut: its full size in bytes. */
  request_truncated_from: number | null;
  response_truncated_from: number | null;
}

export interface RecorderOptions {
  /** Entries kept per share (a ring). Default 500. */
  maxEntries?: number;
  /** Bytes of each body kept. Default 64 KiB. */
  maxBodyBytes?: number;
  /** Keep bodies at all. Default true. */
  captureBodies?: boolean;
  /** Every secret the gate holds or held (to replace in anything stored). */
  secrets?: () => readonly string[];
  now?: () => number;
}

export interface NewClient {
  share_id: string;
  link: string;
  client: string;
  country: string | null;
  remote_ip: string | null;
}

/** What the gate knows of an exchange it let through. */
export interface ExchangeInfo {
  shareId: string;
  link: string;
  /** See the gate's `PassInfo.fromTunnel`; absent: null (cannot be told). */
  fromTunnel?: () => boolean | null | Promise<boolean | null>;
}

const SENSITIVE_KEY = /authori[sz]ation|cookie|token|secret|passw(or)?d|api[-_]?key|credential/i;

export class Recorder {
  private readonly rings = new Map<string, Ring>();
  /** `share session` → client, from initialize. */
  private readonly clients = new Map<string, string>();
  /** `share client` pairs seen (for the new-client event); bounded. */
  private readonly seen = new Set<string>();
  private next = 1;
  private readonly maxEntries: number;
  private readonly maxBody: number;
  private readonly capture: boolean;
  private readonly _onDidRecord = new Emitter<RecordedCall>();
  private readonly _onDidSeeClient = new Emitter<NewClient>();
  /** After each recorded call. */
  readonly onDidRecord: Event<RecordedCall> = this._onDidRecord.event;
  /** The first call of a client (by name) on a share. */
  readonly onDidSeeClient: Event<NewClient> = this._onDidSeeClient.event;

  constructor(private readonly options: RecorderOptions = {}) {
    this.maxEntries = Math.max(1, options.maxEntries ?? 500);
    this.maxBody = Math.max(0, options.maxBodyBytes ?? 64 * 1024);
    this.capture = options.captureBodies ?? true;
  }

  /** Calls kept per share. */
  get capacity(): number {
    return this.maxEntries;
  }

  /** The recorded calls, oldest first: of one share, or of all (by time). */
  list(shareId?: string): RecordedCall[] {
    if (shareId !== undefined) return this.rings.get(shareId)?.list() ?? [];
    return [...this.rings.values()].flatMap((r) => r.list()).sort((a, b) => a.at - b.at);
  }

  /** Forget a share's calls (it stopped). */
  forget(shareId: string): void {
    this.rings.delete(shareId);
    for (const k of [...this.clients.keys()]) if (k.startsWith(`${shareId} `)) this.clients.delete(k);
  }

  clear(): void {
    this.rings.clear();
    this.clients.clear();
  }

  dispose(): void {
    this._onDidRecord.dispose();
    this._onDidSeeClient.dispose();
  }

  /**
   * Watches one exchange the gate let through (before the origin sees it): its request body as it
   * is read, its response as it is written; records it when the response is done or cut.
   */
  tap(req: IncomingMessage, res: ServerResponse, info: ExchangeInfo): void {
    const started = this.now();
    const t0 = performance.now();
    const inBody = new Capture(this.maxBody);
    const outBody = new Capture(this.maxBody);
    // Observe 'data' as it is emitted (pipe() and 'data' listeners alike), without changing the flow.
    const emit = req.emit.bind(req);
    req.emit = ((event: string | symbol, ...args: unknown[]): boolean => {
      if (event === 'data') inBody.add(args[0]);
      return emit(event, ...args);
    }) as typeof req.emit;
    // writeHead(status, headers) does not keep what it sends (getHeader() then knows nothing): note it.
    const sent: Record<string, unknown> = {};
    const writeHead = res.writeHead.bind(res) as (...a: unknown[]) => ServerResponse;
    res.writeHead = ((...args: unknown[]): ServerResponse => {
      const h = args.find((a, i) => i > 0 && typeof a === 'object' && a !== null);
      if (h && !Array.isArray(h)) for (const [k, v] of Object.entries(h)) sent[k.toLowerCase()] = v;
      return writeHead(...args);
    });
    const write = res.write.bind(res) as (...a: unknown[]) => boolean;
    const end = res.end.bind(res) as (...a: unknown[]) => ServerResponse;
    res.write = ((chunk: unknown, ...rest: unknown[]): boolean => {
      outBody.add(chunk);
      return write(chunk, ...rest);
    }) as typeof res.write;
    res.end = ((chunk?: unknown, ...rest: unknown[]): ServerResponse => {
      if (chunk !== undefined && typeof chunk !== 'function') outBody.add(chunk);
      return end(chunk, ...rest);
    }) as typeof res.end;
    res.once('close', () => {
      const durationMs = performance.now() - t0;
      const done = (fromTunnel: boolean | null): void => {
        try {
          this.finish(req, res, info, fromTunnel, started, durationMs, inBody, outBody, (name) => res.getHeader(name) ?? sent[name]);
        } catch {
          // a recorder fault never touches the exchange
        }
      };
      // Who sent it is known once the connection's owner is (its first request may end before).
      const owner = info.fromTunnel?.() ?? null;
      if (owner instanceof Promise) void owner.then(done, () => done(null));
      else done(owner);
    });
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  private finish(req: IncomingMessage, res: ServerResponse, info: ExchangeInfo, fromTunnel: boolean | null, at: number, durationMs: number, inBody: Capture, outBody: Capture, header: (name: string) => unknown): void {
    const headers = req.headers;
    const session = str(header('mcp-session-id')) ?? str(headers['mcp-session-id']) ?? null;
    const contentType = str(header('content-type')) ?? '';
    const sse = contentType.includes('text/event-stream');
    const reqText = inBody.text();
    const resText = outBody.text();
    const calls = reqText !== undefined && !inBody.cut ? parseJsonRpc(reqText) : [];
    // The answers tell only errors (a JSON-RPC error, a tool's isError): an answer with neither
    // word in it is not parsed at all (most are not).
    const answers = resText !== undefined && !outBody.cut && MAYBE_ERROR.test(resText) ? (sse ? parseSse(resText) : parseJsonRpc(resText)) : [];
    const events = sse && resText !== undefined ? (resText.match(/^data:/gm) ?? []).length : null;
    const clientKey = `${info.shareId} ${session ?? ''}`;
    const init = calls.find((c) => c.method === 'initialize');
    if (init && session !== null) {
      const ci = obj(obj(init.params)['clientInfo']);
      const name = str(ci['name']);
      if (name) this.remember(clientKey, `${name}${str(ci['version']) ? ` ${str(ci['version'])}` : ''}`);
    }
    const ua = str(headers['user-agent']) ?? null;
    const client = (session !== null ? this.clients.get(clientKey) : undefined) ?? clientFromInit(init) ?? ua;
    const headerMethod = str(headers['mcp-method']);
    const headerName = str(headers['mcp-name']);
    // Cloudflare's word on the client counts only when cloudflared said it.
    const base = {
      at,
      share_id: info.shareId,
      link: info.link,
      client,
      remote_ip: fromTunnel === false ? null : (str(headers['cf-connecting-ip'])?.trim() ?? null),
      country: fromTunnel === false ? null : (str(headers['cf-ipcountry'])?.trim() ?? null),
      from_tunnel: fromTunnel,
      http_method: req.method ?? 'GET',
      status: res.statusCode,
      duration_ms: Math.round(durationMs * 100) / 100,
      session,
      events,
    };
    const bodies = {
      request_body: this.capture && reqText !== undefined ? this.redact(reqText) : null,
      response_body: this.capture && resText !== undefined ? this.redact(resText) : null,
      request_truncated_from: inBody.cut ? inBody.size : null,
      response_truncated_from: outBody.cut ? outBody.size : null,
    };
    const rows: Array<Pick<RecordedCall, 'method' | 'name' | 'error_code' | 'tool_error' | 'header_mismatch'>> = [];
    if (calls.length === 0) {
      rows.push({ method: req.method === 'GET' ? 'GET stream' : req.method === 'DELETE' ? 'DELETE session' : (headerMethod ?? null), name: headerName ?? null, error_code: null, tool_error: false, header_mismatch: false });
    }
    for (const c of calls) {
      const answer = c.id !== undefined ? answers.find((a) => a.id !== undefined && c.id !== undefined && sameId(a.id, c.id)) : undefined;
      const name = nameOf(c);
      rows.push({
        // A message without a method is the client's answer to a server request (roots/list, sampling…).
        method: c.method ?? (c.result !== undefined || c.error !== undefined ? 'client response' : null),
        name,
        error_code: answer?.error ? (typeof obj(answer.error)['code'] === 'number' ? (obj(answer.error)['code'] as number) : null) : null,
        tool_error: c.method === 'tools/call' && obj(answer?.result)['isError'] === true,
        // 2026-07-28: the headers name the (single) call; they must agree with the body.
        header_mismatch: calls.length === 1 && ((headerMethod !== undefined && headerMethod !== c.method) || (headerName !== undefined && name !== null && headerName !== name)),
      });
    }
    const bytes = { bytes_in: inBody.size, bytes_out: outBody.size };
    for (const [i, row] of rows.entries()) {
      // A batch's bytes and bodies belong to its first row only (the others point at it by time).
      const entry: RecordedCall = { id: `a-${this.next++}`, ...base, ...row, ...(i === 0 ? bytes : { bytes_in: 0, bytes_out: 0 }), ...(i === 0 ? bodies : { request_body: null, response_body: null, request_truncated_from: null, response_truncated_from: null }) };
      this.push(entry);
    }
    if (client) this.maybeNewClient(info, client, base.country, base.remote_ip);
  }

  private remember(key: string, client: string): void {
    this.clients.set(key, client);
    if (this.clients.size > 10_000) this.clients.delete(this.clients.keys().next().value as string);
  }

  private maybeNewClient(info: ExchangeInfo, client: string, country: string | null, ip: string | null): void {
    const key = `${info.shareId} ${client}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    if (this.seen.size > 10_000) this.seen.delete(this.seen.values().next().value as string);
    this._onDidSeeClient.fire({ share_id: info.shareId, link: info.link, client, country, remote_ip: ip });
  }

  private push(entry: RecordedCall): void {
    let ring = this.rings.get(entry.share_id);
    if (!ring) this.rings.set(entry.share_id, (ring = new Ring(this.maxEntries)));
    ring.push(entry);
    this._onDidRecord.fire(entry);
  }

  /** Secrets out of a body: the gate's, then Bearer values, then sensitive keys' values. */
  redact(text: string): string {
    let out = text;
    // Each rewrite only when a quick scan finds what it rewrites (most bodies have none).
    for (const s of this.options.secrets?.() ?? []) if (s && out.includes(s)) out = out.split(s).join('<secret>');
    if (BEARER_WORD.test(out)) out = out.replace(/(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}/gi, '$1<redacted>');
    if (SENSITIVE_KEY.test(out)) out = out.replace(/("([^"\\]*)"\s*:\s*)"((?:[^"\\]|\\.)*)"/g, (m, head: string, key: string) => (SENSITIVE_KEY.test(key) ? `${head}"<redacted>"` : m));
    return out;
  }
}

const BEARER_WORD = /bearer/i;
/**
 * An answer that may carry an error: `"error":` or `"isError":`. A server that spells the key
 * with escapes has its error left out of the record: the inspector informs, nothing relies on it.
 */
const MAYBE_ERROR = /"(?:error|isError)"\s*:/;

/** The last `max` calls of a share: a circular buffer (a push never moves the others). */
class Ring {
  private readonly buf: RecordedCall[] = [];
  private start = 0;
  constructor(private readonly max: number) {}

  push(entry: RecordedCall): void {
    if (this.buf.length < this.max) {
      this.buf.push(entry);
      return;
    }
    this.buf[this.start] = entry;
    this.start = (this.start + 1) % this.max;
  }

  /** Oldest first. */
  list(): RecordedCall[] {
    return this.start === 0 ? [...this.buf] : [...this.buf.slice(this.start), ...this.buf.slice(0, this.start)];
  }
}

/** Keeps the first `max` bytes of a stream of chunks and counts them all. */
class Capture {
  size = 0;
  cut = false;
  private readonly parts: Buffer[] = [];
  private kept = 0;
  constructor(private readonly max: number) {}

  add(chunk: unknown): void {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk instanceof Uint8Array ? chunk : undefined;
    if (!b) return;
    this.size += b.length;
    if (this.kept >= this.max) {
      if (b.length > 0) this.cut = true;
      return;
    }
    const take = Math.min(b.length, this.max - this.kept);
    if (take < b.length) this.cut = true;
    // A view, not a copy: a chunk is not reused once written (a string was copied into `b`).
    this.parts.push(Buffer.from(b.buffer, b.byteOffset, take));
    this.kept += take;
  }

  text(): string | undefined {
    return this.size === 0 ? undefined : Buffer.concat(this.parts).toString('utf8');
  }
}

interface RpcMessage {
  id?: string | number | null;
  method?: string;
  params?: unknown;
  result?: unknown;
  error?: unknown;
}

function parseJsonRpc(text: string): RpcMessage[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return [];
  }
  const list = Array.isArray(v) ? v : [v];
  return list.filter((m): m is RpcMessage => typeof m === 'object' && m !== null);
}

/** The JSON-RPC messages of an SSE body (`data:` lines of each event, joined). */
function parseSse(text: string): RpcMessage[] {
  const out: RpcMessage[] = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    const data = block
      .split(/\r?\n/)
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).replace(/^ /, ''))
      .join('\n');
    if (data) out.push(...parseJsonRpc(data));
  }
  return out;
}

function nameOf(c: RpcMessage): string | null {
  const p = obj(c.params);
  if (c.method === 'tools/call' || c.method === 'prompts/get') return str(p['name']) ?? null;
  if (c.method?.startsWith('resources/')) return str(p['uri']) ?? null;
  return null;
}

function clientFromInit(init: RpcMessage | undefined): string | undefined {
  const ci = obj(obj(init?.params)['clientInfo']);
  const name = str(ci['name']);
  return name ? `${name}${str(ci['version']) ? ` ${str(ci['version'])}` : ''}` : undefined;
}

function sameId(a: string | number | null, b: string | number | null): boolean {
  return a === b || (a !== null && b !== null && `${a}` === `${b}`);
}

function obj(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function str(v: unknown): string | undefined {
  if (Array.isArray(v)) return str(v[0]);
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined;
}

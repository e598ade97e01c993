/**
 * Reading cloudflared's metrics server (`--metrics`): Prometheus text parsing, `/ready`,
 * `/quicktunnel`, and a poller. Every request has a timeout and a size cap, uses its own socket
 * (`agent: false`) and never throws uncaught. See shared/reference/cloudflared.md §3, §4.
 */
import * as http from 'node:http';
import type { Disposable } from '../util/events';
import type { TunnelMetrics } from '../model/tunnelState';

// ---------------------------------------------------------------------------------------------
// Prometheus text exposition format

export interface PromSample {
  labels: Record<string, string>;
  value: number;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;

/**
 * Parses Prometheus text exposition (version 0.0.4): comments and blank lines are skipped,
 * label values may hold `\\`, `\"` and `\n` escapes, values may be `+Inf`, `-Inf`, `NaN`, and a
 * trailing timestamp is ignored. Malformed lines are skipped, never thrown on.
 */
export function parsePrometheus(text: string): Map<string, PromSample[]> {
  const out = new Map<string, PromSample[]>();
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (!line || line.startsWith('#')) continue;
    const sample = parseSampleLine(line);
    if (!sample) continue;
    const list = out.get(sample.name);
    if (list) list.push(sample.sample);
    else out.set(sample.name, [sample.sample]);
  }
  return out;
}

function parseSampleLine(line: string): { name: string; sample: PromSample } | undefined {
  const nm = METRIC_NAME.exec(line);
  if (!nm) return undefined;
  const name = nm[0];
  let i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] === '{') {
    i++;
    for (;;) {
      while (line[i] === ' ' || line[i] === '\t') i++;
      if (line[i] === '}') {
        i++;
        break;
      }
      const ln = LABEL_NAME.exec(line.slice(i));
      if (!ln) return undefined;
      i += ln[0].length;
      while (line[i] === ' ' || line[i] === '\t') i++;
      if (line[i] !== '=') return undefined;
      i++;
      while (line[i] === ' ' || line[i] === '\t') i++;
      if (line[i] !== '"') return undefined;
      i++;
      let value = '';
      let closed = false;
      while (i < line.length) {
        const c = line[i];
        if (c === '\\') {
          const e = line[i + 1];
          value += e === 'n' ? '\n' : e === undefined ? '\\' : e;
          i += 2;
        } else if (c === '"') {
          closed = true;
          i++;
          break;
        } else {
          value += c;
          i++;
        }
      }
      if (!closed) return undefined;
      labels[ln[0]] = value;
      while (line[i] === ' ' || line[i] === '\t') i++;
      if (line[i] === ',') {
        i++;
        continue;
      }
      if (line[i] === '}') {
        i++;
        break;
      }
      return undefined;
    }
  }
  if (line[i] !== ' ' && line[i] !== '\t') return undefined;
  const rest = line.slice(i).trim().split(/\s+/);
  const value = parsePromValue(rest[0] ?? '');
  if (value === undefined) return undefined;
  return { name, sample: { labels, value } };
}

/** A Prometheus sample value, or undefined if it is not one. */
export function parsePromValue(s: string): number | undefined {
  switch (s) {
    case '+Inf':
    case 'Inf':
    case '+inf':
    case 'inf':
      return Infinity;
    case '-Inf':
    case '-inf':
      return -Infinity;
    case 'NaN':
    case 'nan':
      return NaN;
  }
  if (!/^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/.test(s) && !/^[-+]?0x[0-9a-fA-F]+$/.test(s)) return undefined;
  const v = Number(s);
  return Number.isNaN(v) ? undefined : v;
}

function sum(samples: readonly PromSample[] | undefined): number {
  let total = 0;
  for (const s of samples ?? []) if (Number.isFinite(s.value)) total += s.value;
  return total;
}

/** True if the parsed text looks like cloudflared's metrics (not an error page or garbage). */
export function looksLikeCloudflaredMetrics(parsed: Map<string, PromSample[]>): boolean {
  for (const name of parsed.keys()) if (name.startsWith('cloudflared_tunnel_')) return true;
  return false;
}

/**
 * The counters the UI shows (§4). `readyConnections` comes from `/ready` (0 when not given):
 * `cloudflared_tunnel_ha_connections` counts dials, not registrations, so it is reported apart.
 */
export function metricsFromPrometheus(
  text: string | Map<string, PromSample[]>,
  ready?: { readyConnections: number },
  now: number = Date.now(),
): TunnelMetrics {
  const m = typeof text === 'string' ? parsePrometheus(text) : text;
  const responsesByCode: Record<string, number> = {};
  for (const s of m.get('cloudflared_tunnel_response_by_code') ?? []) {
    const code = s.labels.status_code ?? 'unknown';
    if (Number.isFinite(s.value)) responsesByCode[code] = (responsesByCode[code] ?? 0) + s.value;
  }
  // 1 = the connection's current location, 0 = a previous one.
  const edgeLocations: string[] = [];
  const byConn = [...(m.get('cloudflared_tunnel_server_locations') ?? [])].sort(
    (a, b) => Number(a.labels.connection_id ?? 0) - Number(b.labels.connection_id ?? 0),
  );
  for (const s of byConn) {
    const loc = s.labels.edge_location;
    if (loc && s.value > 0 && !edgeLocations.includes(loc)) edgeLocations.push(loc);
  }
  const metrics: TunnelMetrics = {
    totalRequests: sum(m.get('cloudflared_tunnel_total_requests')),
    requestErrors: sum(m.get('cloudflared_tunnel_request_errors')),
    concurrentRequests: sum(m.get('cloudflared_tunnel_concurrent_requests_per_tunnel')),
    responsesByCode,
    edgeLocations,
    readyConnections: ready?.readyConnections ?? 0,
    readAt: now,
  };
  const ha = m.get('cloudflared_tunnel_ha_connections');
  if (ha) metrics.haConnections = sum(ha);
  return metrics;
}

// ---------------------------------------------------------------------------------------------
// HTTP

export const DEFAULT_TIMEOUT_MS = 2000;
export const DEFAULT_MAX_BYTES = 1024 * 1024;

export interface RequestOptions {
  /** Whole-request deadline (connect + headers + body). Default 2000 ms. */
  timeoutMs?: number;
  /** Largest body accepted. Default 1 MiB. */
  maxBytes?: number;
  /** Aborts the request (the promise rejects with an AbortError). */
  signal?: AbortSignal;
}

export interface HttpTextResponse {
  status: number;
  contentType: string;
  body: string;
}

/** Host and port from a metrics address as cloudflared logs it: `127.0.0.1:40285`, `[::1]:20241`, `localhost:20241`. */
export function parseMetricsAddress(address: string): { host: string; port: number } | undefined {
  let a = address.trim().replace(/^https?:\/\//i, '');
  a = a.replace(/\/.*$/, '');
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(a) ?? /^([^:[\]]*):(\d+)$/.exec(a);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  let host = m[1] ?? '';
  // Wildcard binds (Docker's 0.0.0.0 / [::]) are reached on loopback.
  if (host === '' || host === '0.0.0.0') host = '127.0.0.1';
  else if (host === '::') host = '::1';
  return { host, port };
}

export class HttpError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** GET `http://<address><path>` as text. Rejects (never hangs) on timeout, oversize, abort or network error. */
export function fetchText(address: string, path: string, opts: RequestOptions = {}): Promise<HttpTextResponse> {
  const target = parseMetricsAddress(address);
  if (!target) return Promise.reject(new HttpError(`invalid metrics address: ${JSON.stringify(address)}`));
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  const signal = opts.signal;
  if (signal?.aborted) return Promise.reject(abortError());

  return new Promise<HttpTextResponse>((resolve, reject) => {
    let settled = false;
    let req: http.ClientRequest | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const onAbort = (): void => fail(abortError());
    const cleanup = (): void => {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      signal?.removeEventListener('abort', onAbort);
    };
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      cleanup();
      req?.destroy();
      reject(err);
    };
    const succeed = (r: HttpTextResponse): void => {
      if (settled) return;
      settled = true;
      cleanup();
      resolve(r);
    };

    timer = setTimeout(() => fail(new HttpError(`GET ${path} timed out after ${timeoutMs} ms`)), timeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });

    try {
      req = http.get(
        {
          host: target.host,
          port: target.port,
          path,
          agent: false,
          headers: { accept: 'text/plain, application/json', connection: 'close' },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > maxBytes) {
              fail(new HttpError(`GET ${path}: response larger than ${maxBytes} bytes`, res.statusCode));
              res.destroy();
              return;
            }
            chunks.push(chunk);
          });
          res.on('end', () => {
            succeed({
              status: res.statusCode ?? 0,
              contentType: String(res.headers['content-type'] ?? ''),
              body: Buffer.concat(chunks).toString('utf8'),
            });
          });
          res.on('aborted', () => fail(new HttpError(`GET ${path}: response aborted`, res.statusCode)));
          res.on('error', (e) => fail(toError(e)));
          res.on('close', () => {
            if (!res.complete) fail(new HttpError(`GET ${path}: connection closed before the response ended`, res.statusCode));
          });
        },
      );
      req.on('error', (e) => fail(toError(e)));
    } catch (e) {
      fail(toError(e));
    }
  });
}

function abortError(): Error {
  const e = new Error('request aborted');
  e.name = 'AbortError';
  return e;
}

function toError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/** GET and JSON.parse; `okStatuses` lists the statuses whose body is accepted (default: 200). */
export async function fetchJson(address: string, path: string, opts: RequestOptions & { okStatuses?: readonly number[] } = {}): Promise<{ status: number; json: unknown }> {
  const res = await fetchText(address, path, opts);
  const ok = opts.okStatuses ?? [200];
  if (!ok.includes(res.status)) throw new HttpError(`GET ${path}: HTTP ${res.status}`, res.status);
  try {
    return { status: res.status, json: JSON.parse(res.body) as unknown };
  } catch {
    throw new HttpError(`GET ${path}: not JSON (HTTP ${res.status})`, res.status);
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `/ready`: 200 with readyConnections ≥ 1 when registered, 503 with 0 otherwise (a normal answer). */
export async function readReady(address: string, opts: RequestOptions = {}): Promise<{ status: number; readyConnections: number }> {
  const { status, json } = await fetchJson(address, '/ready', { ...opts, okStatuses: [200, 503] });
  if (!isRecord(json)) throw new HttpError('GET /ready: unexpected body', status);
  const n = json.readyConnections;
  const readyConnections = typeof n === 'number' && Number.isFinite(n) && n >= 0 ? Math.floor(n) : status === 200 ? 1 : 0;
  return { status, readyConnections };
}

/** `/quicktunnel`: the quick tunnel's hostname without scheme, or '' when not a quick tunnel. */
export async function readQuickTunnel(address: string, opts: RequestOptions = {}): Promise<string> {
  const { status, json } = await fetchJson(address, '/quicktunnel', opts);
  if (!isRecord(json)) throw new HttpError('GET /quicktunnel: unexpected body', status);
  return typeof json.hostname === 'string' ? json.hostname : '';
}

/** `/metrics` (and `/ready`, in parallel) as {@link TunnelMetrics}. Rejects on errors or a body that is not cloudflared's. */
export async function readMetrics(address: string, opts: RequestOptions & { now?: () => number } = {}): Promise<TunnelMetrics> {
  // One failure cancels the other request, so no socket outlives this call.
  const inner = new AbortController();
  const outer = opts.signal;
  const onOuterAbort = (): void => inner.abort();
  if (outer?.aborted) inner.abort();
  outer?.addEventListener('abort', onOuterAbort, { once: true });
  const sub: RequestOptions = { ...opts, signal: inner.signal };
  let ready: { status: number; readyConnections: number };
  let res: HttpTextResponse;
  try {
    [ready, res] = await Promise.all([
      readReady(address, sub).catch((e: unknown) => {
        inner.abort();
        throw e;
      }),
      fetchText(address, '/metrics', sub).catch((e: unknown) => {
        inner.abort();
        throw e;
      }),
    ]);
  } finally {
    outer?.removeEventListener('abort', onOuterAbort);
  }
  if (res.status !== 200) throw new HttpError(`GET /metrics: HTTP ${res.status}`, res.status);
  const parsed = parsePrometheus(res.body);
  if (!looksLikeCloudflaredMetrics(parsed)) throw new HttpError('GET /metrics: no cloudflared metrics in the response', res.status);
  return metricsFromPrometheus(parsed, ready, (opts.now ?? Date.now)());
}

// ---------------------------------------------------------------------------------------------
// Poller

export type TimerHandle = unknown;

export interface MetricsPollerOptions {
  /** Delay between the end of one poll and the start of the next. Default 2000 ms. */
  intervalMs?: number;
  /** Per-request deadline. Default 2000 ms. */
  timeoutMs?: number;
  /** Response size cap. Default 1 MiB. */
  maxBytes?: number;
  onMetrics(m: TunnelMetrics): void;
  onError?(e: Error): void;
  setTimeout?: (fn: () => void, ms: number) => TimerHandle;
  clearTimeout?: (handle: TimerHandle) => void;
  now?: () => number;
}

/**
 * Polls `/ready` and `/metrics` every `intervalMs` (measured from the end of a poll, so two polls
 * never overlap). A failed poll reports through `onError` and keeps {@link metrics} at the last
 * good value. After `dispose()` no timer remains, the in-flight request is aborted and no
 * callback fires.
 */
export class MetricsPoller implements Disposable {
  private readonly intervalMs: number;
  private readonly setTimer: (fn: () => void, ms: number) => TimerHandle;
  private readonly clearTimer: (handle: TimerHandle) => void;
  private timer: TimerHandle;
  private hasTimer = false;
  private inFlight: Promise<TunnelMetrics | undefined> | undefined;
  private abort: AbortController | undefined;
  private started = false;
  private disposed = false;
  private last: TunnelMetrics | undefined;
  private polls = 0;

  constructor(
    readonly address: string,
    private readonly opts: MetricsPollerOptions,
  ) {
    this.intervalMs = Math.max(1, opts.intervalMs ?? 2000);
    this.setTimer =
      opts.setTimeout ??
      ((fn, ms) => {
        const t = setTimeout(fn, ms);
        t.unref?.();
        return t;
      });
    this.clearTimer = opts.clearTimeout ?? ((h) => clearTimeout(h as ReturnType<typeof setTimeout>));
  }

  /** Last good metrics, kept across failed polls. */
  get metrics(): TunnelMetrics | undefined {
    return this.last;
  }

  /** Polls completed (successful or not). */
  get pollCount(): number {
    return this.polls;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Starts polling now, then every intervalMs. Idempotent. */
  start(): void {
    if (this.started || this.disposed) return;
    this.started = true;
    this.loop();
  }

  /**
   * Polls once now (or joins the poll in flight). Resolves with the metrics read, or undefined if
   * the poll failed or the poller was disposed; never rejects.
   */
  pollNow(): Promise<TunnelMetrics | undefined> {
    if (this.disposed) return Promise.resolve(undefined);
    if (this.inFlight) return this.inFlight;
    const abort = new AbortController();
    this.abort = abort;
    const p = this.runPoll(abort.signal).finally(() => {
      if (this.inFlight === p) this.inFlight = undefined;
      if (this.abort === abort) this.abort = undefined;
    });
    this.inFlight = p;
    return p;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.cancelTimer();
    this.abort?.abort();
    this.abort = undefined;
  }

  private loop(): void {
    if (this.disposed) return;
    this.pollNow().then(
      () => this.schedule(),
      () => this.schedule(),
    );
  }

  private schedule(): void {
    if (this.disposed || this.hasTimer) return;
    this.hasTimer = true;
    this.timer = this.setTimer(() => {
      this.hasTimer = false;
      this.timer = undefined;
      this.loop();
    }, this.intervalMs);
  }

  private cancelTimer(): void {
    if (!this.hasTimer) return;
    this.hasTimer = false;
    const t = this.timer;
    this.timer = undefined;
    this.clearTimer(t);
  }

  private async runPoll(signal: AbortSignal): Promise<TunnelMetrics | undefined> {
    let metrics: TunnelMetrics;
    try {
      const req: RequestOptions & { now?: () => number } = { signal };
      if (this.opts.timeoutMs !== undefined) req.timeoutMs = this.opts.timeoutMs;
      if (this.opts.maxBytes !== undefined) req.maxBytes = this.opts.maxBytes;
      if (this.opts.now) req.now = this.opts.now;
      metrics = await readMetrics(this.address, req);
    } catch (e) {
      if (this.disposed) return undefined;
      this.polls++;
      this.report(toError(e));
      return undefined;
    }
    if (this.disposed) return undefined;
    this.polls++;
    this.last = metrics;
    try {
      this.opts.onMetrics(metrics);
    } catch (e) {
      this.report(toError(e));
    }
    return metrics;
  }

  private report(e: Error): void {
    try {
      this.opts.onError?.(e);
    } catch {
      // a throwing error handler must not break polling
    }
  }
}

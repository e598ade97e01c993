import { after, before, beforeEach, describe, test } from 'node:test';
import { TRANSCRIPTS_DIR } from '../support/proc';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import path from 'node:path';
import {
  MetricsPoller,
  fetchText,
  looksLikeCloudflaredMetrics,
  metricsFromPrometheus,
  parseMetricsAddress,
  parsePrometheus,
  readMetrics,
  readQuickTunnel,
  readReady,
} from '../../src/core/metrics/metrics';
import type { TunnelMetrics } from '../../src/core/model/tunnelState';
import { sleep } from '../support/wait';

const DIR = TRANSCRIPTS_DIR;
const scrape = (name: string): string => readFileSync(path.join(DIR, name), 'utf8');

// ---------------------------------------------------------------------------------------------
// Parsing

void describe('parsePrometheus', () => {
  void test('comments, labels with escapes, special values, timestamps, malformed lines', () => {
    const text = [
      '# HELP x_total A counter with "quotes" and \\ backslash',
      '# TYPE x_total counter',
      '',
      'x_total 3',
      'x_total{a="1"} 4 1700000000000',
      'lbl{path="C:\\\\dir",quote="say \\"hi\\"",nl="a\\nb", sp = "v" ,} 1.5e+03',
      'h_bucket{le="0.5"} 1',
      'h_bucket{le="+Inf"} 2',
      'g_inf +Inf',
      'g_ninf -Inf',
      'g_nan NaN',
      'big 1.8446744073709552e+19',
      'neg -0.25',
      'bad{a="unterminated} 1',
      'bad2{a=1} 1',
      'bad3 notanumber',
      'bad4',
      '{no_name="x"} 1',
      '  indented 7  ',
      'crlf 8\r',
    ].join('\n');
    const m = parsePrometheus(text);
    assert.deepEqual(m.get('x_total'), [
      { labels: {}, value: 3 },
      { labels: { a: '1' }, value: 4 },
    ]);
    assert.deepEqual(m.get('lbl'), [{ labels: { path: 'C:\\dir', quote: 'say "hi"', nl: 'a\nb', sp: 'v' }, value: 1500 }]);
    assert.deepEqual(m.get('h_bucket')?.map((s) => s.labels.le), ['0.5', '+Inf']);
    assert.equal(m.get('g_inf')?.[0]?.value, Infinity);
    assert.equal(m.get('g_ninf')?.[0]?.value, -Infinity);
    assert.ok(Number.isNaN(m.get('g_nan')?.[0]?.value));
    assert.equal(m.get('big')?.[0]?.value, 18446744073709552000);
    assert.equal(m.get('neg')?.[0]?.value, -0.25);
    assert.equal(m.get('indented')?.[0]?.value, 7);
    assert.equal(m.get('crlf')?.[0]?.value, 8);
    for (const b of ['bad', 'bad2', 'bad3', 'bad4', 'no_name']) assert.equal(m.has(b), false, b);
  });

  void test('garbage and empty input', () => {
    assert.equal(parsePrometheus('').size, 0);
    assert.equal(parsePrometheus('<html><body>502 Bad Gateway</body></html>').size, 0);
    assert.equal(looksLikeCloudflaredMetrics(parsePrometheus('{"status":200}')), false);
    assert.equal(parsePrometheus('\u0000\u0001\uffff garbage { } = "').size, 0);
  });
});

void describe('metricsFromPrometheus (real scrapes)', () => {
  const files = readdirSync(DIR).filter((f) => /\.metrics-[\d.]+\.txt$/.test(f));

  void test('every scrape is cloudflared metrics from 2023.7.3', () => {
    assert.ok(files.length >= 2);
    for (const f of files) {
      const m = parsePrometheus(scrape(f));
      assert.ok(looksLikeCloudflaredMetrics(m), f);
      assert.equal(m.get('build_info')?.[0]?.labels.version, '2023.7.3', f);
      assert.equal(m.get('go_gc_duration_seconds')?.length, 5, f);
    }
  });

  void test('05 at 4 s: connected, no traffic yet', () => {
    const m = metricsFromPrometheus(scrape('05-connected-sigterm-inflight.txt.metrics-4.053.txt'), { readyConnections: 1 }, 1234);
    assert.deepEqual(m, {
      totalRequests: 0,
      requestErrors: 0,
      concurrentRequests: 0,
      responsesByCode: {},
      edgeLocations: ['lax01'],
      readyConnections: 1,
      haConnections: 1,
      readAt: 1234,
    });
  });

  void test('05 at 14 s: after 4 requests (200 ×2, 404, 500)', () => {
    // The scrape holding "total 5, concurrent 1" (19 s, one request in flight) is not shipped;
    // the 14 s one has the four completed requests.
    const m = metricsFromPrometheus(scrape('05-connected-sigterm-inflight.txt.metrics-14.104.txt'), { readyConnections: 1 }, 1);
    assert.equal(m.totalRequests, 4);
    assert.equal(m.concurrentRequests, 0);
    assert.equal(m.requestErrors, 0);
    assert.deepEqual(m.responsesByCode, { '200': 2, '404': 1, '500': 1 });
    assert.deepEqual(m.edgeLocations, ['lax01']);
    assert.equal(m.haConnections, 1);
  });

  void test('§4: 4 requests + 1 in flight', () => {
    const base = scrape('05-connected-sigterm-inflight.txt.metrics-14.104.txt')
      .replace('cloudflared_tunnel_total_requests 4', 'cloudflared_tunnel_total_requests 5')
      .replace('cloudflared_tunnel_concurrent_requests_per_tunnel 0', 'cloudflared_tunnel_concurrent_requests_per_tunnel 1');
    const m = metricsFromPrometheus(base);
    assert.equal(m.totalRequests, 5);
    assert.equal(m.concurrentRequests, 1);
    assert.deepEqual(m.responsesByCode, { '200': 2, '404': 1, '500': 1 });
    assert.equal(m.readyConnections, 0);
  });

  void test('edge locations: only current ones (value 1), ordered by connection, unique', () => {
    const m = metricsFromPrometheus(
      [
        'cloudflared_tunnel_server_locations{connection_id="1",edge_location="iad15"} 1',
        'cloudflared_tunnel_server_locations{connection_id="0",edge_location="lax01"} 1',
        'cloudflared_tunnel_server_locations{connection_id="0",edge_location="sjc05"} 0',
        'cloudflared_tunnel_server_locations{connection_id="2",edge_location="lax01"} 1',
        'cloudflared_tunnel_request_errors 1',
      ].join('\n'),
    );
    assert.deepEqual(m.edgeLocations, ['lax01', 'iad15']);
    assert.equal(m.requestErrors, 1);
    assert.equal(m.haConnections, undefined);
  });
});

void describe('parseMetricsAddress', () => {
  void test('forms cloudflared logs', () => {
    assert.deepEqual(parseMetricsAddress('127.0.0.1:40285'), { host: '127.0.0.1', port: 40285 });
    assert.deepEqual(parseMetricsAddress('[::1]:20241'), { host: '::1', port: 20241 });
    assert.deepEqual(parseMetricsAddress('[::]:20241'), { host: '::1', port: 20241 });
    assert.deepEqual(parseMetricsAddress('0.0.0.0:20241'), { host: '127.0.0.1', port: 20241 });
    assert.deepEqual(parseMetricsAddress('localhost:20241'), { host: 'localhost', port: 20241 });
    assert.deepEqual(parseMetricsAddress('http://127.0.0.1:5/metrics'), { host: '127.0.0.1', port: 5 });
    assert.equal(parseMetricsAddress('127.0.0.1'), undefined);
    assert.equal(parseMetricsAddress('127.0.0.1:0'), undefined);
    assert.equal(parseMetricsAddress('127.0.0.1:99999'), undefined);
    assert.equal(parseMetricsAddress('garbage'), undefined);
  });
});

// ---------------------------------------------------------------------------------------------
// A stand-in metrics server

type Mode = 'ok' | 'not-ready' | 'status500' | 'garbage' | 'hang' | 'huge' | 'slow' | 'reset';

const METRICS_05 = scrape('05-connected-sigterm-inflight.txt.metrics-14.104.txt');

class FakeCloudflared {
  server = http.createServer((req, res) => this.handle(req, res));
  mode: Record<string, Mode> = {};
  hits: Record<string, number> = {};
  inFlight = 0;
  maxInFlight = 0;
  sockets = new Set<Socket>();
  address = '';

  async listen(): Promise<void> {
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.address = `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Drops the previous test's connections, then clears modes and counters. */
  async reset(): Promise<void> {
    this.server.closeAllConnections();
    await until(() => this.sockets.size === 0);
    this.mode = {};
    this.hits = {};
    this.inFlight = 0;
    this.maxInFlight = 0;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const p = (req.url ?? '/').split('?')[0] ?? '/';
    this.hits[p] = (this.hits[p] ?? 0) + 1;
    const mode = this.mode[p] ?? this.mode['*'] ?? 'ok';
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    let done = false;
    const finish = (): void => {
      if (!done) {
        done = true;
        this.inFlight--;
      }
    };
    res.on('close', finish);
    const text = (status: number, body: string): void => {
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(body);
    };
    switch (mode) {
      case 'hang':
        return; // never answers
      case 'status500':
        return text(500, 'internal error');
      case 'garbage':
        return text(200, '<html>\u0000\u0001 not metrics { "x": </html>');
      case 'huge':
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(Buffer.alloc(2 * 1024 * 1024, 'a'));
        return;
      case 'reset':
        req.socket.destroy();
        return;
      case 'slow':
        setTimeout(() => this.respondOk(p, res, text), 60);
        return;
      case 'not-ready':
        if (p === '/ready') return text(503, '{"status":503,"readyConnections":0,"connectorId":"c"}');
        return this.respondOk(p, res, text);
      default:
        return this.respondOk(p, res, text);
    }
  }

  private respondOk(p: string, res: http.ServerResponse, text: (s: number, b: string) => void): void {
    if (res.destroyed) return;
    if (p === '/ready') return text(200, '{"status":200,"readyConnections":1,"connectorId":"54a78917-ccb0-4d16-9772-d1825deaa166"}');
    if (p === '/quicktunnel') return text(200, '{"hostname":"seasonal-example-words-here.trycloudflare.com"}');
    if (p === '/metrics') return text(200, METRICS_05);
    return text(404, '404 page not found\n');
  }
}

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}


void describe('HTTP readers', () => {
  const fake = new FakeCloudflared();
  before(() => fake.listen());
  after(() => fake.close());
  beforeEach(() => fake.reset());

  void test('readReady: 200 and 503 are both answers', async () => {
    assert.deepEqual(await readReady(fake.address), { status: 200, readyConnections: 1 });
    fake.mode['/ready'] = 'not-ready';
    assert.deepEqual(await readReady(fake.address), { status: 503, readyConnections: 0 });
    fake.mode['/ready'] = 'status500';
    await assert.rejects(readReady(fake.address), /HTTP 500/);
    fake.mode['/ready'] = 'garbage';
    await assert.rejects(readReady(fake.address), /not JSON/);
  });

  void test('readQuickTunnel', async () => {
    assert.equal(await readQuickTunnel(fake.address), 'seasonal-example-words-here.trycloudflare.com');
  });

  void test('readMetrics combines /ready and /metrics', async () => {
    const m = await readMetrics(fake.address, { now: () => 42 });
    assert.deepEqual(m, {
      totalRequests: 4,
      requestErrors: 0,
      concurrentRequests: 0,
      responsesByCode: { '200': 2, '404': 1, '500': 1 },
      edgeLocations: ['lax01'],
      readyConnections: 1,
      haConnections: 1,
      readAt: 42,
    });
    fake.mode['/ready'] = 'not-ready';
    assert.equal((await readMetrics(fake.address)).readyConnections, 0);
    fake.mode['/ready'] = 'ok';
    fake.mode['/metrics'] = 'garbage';
    await assert.rejects(readMetrics(fake.address), /no cloudflared metrics/);
  });

  void test('timeout: a hanging endpoint rejects after timeoutMs and leaves no socket', async () => {
    fake.mode['/metrics'] = 'hang';
    const t0 = Date.now();
    await assert.rejects(fetchText(fake.address, '/metrics', { timeoutMs: 150 }), /timed out/);
    const dt = Date.now() - t0;
    assert.ok(dt >= 140 && dt < 1500, `took ${dt} ms`);
    await until(() => fake.sockets.size === 0);
  });

  void test('readMetrics: a hanging /metrics cancels /ready too', async () => {
    fake.mode['/metrics'] = 'hang';
    await assert.rejects(readMetrics(fake.address, { timeoutMs: 100 }), /timed out/);
    await until(() => fake.sockets.size === 0);
  });

  void test('size cap', async () => {
    fake.mode['/metrics'] = 'huge';
    await assert.rejects(fetchText(fake.address, '/metrics', { maxBytes: 1024 * 1024 }), /larger than/);
    const ok = await fetchText(fake.address, '/metrics', { maxBytes: 3 * 1024 * 1024 });
    assert.equal(ok.body.length, 2 * 1024 * 1024);
  });

  void test('connection reset, refused, bad address, abort', async () => {
    fake.mode['/metrics'] = 'reset';
    await assert.rejects(fetchText(fake.address, '/metrics'));
    // A port nobody listens on (9, discard: a just-closed ephemeral port may be taken by a parallel test).
    await assert.rejects(fetchText('127.0.0.1:9', '/ready'), /ECONNREFUSED/);
    await assert.rejects(fetchText('not an address', '/ready'), /invalid metrics address/);
    fake.mode['/metrics'] = 'hang';
    const ac = new AbortController();
    const hitsBefore = fake.hits['/metrics'] ?? 0;
    const p = fetchText(fake.address, '/metrics', { signal: ac.signal, timeoutMs: 5000 });
    await until(() => (fake.hits['/metrics'] ?? 0) > hitsBefore);
    ac.abort();
    await assert.rejects(p, { name: 'AbortError' });
    await assert.rejects(fetchText(fake.address, '/metrics', { signal: ac.signal }), { name: 'AbortError' });
    await until(() => fake.sockets.size === 0);
  });
});

// ---------------------------------------------------------------------------------------------
// Poller

/** Timers the test fires by hand. */
class ManualTimers {
  private nextId = 1;
  pending = new Map<number, { fn: () => void; ms: number }>();
  setTimeout = (fn: () => void, ms: number): number => {
    const id = this.nextId++;
    this.pending.set(id, { fn, ms });
    return id;
  };
  clearTimeout = (h: unknown): void => {
    this.pending.delete(h as number);
  };
  /** Fires every pending timer once. */
  fire(): number {
    const due = [...this.pending.entries()];
    this.pending.clear();
    for (const [, t] of due) t.fn();
    return due.length;
  }
}

void describe('MetricsPoller', () => {
  const fake = new FakeCloudflared();
  before(() => fake.listen());
  after(() => fake.close());
  beforeEach(() => fake.reset());

  void test('polls /ready and /metrics, reports, reschedules, stops on dispose', async () => {
    const timers = new ManualTimers();
    const seen: TunnelMetrics[] = [];
    const errors: Error[] = [];
    const poller = new MetricsPoller(fake.address, {
      intervalMs: 1000,
      onMetrics: (m) => seen.push(m),
      onError: (e) => errors.push(e),
      setTimeout: timers.setTimeout,
      clearTimeout: timers.clearTimeout,
    });
    poller.start();
    poller.start(); // idempotent
    await until(() => seen.length === 1);
    await until(() => timers.pending.size === 1);
    assert.equal([...timers.pending.values()][0]?.ms, 1000);
    assert.equal(seen[0]?.totalRequests, 4);
    assert.equal(seen[0]?.readyConnections, 1);
    assert.equal(fake.hits['/ready'], 1);
    assert.equal(fake.hits['/metrics'], 1);

    timers.fire();
    await until(() => seen.length === 2);
    await until(() => timers.pending.size === 1);

    poller.dispose();
    assert.equal(timers.pending.size, 0, 'no timer after dispose');
    assert.equal(await poller.pollNow(), undefined);
    await sleep(30);
    assert.equal(seen.length, 2);
    assert.equal(errors.length, 0);
    assert.equal(fake.hits['/metrics'], 2);
    poller.dispose(); // idempotent
  });

  void test('500, garbage and hanging endpoints report errors and keep the last good metrics', async () => {
    const timers = new ManualTimers();
    const seen: TunnelMetrics[] = [];
    const errors: Error[] = [];
    // Generous enough for a loaded CI machine; the hang below costs this much.
    const poller = new MetricsPoller(fake.address, {
      timeoutMs: 500,
      onMetrics: (m) => seen.push(m),
      onError: (e) => errors.push(e),
      setTimeout: timers.setTimeout,
      clearTimeout: timers.clearTimeout,
    });
    const good = await poller.pollNow();
    assert.equal(good?.totalRequests, 4);

    fake.mode['/metrics'] = 'status500';
    assert.equal(await poller.pollNow(), undefined);
    assert.match(errors.at(-1)?.message ?? '', /HTTP 500/);
    assert.equal(poller.metrics, good);

    fake.mode['/metrics'] = 'garbage';
    assert.equal(await poller.pollNow(), undefined);
    assert.match(errors.at(-1)?.message ?? '', /no cloudflared metrics/);

    fake.mode['/ready'] = 'garbage';
    fake.mode['/metrics'] = 'ok';
    assert.equal(await poller.pollNow(), undefined);
    assert.match(errors.at(-1)?.message ?? '', /\/ready/);

    fake.mode['/ready'] = 'ok';
    fake.mode['/metrics'] = 'hang';
    const t0 = Date.now();
    assert.equal(await poller.pollNow(), undefined);
    assert.ok(Date.now() - t0 >= 450 && Date.now() - t0 < 3000);
    assert.match(errors.at(-1)?.message ?? '', /timed out/);
    assert.equal(poller.metrics, good);
    assert.equal(seen.length, 1);
    assert.equal(poller.pollCount, 5);

    // It continues once the endpoint recovers.
    fake.mode['/metrics'] = 'ok';
    assert.equal((await poller.pollNow())?.totalRequests, 4);
    assert.equal(seen.length, 2);
    poller.dispose();
    await until(() => fake.sockets.size === 0);
  });

  void test('a hanging endpoint does not stop the polling loop (real timers)', async () => {
    fake.mode['/metrics'] = 'hang';
    const errors: Error[] = [];
    const poller = new MetricsPoller(fake.address, { intervalMs: 20, timeoutMs: 300, onMetrics: () => undefined, onError: (e) => errors.push(e) });
    poller.start();
    await until(() => errors.length >= 2);
    fake.mode['/metrics'] = 'ok';
    await until(() => poller.metrics !== undefined);
    poller.dispose();
    const hits = fake.hits['/metrics'] ?? 0;
    await sleep(100);
    assert.equal(fake.hits['/metrics'] ?? 0, hits, 'no request after dispose');
    assert.ok(errors.every((e) => /timed out/.test(e.message)));
  });

  void test('never two polls at once', async () => {
    fake.mode['*'] = 'slow';
    const seen: TunnelMetrics[] = [];
    const poller = new MetricsPoller(fake.address, { intervalMs: 1, onMetrics: (m) => seen.push(m) });
    const a = poller.pollNow();
    const b = poller.pollNow();
    assert.equal(a, b, 'a concurrent pollNow joins the poll in flight');
    poller.start();
    await a;
    await until(() => seen.length >= 4);
    poller.dispose();
    // One /ready and one /metrics per poll, in parallel: at most 2 requests at a time.
    assert.ok(fake.maxInFlight <= 2, `max in flight ${fake.maxInFlight}`);
    assert.ok((fake.hits['/metrics'] ?? 0) >= 4);
  });

  void test('dispose during a poll: request aborted, no callback, no timer, no socket', async () => {
    fake.mode['/metrics'] = 'hang';
    const timers = new ManualTimers();
    let calls = 0;
    const poller = new MetricsPoller(fake.address, {
      timeoutMs: 10_000,
      onMetrics: () => calls++,
      onError: () => calls++,
      setTimeout: timers.setTimeout,
      clearTimeout: timers.clearTimeout,
    });
    poller.start();
    await until(() => (fake.hits['/metrics'] ?? 0) >= 1);
    const t0 = Date.now();
    const p = poller.pollNow();
    poller.dispose();
    assert.equal(await p, undefined);
    assert.ok(Date.now() - t0 < 1000, 'aborted, not timed out');
    await sleep(20);
    assert.equal(calls, 0);
    assert.equal(timers.pending.size, 0);
    poller.start(); // no effect after dispose
    assert.equal(timers.pending.size, 0);
    await until(() => fake.sockets.size === 0);
  });

  void test('throwing callbacks do not break the poller', async () => {
    const timers = new ManualTimers();
    const errors: Error[] = [];
    const poller = new MetricsPoller(fake.address, {
      onMetrics: () => {
        throw new Error('listener bug');
      },
      onError: (e) => errors.push(e),
      setTimeout: timers.setTimeout,
      clearTimeout: timers.clearTimeout,
    });
    poller.start();
    await until(() => timers.pending.size === 1);
    assert.equal(errors[0]?.message, 'listener bug');
    assert.equal(poller.metrics?.totalRequests, 4);
    poller.dispose();
    assert.equal(timers.pending.size, 0);
  });

  void test('an unreachable address reports errors', async () => {
    const errors: Error[] = [];
    const poller = new MetricsPoller('127.0.0.1:1', { onMetrics: () => undefined, onError: (e) => errors.push(e) });
    assert.equal(await poller.pollNow(), undefined);
    assert.equal(errors.length, 1);
    poller.dispose();
  });
});

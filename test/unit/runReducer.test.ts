/**
 * The pure log → state reducer (src/core/cloudflared/runReducer.ts): cloudflared's typed events
 * (from the real parser, over real transcripts and hand-written lines) → what the run knows and
 * which effects the controller owes.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { CloudflaredLogParser, classifyFailure, type CloudflaredEvent, type LogLine } from '../../src/core/cloudflared/log';
import { INITIAL_RUN_LOG_STATE, reduceRunLog, reduceRunLogAll, type RunEffect, type RunLogState } from '../../src/core/cloudflared/runReducer';
import { TRANSCRIPTS_DIR } from '../support/proc';

const T = '2026-11-24T05:55:09Z';
const URL = 'https://words-words-words.trycloudflare.com';

/** Lines through the real parser: its events and typed lines, in order. */
function parse(lines: string[]): { events: CloudflaredEvent[]; typed: LogLine[] } {
  const parser = new CloudflaredLogParser();
  const parsed = [...parser.push(Buffer.from(lines.map((l) => `${l}\n`).join(''))), ...parser.end()];
  return { events: parsed.flatMap((p) => p.events), typed: parsed.map((p) => p.line) };
}

const banner = [
  `${T} INF +--------------------------------------------------------------------------------------------+`,
  `${T} INF |  Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):  |`,
  `${T} INF |  ${URL}                                                 |`,
  `${T} INF +--------------------------------------------------------------------------------------------+`,
];
const registered = (i: number, protocol = 'quic'): string => `${T} INF Registered tunnel connection connIndex=${i} connection=ed9f0541 event=0 ip=198.41.192.${7 + i} location=lax0${i + 1} protocol=${protocol}`;
const kinds = (effects: RunEffect[]): string[] => effects.map((e) => e.kind);

void describe('reduceRunLog', () => {
  void test('a real transcript: URL, metrics, registration, then the drop of the only connection', () => {
    const text = readFileSync(path.join(TRANSCRIPTS_DIR, '05-connected-sigterm-inflight.txt'), 'utf8');
    const stderr = text.split('\n').flatMap((l) => {
      const m = /^\[\s*[\d.]+ ERR\] ?(.*)$/.exec(l);
      return m ? [m[1] ?? ''] : [];
    });
    const { events } = parse(stderr);
    const { state, effects } = reduceRunLogAll(events, { now: 1000, protocol: 'auto' });
    assert.match(state.url ?? '', /^https:\/\/[a-z0-9-]+\.trycloudflare\.com$/);
    assert.ok(state.metricsAddress, 'the metrics address is known');
    assert.equal(state.connectedAt, 1000);
    const k = kinds(effects);
    assert.ok(k.indexOf('url-known') < k.indexOf('registered'), k.join());
    assert.equal(k.filter((x) => x === 'registered').length, 1, 'one registration in that transcript');
    // It registered over HTTP/2: nothing is learnt about QUIC.
    assert.equal(state.quic, undefined);
    // Then "Unregistered tunnel connection" for connIndex 0: the tunnel lost its only connection.
    assert.deepEqual(state.connections, []);
    assert.ok(k.includes('lost'));
  });

  void test('registration: the URL first, then a connection makes it work (settle start once per registration)', () => {
    const { events } = parse([...banner, registered(0)]);
    let s: RunLogState = INITIAL_RUN_LOG_STATE;
    const all: RunEffect[] = [];
    const changes: boolean[] = [];
    for (const ev of events) {
      const r = reduceRunLog(s, ev, { now: 5 });
      s = r.state;
      all.push(...r.effects);
      changes.push(r.changed);
    }
    assert.deepEqual(kinds(all), ['url-known', 'quic-worked', 'registered']);
    assert.deepEqual(changes, [true, true]);
    assert.equal(s.url, URL);
    assert.deepEqual(s.connections, [{ connIndex: 0, location: 'lax01', ip: '198.41.192.7', protocol: 'quic' }]);
    assert.equal(s.quic, 'worked');
  });

  void test('a registration logged before the URL counts when the URL comes', () => {
    const { events } = parse([registered(0, 'http2'), ...banner]);
    const [first, second] = events;
    assert.ok(first && second, 'two events parsed');
    const r1 = reduceRunLog(INITIAL_RUN_LOG_STATE, first, { now: 1 });
    assert.deepEqual(kinds(r1.effects), [], 'no URL yet: nothing to settle');
    assert.equal(r1.changed, false);
    const r2 = reduceRunLog(r1.state, second, { now: 2 });
    assert.deepEqual(kinds(r2.effects), ['url-known', 'registered']);
    assert.equal(r2.state.connectedAt, 1);
  });

  void test('the first banner wins; a repeated event returns the same state object', () => {
    const { state } = reduceRunLogAll(parse(banner).events, { now: 1 });
    const again = reduceRunLog(state, { kind: 'url', url: 'https://other.trycloudflare.com' }, { now: 2 });
    assert.equal(again.state, state);
    assert.deepEqual(again.effects, []);
    const m = reduceRunLog(state, { kind: 'metrics', address: '127.0.0.1:20241' }, { now: 3 });
    assert.equal(reduceRunLog(m.state, { kind: 'metrics', address: '127.0.0.1:20241' }, { now: 4 }).state, m.state);
  });

  void test('reconnect: losing one of two connections is not "lost"; losing both is, once; a registration clears it', () => {
    const { state: live } = reduceRunLogAll(parse([...banner, registered(0), registered(1)]).events, { now: 10 });
    assert.equal(live.connections.length, 2);
    const one = reduceRunLog(live, { kind: 'down', reason: 'unregistered', connIndex: 1 }, { now: 11 });
    assert.deepEqual(kinds(one.effects), []);
    assert.equal(one.changed, false);
    assert.deepEqual(one.state.connections.map((c) => c.connIndex), [0]);
    const both = reduceRunLog(one.state, { kind: 'down', reason: 'serve-error', connIndex: 0, error: 'connection with edge closed' }, { now: 12 });
    assert.deepEqual(both.effects, [{ kind: 'lost', reason: 'connection with edge closed' }]);
    assert.equal(both.changed, true);
    assert.equal(both.state.lostReason, 'connection with edge closed');
    // cloudflared then logs "Retrying…" (no connIndex) and failed dials: still the first reason, no second "lost".
    const retry = reduceRunLog(both.state, { kind: 'down', reason: 'retrying', retryIn: '1s' }, { now: 13 });
    assert.equal(retry.state, both.state);
    const dial = reduceRunLog(retry.state, { kind: 'down', reason: 'dial-failed', connIndex: 0, error: 'timeout' }, { now: 14 });
    assert.deepEqual(kinds(dial.effects), [], 'a failed dial after a registration does not blame QUIC');
    assert.equal(dial.state.lostReason, 'connection with edge closed');
    const back = reduceRunLog(dial.state, { kind: 'registered', connIndex: 0, protocol: 'quic', location: 'fra02' }, { now: 15 });
    assert.equal(back.state.lostReason, undefined);
    assert.equal(back.state.connectedAt, 10, 'uptime counts from the first registration');
    assert.deepEqual(kinds(back.effects), ['registered']);
  });

  void test('a dial error before any registration is QUIC failing, once; not with --protocol http2', () => {
    const down: CloudflaredEvent = { kind: 'down', reason: 'dial-failed', connIndex: 0, error: 'failed to dial to edge with quic' };
    const { state, effects } = reduceRunLogAll([...parse(banner).events, down, down], { now: 1, protocol: 'auto' });
    assert.deepEqual(kinds(effects), ['url-known', 'quic-failed']);
    assert.equal(state.quic, 'failed');
    assert.deepEqual(kinds(reduceRunLogAll([down], { now: 1, protocol: 'http2' }).effects), []);
  });

  void test('dial error → registration → unrelated ERR → exit 1: the run connected, so neither the reducer nor the classifier says "use HTTP/2"', () => {
    const lines = [
      ...banner,
      `${T} ERR Failed to dial a quic connection error="failed to dial to edge with quic: timeout: no recent network activity" connIndex=0 event=0 ip=198.41.192.7`,
      `${T} INF Retrying connection in up to 1s connIndex=0 event=0 ip=198.41.192.7`,
      registered(0),
      `${T} ERR Request failed error="Incoming request ended abruptly: context canceled" connIndex=0 dest=https://x/mcp event=0 ip=198.41.192.7 type=http`,
      `${T} ERR something unrelated went wrong error="disk full"`,
    ];
    const { events, typed } = parse(lines);
    const { state, effects } = reduceRunLogAll(events, { now: 7, protocol: 'auto' });
    // QUIC was noted failing at the dial error, then worked: the run knows it connected over QUIC.
    assert.deepEqual(kinds(effects), ['url-known', 'quic-failed', 'quic-worked', 'registered']);
    assert.equal(state.quic, 'worked');
    assert.equal(state.connectedAt, 7);
    // The controller classifies the exit from the typed lines: the dial error was overcome.
    const cause = classifyFailure(typed, 1);
    assert.notEqual(cause.kind, 'edge-unreachable');
    assert.equal(cause.kind, 'unknown');
    assert.match(cause.detail ?? '', /disk full/);
    // The same lines without the registration are the edge being unreachable.
    assert.equal(classifyFailure(typed.filter((l) => !/^Registered/.test(l.message)), 1).kind, 'edge-unreachable');
  });

  void test('shutdown, fatal and version events change nothing', () => {
    for (const ev of [{ kind: 'shutdown', signal: 'SIGTERM' }, { kind: 'fatal', message: 'x' }, { kind: 'version', version: '2023.7.3' }] as const) {
      const r = reduceRunLog(INITIAL_RUN_LOG_STATE, ev, { now: 1 });
      assert.equal(r.state, INITIAL_RUN_LOG_STATE);
      assert.equal(r.changed, false);
    }
  });
});

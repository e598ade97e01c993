import { describe, test } from 'node:test';
import { readTranscript, transcriptNames } from '../support/transcripts';
import assert from 'node:assert/strict';
import {
  CloudflaredLogParser,
  classifyFailure,
  compareVersions,
  parseLogLine,
  parseVersionOutput,
  type CloudflaredEvent,
  type FailureKind,
  type LogLine,
  type ParsedLine,
} from '../../src/core/cloudflared/log';

// ---------------------------------------------------------------------------------------------
// Transcripts of the real cloudflared (a copy lives in test/fixtures: the suite stands on its own)

function feedAll(lines: readonly string[], opts?: ConstructorParameters<typeof CloudflaredLogParser>[0]): ParsedLine[] {
  const p = new CloudflaredLogParser(opts);
  const out = p.push(lines.map((l) => `${l}\n`).join(''));
  out.push(...p.end());
  return out;
}

function eventsOf(parsed: readonly ParsedLine[]): CloudflaredEvent[] {
  return parsed.flatMap((p) => p.events);
}

function ofKind<K extends CloudflaredEvent['kind']>(events: readonly CloudflaredEvent[], kind: K): Extract<CloudflaredEvent, { kind: K }>[] {
  return events.filter((e): e is Extract<CloudflaredEvent, { kind: K }> => e.kind === kind);
}

/** Deterministic 24-bit pseudo-random numbers. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s >>> 8;
  };
}

const URL_05 = 'https://seasonal-example-words-here.trycloudflare.com';

interface Expectation {
  url?: string;
  metrics?: string;
  connection?: string;
  version?: string;
  shutdown?: string;
  fatal?: RegExp;
  failure?: FailureKind;
  down?: string[];
}

/** What each transcript must yield. A transcript added later gets the generic checks only. */
const EXPECT: Record<string, Expectation> = {
  '02-offline-quick-tunnel.txt': { fatal: /^failed to request quick Tunnel: Post "https:\/\/api\.trycloudflare\.com\/tunnel": dial tcp/, failure: 'no-network' },
  '05-connected-sigterm-inflight.txt': {
    url: URL_05,
    metrics: '127.0.0.1:40285',
    connection: 'ed9f0541-5685-4976-83cc-2c162ce8926c',
    version: '2023.7.3',
    shutdown: 'terminated',
    down: ['unregistered', 'retrying'],
  },
  '06-connected-sigterm-graceperiod8s.txt': {
    url: URL_05,
    metrics: '127.0.0.1:42877',
    connection: 'ee31d839-d383-4a45-ab33-97cc738807aa',
    version: '2023.7.3',
    shutdown: 'terminated',
    down: ['unregistered'],
  },
  '09-quickservice-hangs-timeout.txt': { fatal: /^failed to request quick Tunnel: .*context deadline exceeded/, failure: 'service-unavailable' },
  '11-quickservice-429-html.txt': { fatal: /^failed to unmarshal quick Tunnel: invalid character '<'/, failure: 'service-unavailable' },
  '12-logfile-loglevel-debug.txt': {
    url: URL_05,
    metrics: '127.0.0.1:34733',
    connection: '45d655b1-a6ad-4011-bde6-8b7ee663975b',
    version: '2023.7.3',
    shutdown: 'terminated',
    down: ['unregistered'],
  },
  '12-logfile.json': {
    url: URL_05,
    metrics: '127.0.0.1:34733',
    connection: '45d655b1-a6ad-4011-bde6-8b7ee663975b',
    version: '2023.7.3',
    shutdown: 'terminated',
    down: ['unregistered'],
  },
  '13-config-yml-in-home-hijacks-url.txt': {
    url: URL_05,
    metrics: '127.0.0.1:44605',
    connection: '4a288416-1beb-4e88-8860-67e2fcf79585',
    version: '2023.7.3',
    shutdown: 'terminated',
    down: ['unregistered', 'retrying'],
  },
  '14-config-yml-bypassed-with-isolated-config.txt': {
    url: URL_05,
    metrics: '127.0.0.1:32811',
    connection: 'a4c30c92-a413-4ad2-891b-1c7b5819e8a4',
    version: '2023.7.3',
    shutdown: 'terminated',
    down: ['unregistered', 'retrying'],
  },
  '15-config-devnull.txt': {
    url: URL_05,
    metrics: '127.0.0.1:42257',
    connection: '9466edb3-e321-4584-901a-a0b2ca792418',
    version: '2023.7.3',
    shutdown: 'terminated',
    down: ['unregistered', 'retrying'],
  },
  '18-origin-down.txt': {
    url: URL_05,
    metrics: '127.0.0.1:44973',
    connection: '7d23aaaa-4db7-4729-85cb-d0bbba83611c',
    version: '2023.7.3',
    shutdown: 'terminated',
    down: ['unregistered', 'retrying'],
  },
};

const transcriptFiles = transcriptNames();

void describe('transcripts', () => {
  void test('the expected transcripts are present', () => {
    for (const name of Object.keys(EXPECT)) assert.ok(transcriptFiles.includes(name), `missing ${name}`);
  });

  for (const name of transcriptFiles) {
    void test(name, () => {
      const t = readTranscript(name);
      const parsed = feedAll(t.stderr);
      assert.equal(parsed.length, t.stderr.length, 'one parsed line per stderr line');
      const events = eventsOf(parsed);
      const urls = ofKind(events, 'url');

      // Generic: any URL is a quick-tunnel hostname, never the API host.
      for (const u of urls) {
        assert.match(u.url, /^https:\/\/[-a-z0-9]+\.trycloudflare\.com$/);
        assert.doesNotMatch(u.url, /api\.trycloudflare\.com/);
      }
      assert.ok(urls.length <= 1);
      for (const p of parsed) {
        assert.doesNotMatch(p.line.message, /\x1b/);
        if (!p.line.bare) assert.match(p.line.time ?? '', /^\d{4}-\d{2}-\d{2}T/);
      }

      const ex = EXPECT[name];
      if (!ex) return;

      if (ex.url) assert.deepEqual(urls, [{ kind: 'url', url: ex.url }]);
      else assert.equal(urls.length, 0, 'no url event');

      const metrics = ofKind(events, 'metrics');
      if (ex.metrics) assert.deepEqual(metrics, [{ kind: 'metrics', address: ex.metrics }]);
      else assert.equal(metrics.length, 0);

      const registered = ofKind(events, 'registered');
      if (ex.connection) {
        assert.deepEqual(registered, [
          { kind: 'registered', connIndex: 0, connection: ex.connection, location: 'lax01', ip: '127.0.0.1', protocol: 'http2' },
        ]);
      } else assert.equal(registered.length, 0);

      const versions = ofKind(events, 'version');
      if (ex.version) assert.deepEqual(versions, [{ kind: 'version', version: ex.version }]);

      const shutdown = ofKind(events, 'shutdown');
      if (ex.shutdown) assert.deepEqual(shutdown, [{ kind: 'shutdown', signal: ex.shutdown }]);
      else assert.equal(shutdown.length, 0);

      const fatal = ofKind(events, 'fatal');
      if (ex.fatal) {
        assert.equal(fatal.length, 1);
        assert.match(fatal[0]?.message ?? '', ex.fatal);
        const fatalLine = parsed.find((p) => p.events.some((e) => e.kind === 'fatal'));
        assert.equal(fatalLine?.line.bare, true);
        assert.equal(fatalLine?.line.level, 'error');
      } else assert.equal(fatal.length, 0);

      if (ex.down) {
        assert.deepEqual(
          ofKind(events, 'down').map((d) => d.reason),
          ex.down,
        );
        for (const d of ofKind(events, 'down')) assert.equal(d.connIndex, 0);
      }

      if (ex.failure) {
        assert.equal(t.exitCode, 1);
        const c = classifyFailure(t.stderr, t.exitCode);
        assert.equal(c.kind, ex.failure);
        assert.match(c.detail ?? '', /quick Tunnel/);
      }
    });
  }

  void test('01-version.txt: parseVersionOutput', () => {
    const t = readTranscript('01-version.txt');
    const versions = t.stdout.filter((l) => l.startsWith('cloudflared version')).map((l) => parseVersionOutput(l));
    assert.deepEqual(versions, ['2023.7.3', '2023.7.3', '2023.7.3']);
    assert.equal(parseVersionOutput(t.stdout.join('\n')), '2023.7.3');
    // The same line read from a stream yields a version event.
    assert.deepEqual(ofKind(eventsOf(feedAll(t.stdout)), 'version')[0], { kind: 'version', version: '2023.7.3' });
  });

  void test('19-unknown-flag.txt: Incorrect Usage on stdout, exit 0', () => {
    const t = readTranscript('19-unknown-flag.txt');
    const parsed = feedAll(t.stdout);
    const fatal = ofKind(eventsOf(parsed), 'fatal');
    assert.ok(fatal.length >= 2);
    assert.match(fatal[0]?.message ?? '', /^Incorrect Usage\. flag provided but not defined: -no-prechecks/);
    assert.equal(ofKind(eventsOf(parsed), 'url').length, 0);
    const usage = t.stdout.slice(0, t.stdout.findIndex((l) => l.startsWith('NAME:')) + 2);
    assert.equal(classifyFailure(usage, 0).kind, 'incorrect-usage');
  });

  void test('17 help text: bare info lines, no events', () => {
    const t = readTranscript('17-tunnel-help-2023.7.3.txt');
    const parsed = feedAll(t.stdout);
    assert.ok(parsed.length > 50);
    assert.deepEqual(eventsOf(parsed), []);
    for (const p of parsed) {
      assert.equal(p.line.bare, true);
      assert.equal(p.line.level, 'info');
    }
  });

  void test('12: JSON logfile and console transcript give the same events', () => {
    const text = eventsOf(feedAll(readTranscript('12-logfile-loglevel-debug.txt').stderr));
    const json = eventsOf(feedAll(readTranscript('12-logfile.json').stderr, { json: true }));
    assert.deepEqual(json, text);
  });

  void test('02/09/11 never yield a url', () => {
    for (const n of ['02-offline-quick-tunnel.txt', '09-quickservice-hangs-timeout.txt', '11-quickservice-429-html.txt']) {
      assert.equal(ofKind(eventsOf(feedAll(readTranscript(n).stderr)), 'url').length, 0, n);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Line format

void describe('parseLogLine', () => {
  void test('message ends before the first trailing key=value field', () => {
    const l = parseLogLine('2026-11-24T05:55:29Z INF Retrying connection in up to 1s connIndex=0 event=0 ip=127.0.0.1');
    assert.equal(l.message, 'Retrying connection in up to 1s');
    assert.deepEqual(l.fields, { connIndex: '0', event: '0', ip: '127.0.0.1' });
    assert.equal(l.level, 'info');
    assert.equal(l.time, '2026-11-24T05:55:29Z');
    assert.equal(l.bare, false);
  });

  void test('Settings map line has no fields', () => {
    const raw =
      '2026-11-24T05:55:09Z INF Settings: map[cacert:edge-ca.pem edge:[127.0.0.1:7844] ha-connections:1 metrics:127.0.0.1:0 url:http://127.0.0.1:18081?a=b]';
    const l = parseLogLine(raw);
    assert.equal(l.message, raw.slice(25));
    assert.deepEqual(l.fields, {});
  });

  void test('empty message with quoted error (two spaces)', () => {
    const l = parseLogLine(
      '2026-11-24T05:55:29Z ERR  error="Incoming request ended abruptly: context canceled" cfRay=18eae57c708ddb51-LAX event=1 originService=http://127.0.0.1:18081',
    );
    assert.equal(l.level, 'error');
    assert.equal(l.message, '');
    assert.deepEqual(l.fields, {
      error: 'Incoming request ended abruptly: context canceled',
      cfRay: '18eae57c708ddb51-LAX',
      event: '1',
      originService: 'http://127.0.0.1:18081',
    });
  });

  void test('quoted values with escaped quotes; Go-only escapes', () => {
    const l = parseLogLine(
      '2026-11-24T05:55:09Z ERR update check failed error="Get \\"https://update.argotunnel.com?arch=amd64\\": dial tcp: no such host"',
    );
    assert.equal(l.message, 'update check failed');
    assert.equal(l.fields.error, 'Get "https://update.argotunnel.com?arch=amd64": dial tcp: no such host');
    const g = parseLogLine('2026-11-24T05:55:09Z WRN odd bytes data="a\\x41\\vb\\U0001F600"');
    assert.equal(g.fields.data, 'aA\vb😀');
  });

  void test('an = inside the message followed by words is not a field', () => {
    const l = parseLogLine('2026-11-24T05:55:09Z INF set a=b then more words');
    assert.equal(l.message, 'set a=b then more words');
    assert.deepEqual(l.fields, {});
  });

  void test('all levels', () => {
    const map: Record<string, LogLine['level']> = { TRC: 'trace', DBG: 'debug', INF: 'info', WRN: 'warn', ERR: 'error', FTL: 'fatal', PNC: 'panic' };
    for (const [abbr, level] of Object.entries(map)) assert.equal(parseLogLine(`2026-11-24T05:55:09Z ${abbr} x`).level, level);
  });

  void test('ANSI colours (zerolog ConsoleWriter on a TTY) and CRLF', () => {
    const raw =
      '\x1b[90m2026-11-24T05:55:09Z\x1b[0m \x1b[32mINF\x1b[0m Registered tunnel connection \x1b[36mconnIndex=\x1b[0m0 \x1b[36mlocation=\x1b[0mlax01\r';
    const l = parseLogLine(raw);
    assert.equal(l.message, 'Registered tunnel connection');
    assert.deepEqual(l.fields, { connIndex: '0', location: 'lax01' });
  });

  void test('bare lines: fatal-looking ones are errors', () => {
    assert.equal(parseLogLine('failed to request quick Tunnel: Post "x": EOF').level, 'error');
    assert.equal(parseLogLine('Could not lookup srv records on _v2-origintunneld._tcp.argotunnel.com: x').level, 'error');
    assert.equal(parseLogLine('initial tunnel connection failed: x').level, 'error');
    const help = parseLogLine('   --url value   Connect to the local webserver at URL.');
    assert.equal(help.level, 'info');
    assert.equal(help.bare, true);
  });

  void test('JSON lines: level, time, message, other fields as strings', () => {
    const l = parseLogLine('{"level":"info","event":0,"connIndex":0,"ok":true,"obj":{"a":1},"nil":null,"time":"2026-11-24T05:59:22Z","message":"Registered tunnel connection"}');
    assert.equal(l.level, 'info');
    assert.equal(l.time, '2026-11-24T05:59:22Z');
    assert.equal(l.message, 'Registered tunnel connection');
    assert.deepEqual(l.fields, { event: '0', connIndex: '0', ok: 'true', obj: '{"a":1}', nil: 'null' });
    assert.equal(l.bare, false);
  });

  void test('invalid JSON falls back to text parsing', () => {
    const l = parseLogLine('{"level":"info","message":"Starting metrics server on 127.0.0.1:1/metrics"');
    assert.equal(l.bare, true);
    assert.ok(l.message.startsWith('{"level"'));
    // A JSON value that is not a log object is a bare line too.
    assert.equal(parseLogLine('{"hostname":"x.trycloudflare.com"}').bare, true);
    assert.equal(parseLogLine('[1,2,3]').bare, true);
    // In JSON mode the bare fatal lines stay text.
    const events = eventsOf(feedAll(['{"level":"info","message":"Requesting new quick Tunnel on trycloudflare.com..."', 'failed to unmarshal quick Tunnel: x'], { json: true }));
    assert.deepEqual(events, [{ kind: 'fatal', message: 'failed to unmarshal quick Tunnel: x' }]);
  });
});

// ---------------------------------------------------------------------------------------------
// Events and the URL box

const T = '2026-11-24T05:55:09Z';
const inf = (msg: string): string => `${T} INF ${msg}`;
function box(lines: string[]): string[] {
  const width = Math.max(...lines.map((l) => l.length)) + 4;
  const border = `+${'-'.repeat(width)}+`;
  return [inf(border), ...lines.map((l) => inf(`|  ${l.padEnd(width - 4)}  |`)), inf(border)];
}
const BANNER = 'Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):';
const TUNNEL = 'https://alpha-beta-gamma-delta.trycloudflare.com';

void describe('URL', () => {
  void test('box after the banner', () => {
    const lines = [inf('Requesting new quick Tunnel on trycloudflare.com...'), ...box([BANNER, TUNNEL])];
    assert.deepEqual(ofKind(eventsOf(feedAll(lines)), 'url'), [{ kind: 'url', url: TUNNEL }]);
  });

  void test('≥2026.5 pre-checks box with https://api.trycloudflare.com comes first', () => {
    const pre = box([
      'CONNECTIVITY PRE-CHECKS',
      'Check                | Target                         | Result',
      'Quick Tunnel API     | https://api.trycloudflare.com  | OK',
      'Edge DNS (SRV)       | region1.v2.argotunnel.com      | OK',
      'Edge UDP 7844 (quic) | https://198.41.192.7:7844      | OK',
    ]);
    const lines = [inf('Requesting new quick Tunnel on trycloudflare.com...'), ...pre, ...box([BANNER, TUNNEL])];
    assert.deepEqual(ofKind(eventsOf(feedAll(lines)), 'url'), [{ kind: 'url', url: TUNNEL }]);
    // Pre-checks alone: no URL.
    assert.equal(ofKind(eventsOf(feedAll(pre)), 'url').length, 0);
  });

  void test('error lines mentioning https://api.trycloudflare.com are never the URL', () => {
    const lines = [
      inf('Requesting new quick Tunnel on trycloudflare.com...'),
      `${T} ERR Error unmarshaling QuickTunnel response: <html>Too many</html> error="invalid character '<' looking for beginning of value" status_code="429 Too Many Requests"`,
      'failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel": dial tcp: lookup api.trycloudflare.com: no such host',
      `${T} ERR |  https://api.trycloudflare.com  |`,
    ];
    assert.equal(ofKind(eventsOf(feedAll(lines)), 'url').length, 0);
    // Even inside the banner box the API host is refused.
    const weird = [inf('+---+'), inf(`|  ${BANNER}  |`), inf('|  https://api.trycloudflare.com/tunnel  |'), inf(`|  ${TUNNEL}  |`), inf('+---+')];
    assert.deepEqual(ofKind(eventsOf(feedAll(weird)), 'url'), [{ kind: 'url', url: TUNNEL }]);
  });

  void test('a line from another goroutine inside the box is skipped', () => {
    const [top = '', head = '', url = '', bottom = ''] = box([BANNER, TUNNEL]);
    const lines = [top, head, `${T} WRN see https://developers.cloudflare.com/x error="y"`, url, bottom];
    assert.deepEqual(ofKind(eventsOf(feedAll(lines)), 'url'), [{ kind: 'url', url: TUNNEL }]);
  });

  void test('a URL after the box closed is not taken', () => {
    const lines = [...box([BANNER]), inf(`|  ${TUNNEL}  |`)];
    assert.equal(ofKind(eventsOf(feedAll(lines)), 'url').length, 0);
  });

  void test('older wording "Your free tunnel has started!"', () => {
    const lines = box(['Your free tunnel has started! Visit it:', TUNNEL]);
    assert.deepEqual(ofKind(eventsOf(feedAll(lines)), 'url'), [{ kind: 'url', url: TUNNEL }]);
  });

  void test('JSON mode (--output json): box lines are messages', () => {
    const lines = box([BANNER, TUNNEL]).map((l) => JSON.stringify({ time: T, message: parseLogLine(l).message, level: 'info' }));
    const p = new CloudflaredLogParser({ json: true });
    const events = eventsOf([...p.push(lines.join('\n') + '\n'), ...p.end()]);
    assert.deepEqual(events, [{ kind: 'url', url: TUNNEL }]);
    assert.equal(p.url, TUNNEL);
  });

  void test('only the first URL per parser', () => {
    const lines = [...box([BANNER, TUNNEL]), ...box([BANNER, 'https://other-words-here-too.trycloudflare.com'])];
    assert.deepEqual(ofKind(eventsOf(feedAll(lines)), 'url'), [{ kind: 'url', url: TUNNEL }]);
  });
});

void describe('events', () => {
  void test('registered: lowercase and uppercase location, old wording', () => {
    const ev = eventsOf(
      feedAll([
        inf('Registered tunnel connection connIndex=2 connection=abc event=0 ip=198.41.192.57 location=iad15 protocol=quic'),
        inf('Registered tunnel connection connIndex=1 connection=def ip=198.41.200.13 location=LAX protocol=http2'),
        inf('Connection 0d0e7b4a-1111-2222-3333-444455556666 registered connIndex=3 ip=1.2.3.4 location=SJC'),
      ]),
    );
    assert.deepEqual(ev, [
      { kind: 'registered', connIndex: 2, connection: 'abc', location: 'iad15', ip: '198.41.192.57', protocol: 'quic' },
      { kind: 'registered', connIndex: 1, connection: 'def', location: 'LAX', ip: '198.41.200.13', protocol: 'http2' },
      { kind: 'registered', connIndex: 3, connection: '0d0e7b4a-1111-2222-3333-444455556666', location: 'SJC', ip: '1.2.3.4' },
    ]);
  });

  void test('down reasons', () => {
    const ev = eventsOf(
      feedAll([
        inf('Unregistered tunnel connection connIndex=0 event=0 ip=1.2.3.4'),
        `${T} ERR Connection terminated error="EOF" connIndex=0`,
        inf('Lost connection with the edge connIndex=1'),
        `${T} ERR Serve tunnel error error="timeout: no recent network activity" connIndex=0 event=0 ip=1.2.3.4`,
        inf('Retrying connection in up to 2s connIndex=0 event=0 ip=1.2.3.4'),
        `${T} ERR Failed to dial a quic connection error="failed to dial to edge with quic: timeout: no recent network activity" connIndex=0 event=0 ip=1.2.3.4`,
        `${T} ERR Failed to create new quic connection error="failed to dial to edge with quic: timeout" connIndex=0 event=0 ip=1.2.3.4`,
        `${T} ERR no more connections active and exiting`,
      ]),
    );
    assert.deepEqual(ev, [
      { kind: 'down', reason: 'unregistered', connIndex: 0 },
      { kind: 'down', reason: 'terminated', connIndex: 0, error: 'EOF' },
      { kind: 'down', reason: 'lost', connIndex: 1 },
      { kind: 'down', reason: 'serve-error', connIndex: 0, error: 'timeout: no recent network activity' },
      { kind: 'down', reason: 'retrying', connIndex: 0, retryIn: '2s' },
      { kind: 'down', reason: 'dial-failed', connIndex: 0, error: 'failed to dial to edge with quic: timeout: no recent network activity' },
      { kind: 'down', reason: 'dial-failed', connIndex: 0, error: 'failed to dial to edge with quic: timeout' },
    ]);
  });

  void test('shutdown, metrics (IPv6), version with checksum, FTL', () => {
    const ev = eventsOf(
      feedAll([
        inf('Initiating graceful shutdown due to signal interrupt ...'),
        inf('Starting metrics server on [::]:20241/metrics'),
        inf('Version 2026.1.2 (Checksum 3f1a0c)'),
        inf('Version DEV'),
        `${T} FTL Failed to start error="listen tcp: address in use"`,
        'cloudflared version 2026.8.2 (built 2026-08-20-10:54 UTC)',
      ]),
    );
    assert.deepEqual(ev, [
      { kind: 'shutdown', signal: 'interrupt' },
      { kind: 'metrics', address: '[::]:20241' },
      { kind: 'version', version: '2026.1.2' },
      { kind: 'version', version: 'DEV' },
      { kind: 'fatal', message: 'Failed to start: listen tcp: address in use' },
      { kind: 'version', version: '2026.8.2' },
    ]);
  });

  void test('bare fatal lines', () => {
    const lines = [
      'failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel": context deadline exceeded',
      "failed to unmarshal quick Tunnel: invalid character '<' looking for beginning of value",
      'failed to parse quick Tunnel ID: invalid UUID length: 0',
      'Could not lookup srv records on _v2-origintunneld._tcp.argotunnel.com: lookup: no such host',
      'Incorrect Usage. flag provided but not defined: -output',
      'initial tunnel connection failed: there are no free edge addresses left to resolve to',
    ];
    assert.deepEqual(
      eventsOf(feedAll(lines)),
      lines.map((message) => ({ kind: 'fatal', message })),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Streaming

void describe('streaming', () => {
  const t05 = readTranscript('05-connected-sigterm-inflight.txt');
  // Add multi-byte characters so that splits fall inside UTF-8 sequences.
  const text = [...t05.stderr.slice(0, 10), inf('Café ✓ 😀 naïve connIndex=0'), ...t05.stderr.slice(10)].join('\n') + '\n';
  const bytes = Buffer.from(text, 'utf8');
  const whole = (() => {
    const p = new CloudflaredLogParser();
    return [...p.push(bytes), ...p.end()];
  })();

  void test('the reference run has the expected events', () => {
    const kinds = eventsOf(whole).map((e) => e.kind);
    assert.deepEqual(kinds, ['url', 'version', 'metrics', 'registered', 'shutdown', 'down', 'down']);
    assert.ok(whole.some((p) => p.line.message === 'Café ✓ 😀 naïve'));
  });

  void test('split at every byte position gives the same lines and events', () => {
    for (let i = 0; i <= bytes.length; i++) {
      const p = new CloudflaredLogParser();
      const got = [...p.push(bytes.subarray(0, i)), ...p.push(bytes.subarray(i)), ...p.end()];
      assert.deepEqual(got, whole, `split at ${i}`);
    }
  });

  void test('one byte at a time, and random three-way splits', () => {
    const p = new CloudflaredLogParser();
    const got: ParsedLine[] = [];
    for (let i = 0; i < bytes.length; i++) got.push(...p.push(bytes.subarray(i, i + 1)));
    got.push(...p.end());
    assert.deepEqual(got, whole);

    const next = lcg(42);
    const rnd = (n: number): number => next() % n;
    for (let k = 0; k < 200; k++) {
      const a = rnd(bytes.length);
      const b = a + rnd(bytes.length - a);
      const q = new CloudflaredLogParser();
      const r = [...q.push(bytes.subarray(0, a)), ...q.push(bytes.subarray(a, b)), ...q.push(bytes.subarray(b)), ...q.end()];
      assert.deepEqual(r, whole);
    }
  });

  void test('string chunks and CRLF', () => {
    const p = new CloudflaredLogParser();
    const crlf = text.replace(/\n/g, '\r\n');
    const got: ParsedLine[] = [];
    for (let i = 0; i < crlf.length; i += 7) got.push(...p.push(crlf.slice(i, i + 7)));
    got.push(...p.end());
    assert.deepEqual(got, whole);
  });

  void test('mixed Buffer and string chunks', () => {
    const p = new CloudflaredLogParser();
    const half = Buffer.from('2026-11-24T05:55:09Z INF caf\u00e9', 'utf8');
    // Stop inside the two-byte "é"; the string chunk after it flushes the decoder first.
    const out = [...p.push(half.subarray(0, half.length - 1)), ...p.push(' tail\n'), ...p.end()];
    assert.equal(out.length, 1);
    assert.equal(out[0]?.line.message, 'caf\ufffd tail');
  });

  void test('end() flushes a trailing line without newline', () => {
    const p = new CloudflaredLogParser();
    assert.deepEqual(p.push('failed to request quick Tunnel: x'), []);
    const out = p.end();
    assert.equal(out.length, 1);
    assert.deepEqual(out[0]?.events, [{ kind: 'fatal', message: 'failed to request quick Tunnel: x' }]);
    assert.deepEqual(p.end(), []);
  });

  void test('a 10 MB line without newline stays within maxLineLength', () => {
    const max = 16 * 1024;
    const p = new CloudflaredLogParser({ maxLineLength: max });
    const chunk = Buffer.alloc(64 * 1024, 'a');
    const heapBefore = process.memoryUsage().heapUsed;
    let maxBuffered = 0;
    for (let sent = 0; sent < 10 * 1024 * 1024; sent += chunk.length) {
      assert.deepEqual(p.push(chunk), []);
      maxBuffered = Math.max(maxBuffered, p.bufferedLength);
    }
    assert.ok(maxBuffered <= max, `buffered ${maxBuffered}`);
    // Heap growth is bounded by the cap, not by the 10 MB sent (loose: GC timing varies).
    assert.ok(process.memoryUsage().heapUsed - heapBefore < 8 * 1024 * 1024);
    const out = p.push('\n' + inf('Starting metrics server on 127.0.0.1:5/metrics') + '\n');
    assert.equal(out.length, 2);
    assert.equal(out[0]?.line.truncated, true);
    assert.equal(out[0]?.line.message.length, max);
    assert.equal(out[1]?.line.truncated, undefined);
    assert.deepEqual(out[1]?.events, [{ kind: 'metrics', address: '127.0.0.1:5' }]);
    assert.equal(p.bufferedLength, 0);
  });

  void test('a 10 MB string chunk with the line end inside', () => {
    const p = new CloudflaredLogParser({ maxLineLength: 1000 });
    const big = 'x'.repeat(10 * 1024 * 1024) + '\nnext';
    const out = p.push(big);
    assert.equal(out.length, 1);
    assert.equal(out[0]?.line.truncated, true);
    assert.equal(out[0]?.line.message.length, 1000);
    assert.equal(p.bufferedLength, 4);
    const rest = p.end();
    assert.equal(rest[0]?.line.message, 'next');
    // end() of a truncated partial line
    p.push('y'.repeat(5000));
    assert.equal(p.bufferedLength, 1000);
    const tail = p.end();
    assert.equal(tail[0]?.line.truncated, true);
  });

  void test('binary noise does not throw and yields no URL', () => {
    const next = lcg(7);
    const noise = Buffer.alloc(256 * 1024);
    for (let i = 0; i < noise.length; i++) noise[i] = next() >>> 16;
    const p = new CloudflaredLogParser({ maxLineLength: 4096 });
    const out: ParsedLine[] = [];
    for (let i = 0; i < noise.length; i += 999) out.push(...p.push(noise.subarray(i, i + 999)));
    out.push(...p.end());
    assert.ok(out.length > 100);
    for (const l of out) {
      assert.ok(l.line.message.length <= 4096);
      assert.doesNotMatch(l.line.message, /[\x00-\x08\x0b-\x1f\x7f]/);
    }
    assert.equal(ofKind(eventsOf(out), 'url').length, 0);
    // A real line right after the noise still parses.
    const after = p.push('\n' + inf('Starting metrics server on 127.0.0.1:9/metrics') + '\n');
    assert.deepEqual(after.at(-1)?.events, [{ kind: 'metrics', address: '127.0.0.1:9' }]);
  });

  void test('JSON lines built from a text transcript give the same events', () => {
    const textEvents = eventsOf(feedAll(t05.stderr));
    const json = t05.stderr.map((raw) => {
      const l = parseLogLine(raw);
      if (l.bare) return raw;
      const level = { trace: 'trace', debug: 'debug', info: 'info', warn: 'warn', error: 'error', fatal: 'fatal', panic: 'panic' }[l.level];
      // Key order is not guaranteed with --output json: put message first, level last.
      const fields: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(l.fields)) fields[k] = /^\d+$/.test(v) ? Number(v) : v;
      return JSON.stringify({ message: l.message, ...fields, time: l.time, level });
    });
    assert.deepEqual(eventsOf(feedAll(json, { json: true })), textEvents);
  });
});

// ---------------------------------------------------------------------------------------------
// Versions and failures

void describe('versions', () => {
  void test('parseVersionOutput', () => {
    assert.equal(parseVersionOutput('cloudflared version 2026.8.2 (built 2026-08-20-10:54 UTC)\n'), '2026.8.2');
    assert.equal(parseVersionOutput('cloudflared version 2025.11.0 (built 2025-11-07T16:30 UTC)\r\n'), '2025.11.0');
    assert.equal(parseVersionOutput('cloudflared version DEV (built unknown)'), 'DEV');
    assert.equal(parseVersionOutput('2026.8.2\n'), '2026.8.2');
    assert.equal(parseVersionOutput('WARNING: something\ncloudflared version 2024.1.5 (built 2024-01-22-1234 UTC)'), '2024.1.5');
    assert.equal(parseVersionOutput('not cloudflared'), undefined);
    assert.equal(parseVersionOutput(''), undefined);
  });

  void test('compareVersions', () => {
    assert.equal(compareVersions('2025.6.1', '2025.6.1'), 0);
    assert.ok(compareVersions('2025.6.0', '2025.6.1') < 0);
    assert.ok(compareVersions('2025.10.0', '2025.6.1') > 0);
    assert.ok(compareVersions('2026.5.0', '2025.12.3') > 0);
    assert.ok(compareVersions('2023.7.3', '2025.6.1') < 0);
    assert.ok(compareVersions('DEV', '2099.1.1') > 0);
    assert.ok(compareVersions('2099.1.1', 'DEV') < 0);
    assert.equal(compareVersions('DEV', 'DEV'), 0);
    assert.equal(compareVersions('2025.6', '2025.6.0'), 0);
  });
});

void describe('classifyFailure', () => {
  const cases: [string, string[], number | null, FailureKind][] = [
    ['no network', ['failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel": dial tcp: lookup api.trycloudflare.com on 1.1.1.1:53: no such host'], 1, 'no-network'],
    ['unreachable net', ['failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel": dial tcp 104.16.1.1:443: connect: network is unreachable'], 1, 'no-network'],
    ['timeout', ['failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'], 1, 'service-unavailable'],
    ['html', ["failed to unmarshal quick Tunnel: invalid character '<' looking for beginning of value"], 1, 'service-unavailable'],
    ['no id', ['failed to parse quick Tunnel ID: invalid UUID length: 0'], 1, 'service-unavailable'],
    [
      '429 (≥2024.10)',
      [
        `${T} ERR Error unmarshaling QuickTunnel response: <html>rate limited</html> error="invalid character '<' looking for beginning of value" status_code="429 Too Many Requests"`,
        "failed to unmarshal quick Tunnel: invalid character '<' looking for beginning of value",
      ],
      1,
      'rate-limited',
    ],
    [
      'quic blocked',
      [
        `${T} ERR Failed to dial a quic connection error="failed to dial to edge with quic: timeout: no recent network activity" connIndex=0 event=0 ip=198.41.192.7`,
        inf('Retrying connection in up to 16s connIndex=0 event=0 ip=198.41.192.7'),
        `${T} ERR Initiating shutdown error="initial tunnel connection failed: failed to dial to edge with quic"`,
        'initial tunnel connection failed: failed to dial to edge with quic: timeout: no recent network activity',
      ],
      1,
      'edge-unreachable',
    ],
    [
      'srv',
      [
        `${T} ERR Initiating shutdown error="Could not lookup srv records on _v2-origintunneld._tcp.argotunnel.com: lookup: no such host"`,
        'Could not lookup srv records on _v2-origintunneld._tcp.argotunnel.com: lookup: no such host',
      ],
      1,
      'edge-unreachable',
    ],
    ['usage', ['Incorrect Usage. flag provided but not defined: -output', '', 'NAME:', '   cloudflared tunnel - Use Cloudflare Tunnel'], 0, 'incorrect-usage'],
    ['updated', [inf('Tunnel server stopped')], 11, 'updated'],
    ['update failed', [], 10, 'updated'],
    ['yaml', [`${T} ERR error parsing YAML in config file at /home/u/.cloudflared/config.yml error="yaml: line 3: mapping values are not allowed"`, 'yaml: line 3: mapping values are not allowed in this context'], 1, 'config'],
    ['nothing', [inf('Thank you for trying Cloudflare Tunnel.')], null, 'unknown'],
  ];
  for (const [name, lines, code, kind] of cases) {
    void test(name, () => {
      const r = classifyFailure(lines, code);
      assert.equal(r.kind, kind);
      if (kind !== 'unknown') assert.ok(r.detail);
    });
  }

  void test('rate-limited detail is the status', () => {
    assert.equal(classifyFailure(cases[5]?.[1] ?? [], 1).detail, '429 Too Many Requests');
  });

  void test('an INF line about the configuration path is not a config failure', () => {
    const r = classifyFailure(
      [inf('Cannot determine default configuration path. No file [config.yml config.yaml] in [~/.cloudflared]'), `${T} ERR Configuration file /dev/null was empty`],
      1,
    );
    assert.equal(r.kind, 'unknown');
  });

  void test('edge discovery errors followed by a registration are not the cause', () => {
    const lines = readTranscript('05-connected-sigterm-inflight.txt').stderr;
    assert.equal(classifyFailure(lines, 1).kind, 'unknown');
    const cut = lines.slice(0, lines.findIndex((l) => l.includes('Starting metrics server')));
    assert.equal(classifyFailure(cut, 1).kind, 'edge-unreachable');
  });

  void test('unknown keeps the last bare error line as detail', () => {
    const r = classifyFailure([inf('x'), 'error: something odd happened'], 1);
    assert.deepEqual(r, { kind: 'unknown', detail: 'error: something odd happened' });
  });
});

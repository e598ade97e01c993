/**
 * Differential test of the fake cloudflared: for every transcript of the real cloudflared in
 * test/fixtures/cloudflared-transcripts, the parser (src/core/cloudflared/log.ts) must see the same
 * sequence of typed events in the transcript as in the fake's output for the same scenario (the
 * fake impersonating the same version, 2023.7.3, with the same arguments, signals and requests).
 * What differs by nature is normalized: the metrics port, connection ids, the resolver address.
 * A transcript without a case here fails, so a new transcript needs its scenario.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { CloudflaredLogParser, type CloudflaredEvent } from '../../src/core/cloudflared/log';
import { SCENARIOS, isScenario, type ScenarioName } from '../fixtures/fake-cloudflared/scenarios';
import { FAKE_CLOUDFLARED } from '../support/proc';
import { closeServer, freePort } from '../support/origins';
import { readTranscript, transcriptNames } from '../support/transcripts';
import { sleep, waitFor } from '../support/wait';

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-differential-'));
after(() => fs.rmSync(TMP, { recursive: true, force: true }));

/** The hostname the transcripts' stand-in quick-tunnel service handed out. */
const HOSTNAME = 'seasonal-example-words-here.trycloudflare.com';

/** What the test does to a running fake, as the recording did to the real binary. */
type Action =
  /** Wait for the edge connection, then SIGTERM. */
  | 'sigterm-when-registered'
  /** As above, with a request in flight to an origin that never answers. */
  | 'sigterm-with-request-in-flight'
  /** As above, after a request to an origin that is down. */
  | 'request-dead-origin-then-sigterm';

interface Run {
  /** argv after `cloudflared`; `{origin}`, `{tmp}` are replaced. */
  args: string[];
  /** The fake's scenario (FAKE_CLOUDFLARED_SCENARIO) and other settings. */
  env?: Record<string, string>;
  action?: Action;
  /** A `~/.cloudflared/config.yml` for the run (transcript 13). */
  homeConfig?: string[];
  /** Also parse this file the run writes (--logfile), for a transcript of it. */
  logFile?: string;
}

interface Case {
  runs: Run[];
  /** The transcript is a file another run writes (12-logfile.json): compare that file. */
  fromLogFileOf?: string;
}

const QUICK = ['tunnel', '--url', '{origin}', '--metrics', '127.0.0.1:0', '--no-autoupdate', '--quick-service', 'http://127.0.0.1:18080', '--edge', '127.0.0.1:7844', '--protocol', 'http2', '--cacert', '{tmp}/edge-ca.pem'];

/** Each transcript's scenario of the fake. */
const CASES: Record<string, Case> = {
  '01-version.txt': { runs: [{ args: ['--version'] }, { args: ['-v'] }, { args: ['version'] }, { args: ['version', '--short'] }] },
  '02-offline-quick-tunnel.txt': { runs: [{ args: ['tunnel', '--url', 'http://127.0.0.1:9', '--metrics', '127.0.0.1:0', '--no-autoupdate'], env: { FAKE_CLOUDFLARED_SCENARIO: 'no-network' } }] },
  '05-connected-sigterm-inflight.txt': { runs: [{ args: QUICK, action: 'sigterm-with-request-in-flight' }] },
  // The stand-in edge of 06 and 12 kept the connection open on SIGTERM: cloudflared waited out the grace period.
  '06-connected-sigterm-graceperiod8s.txt': { runs: [{ args: [...QUICK, '--grace-period', '8s'], env: { FAKE_CLOUDFLARED_EDGE_HOLDS_SHUTDOWN: '1' }, action: 'sigterm-when-registered' }] },
  '09-quickservice-hangs-timeout.txt': {
    runs: [{ args: ['tunnel', '--url', '{origin}', '--metrics', '127.0.0.1:0', '--no-autoupdate', '--quick-service', 'http://127.0.0.1:18082'], env: { FAKE_CLOUDFLARED_SCENARIO: 'service-timeout', FAKE_CLOUDFLARED_SERVICE_TIMEOUT_MS: '50' } }],
  },
  '11-quickservice-429-html.txt': { runs: [{ args: ['tunnel', '--url', '{origin}', '--no-autoupdate', '--quick-service', 'http://127.0.0.1:18083'], env: { FAKE_CLOUDFLARED_SCENARIO: 'rate-limited' } }] },
  '12-logfile-loglevel-debug.txt': { runs: [{ args: [...QUICK, '--loglevel', 'debug', '--logfile', '{tmp}/12-logfile.json'], env: { FAKE_CLOUDFLARED_EDGE_HOLDS_SHUTDOWN: '1', TUNNEL_GRACE_PERIOD: '1s' }, action: 'sigterm-when-registered', logFile: '12-logfile.json' }] },
  '12-logfile.json': { runs: [], fromLogFileOf: '12-logfile-loglevel-debug.txt' },
  '13-config-yml-in-home-hijacks-url.txt': {
    runs: [
      {
        args: QUICK,
        action: 'sigterm-when-registered',
        homeConfig: ['tunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef', 'credentials-file: /nonexistent/6ff42ae2-765d-4adf-8112-31c55c1551ef.json', 'ingress:', '  - hostname: app.example.com', '    service: {origin}', '  - service: http_status:404'],
      },
    ],
  },
  '14-config-yml-bypassed-with-isolated-config.txt': { runs: [{ args: [...QUICK, '--config', '{tmp}/empty-config.yml'], action: 'sigterm-when-registered' }] },
  '15-config-devnull.txt': { runs: [{ args: [...QUICK, '--config', '/dev/null'], action: 'sigterm-when-registered' }] },
  '17-tunnel-help-2023.7.3.txt': { runs: [{ args: ['tunnel', '--help'] }] },
  '18-origin-down.txt': { runs: [{ args: [...QUICK.slice(0, 2), '{dead}', ...QUICK.slice(3)], action: 'request-dead-origin-then-sigterm' }] },
  '19-unknown-flag.txt': { runs: [{ args: ['tunnel', '--url', 'http://127.0.0.1:9', '--no-prechecks', '--no-autoupdate'] }, { args: ['tunnel', '--output', 'json', '--url', 'http://127.0.0.1:9'] }] },
};

function scenarioOf(run: Run): ScenarioName {
  const name = run.env?.['FAKE_CLOUDFLARED_SCENARIO'] ?? 'ok';
  assert.ok(isScenario(name), `unknown scenario ${name}`);
  return name;
}

/** Events with what differs between two runs by nature replaced by placeholders. */
function normalize(events: readonly CloudflaredEvent[]): unknown[] {
  return events.map((e) => {
    switch (e.kind) {
      case 'metrics':
        return { ...e, address: e.address.replace(/:\d+$/, ':PORT') };
      case 'registered':
        // The recordings used a loopback stand-in edge (127.0.0.1); the fake names Cloudflare's edge IPs.
        return { ...e, connection: e.connection === undefined ? undefined : 'CONNECTION-ID', ip: e.ip === undefined ? undefined : 'EDGE-IP' };
      case 'fatal':
        // The transcripts hide the resolver's address (RESOLVER:53).
        return { ...e, message: e.message.replace(/ on [\d.]+:53:/, ' on RESOLVER:53:') };
      default:
        return e;
    }
  });
}

function eventsOf(lines: readonly string[]): CloudflaredEvent[] {
  const p = new CloudflaredLogParser();
  return [...p.push(lines.map((l) => `${l}\n`).join('')), ...p.end()].flatMap((x) => x.events);
}

interface Output {
  lines: string[];
  logFile?: string[];
}

/** An origin that answers "hello", `/slow` after a second (a request in flight at SIGTERM). */
async function startOrigin(): Promise<{ url: string; server: http.Server }> {
  const server = http.createServer((req, res) => {
    if (req.url === '/slow') {
      setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('slow hello'), 1000);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('hello');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, server };
}

function publicGet(port: number, p: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: p, headers: { host: HOSTNAME }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    req.on('error', () => resolve(0));
  });
}

async function runFake(run: Run, dir: string): Promise<Output> {
  const origin = await startOrigin();
  const dead = `http://127.0.0.1:${await freePort()}`;
  try {
    const home = path.join(dir, 'home');
    const stateDir = path.join(dir, 'state');
    fs.mkdirSync(stateDir, { recursive: true });
    fs.mkdirSync(path.join(home, '.cloudflared'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'edge-ca.pem'), '');
    fs.writeFileSync(path.join(dir, 'empty-config.yml'), '{}\n');
    const fill = (s: string): string => s.replace('{origin}', origin.url).replace('{dead}', dead).replace('{tmp}', dir);
    if (run.homeConfig) fs.writeFileSync(path.join(home, '.cloudflared', 'config.yml'), `${run.homeConfig.map(fill).join('\n')}\n`);
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!/^(TUNNEL_|NO_AUTOUPDATE$|FAKE_CLOUDFLARED_)/i.test(k)) env[k] = v;
    Object.assign(env, { HOME: home, FAKE_CLOUDFLARED_NODE: process.execPath, FAKE_CLOUDFLARED_VERSION: '2023.7.3', FAKE_CLOUDFLARED_HOSTNAME: HOSTNAME, FAKE_CLOUDFLARED_STATE_DIR: stateDir, FAKE_CLOUDFLARED_URL_DELAY_MS: '5', FAKE_CLOUDFLARED_REGISTER_DELAY_MS: '20' }, run.env);
    const child = spawn(FAKE_CLOUDFLARED, run.args.map(fill), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
    const exited = new Promise<void>((r) => child.once('close', () => r()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    try {
      if (run.action) {
        await waitFor(() => out.includes('Registered tunnel connection'), 10_000, `the fake's registration; output:\n${out}`);
        const state = JSON.parse(fs.readFileSync(path.join(stateDir, `${child.pid}.json`), 'utf8')) as { publicPort: number };
        if (run.action === 'request-dead-origin-then-sigterm') {
          assert.equal(await publicGet(state.publicPort, '/'), 502, 'a request to the dead origin: 502');
          await waitFor(() => /ERR .*(connection refused|Request failed)/.test(out), 5000, `the origin error line; output:\n${out}`);
        }
        if (run.action === 'sigterm-with-request-in-flight') {
          const inFlight = publicGet(state.publicPort, '/slow');
          await sleep(200); // the request reaches the origin
          child.kill('SIGTERM');
          assert.equal(await inFlight, 200, 'the request in flight at SIGTERM is answered');
        } else {
          child.kill('SIGTERM');
        }
      }
      await exited;
    } finally {
      clearTimeout(killer);
    }
    const lines = out.split('\n').filter((l) => l.trim() !== '');
    const logFile = run.logFile ? fs.readFileSync(path.join(dir, run.logFile), 'utf8').split('\n').filter((l) => l.trim() !== '') : undefined;
    return logFile ? { lines, logFile } : { lines };
  } finally {
    await closeServer(origin.server);
  }
}

const fakeRuns = new Map<string, Promise<Output[]>>();
function fakeOutput(name: string): Promise<Output[]> {
  const c = CASES[name];
  assert.ok(c, `no scenario of the fake for transcript ${name}: add one to CASES in ${path.basename(__filename)}`);
  let p = fakeRuns.get(name);
  if (!p) {
    p = (async () => {
      const outs: Output[] = [];
      for (const [i, run] of c.runs.entries()) outs.push(await runFake(run, fs.mkdtempSync(path.join(TMP, `${name}-${i}-`))));
      return outs;
    })();
    fakeRuns.set(name, p);
  }
  return p;
}

void describe('the fake cloudflared against the real one: same parser events per transcript', { timeout: 60_000 }, () => {
  const names = transcriptNames();

  void test('there are transcripts, and each has a scenario of the fake that lists it', () => {
    assert.ok(names.length >= 10, `transcripts in test/fixtures/cloudflared-transcripts: ${names.join(', ')}`);
    for (const n of Object.keys(CASES)) assert.ok(names.includes(n), `CASES names ${n}, which is not a transcript`);
    const listed = new Set<string>();
    for (const [scenario, info] of Object.entries(SCENARIOS)) {
      for (const t of info.transcripts ?? []) {
        assert.ok(names.includes(t), `scenario ${scenario} (test/fixtures/fake-cloudflared/scenarios.ts) lists ${t}, which is not a transcript`);
        listed.add(t);
      }
    }
    for (const n of names) {
      const c = CASES[n];
      assert.ok(c, `no scenario of the fake for transcript ${n}: add one to CASES`);
      const runs = c.fromLogFileOf ? (CASES[c.fromLogFileOf]?.runs ?? []) : c.runs;
      for (const run of runs) {
        const scenario = scenarioOf(run);
        assert.ok(
          SCENARIOS[scenario].transcripts?.includes(n),
          `transcript ${n} runs scenario ${scenario}, whose entry in test/fixtures/fake-cloudflared/scenarios.ts does not list it`,
        );
      }
      assert.ok(listed.has(n), `no scenario in test/fixtures/fake-cloudflared/scenarios.ts lists transcript ${n}`);
    }
  });

  for (const name of names) {
    void test(name, async () => {
      const t = readTranscript(name);
      const expected = normalize(eventsOf([...t.stderr, ...t.stdout]));
      const c = CASES[name];
      assert.ok(c, `no scenario for ${name}`);
      let lines: string[];
      if (c.fromLogFileOf) {
        const [first] = await fakeOutput(c.fromLogFileOf);
        assert.ok(first?.logFile, `the run of ${c.fromLogFileOf} wrote its --logfile`);
        lines = first.logFile;
      } else {
        lines = (await fakeOutput(name)).flatMap((o) => o.lines);
      }
      const actual = normalize(eventsOf(lines));
      assert.deepEqual(actual, expected, `events of the fake (left) vs the transcript (right) for ${name}; the fake's output:\n${lines.join('\n')}`);
    });
  }
});

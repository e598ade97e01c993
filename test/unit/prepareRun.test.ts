/**
 * Run preparation (src/core/supervisor/prepareRun.ts): one AbortSignal cancels it at any step,
 * and a cancelled or failed preparation leaves nothing — the gate closed (its port refuses), the
 * config file gone. With a real gate and a real state folder.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { startAccessGate, type AccessGate } from '../../src/core/gate/accessGate';
import { TunnelController } from '../../src/core/tunnelController';
import { RunPreparationAborted, RunPreparationError, prepareRun, type RunPreparationSteps } from '../../src/core/supervisor/prepareRun';

const work = mkdtempSync(path.join(tmpdir(), 'prepare-run-'));
after(() => rmSync(work, { recursive: true, force: true }));
let n = 0;

/** Resolves on a connection, rejects on a refusal: whether anything listens on the gate's port. */
function listens(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const s = connect(Number(port), hostname, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

type StepName = 'find' | 'token' | 'gate' | 'config' | 'protocol';

/** Steps over a real gate and folder; `hold` makes one step wait until the test lets it go. */
function harness(hold?: StepName) {
  const stateDir = path.join(work, `state-${n++}`);
  const gates: AccessGate[] = [];
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let entered!: () => void;
  const reached = new Promise<void>((r) => (entered = r));
  const wait = async (name: StepName): Promise<void> => {
    if (name !== hold) return;
    entered();
    await held;
  };
  const steps: RunPreparationSteps = {
    findCloudflared: async () => {
      await wait('find');
      return { path: '/x/cloudflared', version: '2023.7.3' };
    },
    named: () => ({ hostname: 'mcp.example.com', token: async () => (await wait('token'), 'tok') }),
    startGate: async () => {
      const g = await startAccessGate({ origin: { host: '127.0.0.1', port: 9 }, routeId: 'a', mode: 'secret', log: () => undefined });
      gates.push(g);
      await wait('gate');
      return g;
    },
    stateDir,
    runId: '0123456789ab',
    protocol: () => undefined,
    quicBlockedAt: async () => (await wait('protocol'), undefined),
    log: () => undefined,
  };
  return { steps, stateDir, gates, release, reached };
}

void describe('prepareRun', () => {
  void test('all steps: the binary, the named URL, a live gate, the empty config file, the protocol', async () => {
    const h = harness();
    const p = await prepareRun(h.steps, new AbortController().signal);
    assert.equal(p.named?.url, 'https://mcp.example.com');
    assert.equal(p.protocol, 'auto');
    assert.ok(existsSync(p.configPath));
    assert.ok(await listens(p.gate.url));
    await p.gate.close();
  });

  // The config write has no await to hold: a stop during it is seen right after it, as the
  // "protocol" case shows (the file exists when the stop comes, and is gone after).
  for (const step of ['find', 'token', 'gate', 'protocol'] as const) {
    void test(`a stop during "${step}" leaves nothing: no gate listening, no config file`, async () => {
      const h = harness(step);
      const ac = new AbortController();
      const prepared = prepareRun(h.steps, ac.signal);
      await h.reached;
      const config = path.join(h.stateDir, 'config-0123456789ab.yml');
      // Held in the protocol step, the config file is already written: the abort must remove it.
      assert.equal(existsSync(config), step === 'protocol');
      ac.abort();
      h.release();
      await assert.rejects(prepared, RunPreparationAborted);
      for (const g of h.gates) assert.equal(await listens(g.url), false, 'the gate was closed');
      assert.equal(h.gates.length, step === 'gate' || step === 'protocol' ? 1 : 0, 'a gate is made only from its step on');
      assert.deepEqual(existsSync(h.stateDir) ? readdirSync(h.stateDir).filter((f) => f.endsWith('.yml') || f.endsWith('.json')) : [], []);
    });
  }

  void test('already aborted: nothing runs', async () => {
    const h = harness();
    let found = false;
    h.steps.findCloudflared = () => ((found = true), Promise.resolve({ path: '/x', version: '1' }));
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(prepareRun(h.steps, ac.signal), RunPreparationAborted);
    assert.equal(found, false);
  });

  void test('failures name their cause and undo the earlier steps', async () => {
    const noToken = harness();
    noToken.steps.named = () => ({ hostname: 'mcp.example.com', token: () => Promise.resolve('  ') });
    await assert.rejects(prepareRun(noToken.steps, new AbortController().signal), (e: unknown) => e instanceof RunPreparationError && e.error.code === 'no-token' && /Set Tunnel Token/.test(e.message));
    assert.equal(noToken.gates.length, 0);

    const noHost = harness();
    noHost.steps.named = () => ({ hostname: 'https:///', token: () => Promise.resolve('tok') });
    await assert.rejects(prepareRun(noHost.steps, new AbortController().signal), (e: unknown) => e instanceof RunPreparationError && /no hostname/.test(e.message));

    const badDir = harness();
    writeFileSync(path.join(work, 'a-file'), 'x');
    badDir.steps.stateDir = path.join(work, 'a-file', 'state');
    await assert.rejects(prepareRun(badDir.steps, new AbortController().signal), (e: unknown) => e instanceof RunPreparationError && e.error.code === 'spawn-failed' && /config file/.test(e.message));
    assert.equal(badDir.gates.length, 1);
    assert.equal(await listens(badDir.gates[0]?.url ?? ''), false, 'the gate is closed after the config step failed');

    const gateFails = harness();
    gateFails.steps.startGate = () => Promise.reject(new Error('EADDRINUSE'));
    await assert.rejects(prepareRun(gateFails.steps, new AbortController().signal), (e: unknown) => e instanceof RunPreparationError && /access gate could not start: EADDRINUSE/.test(e.message));
  });

  void test('QUIC remembered blocked: HTTP/2, and when', async () => {
    const h = harness();
    h.steps.quicBlockedAt = () => Promise.resolve(12345);
    const p = await prepareRun(h.steps, new AbortController().signal);
    assert.equal(p.protocol, 'http2');
    assert.equal(p.http2Since, 12345);
    await p.gate.close();
    const set = harness();
    set.steps.protocol = () => 'quic';
    set.steps.quicBlockedAt = () => Promise.resolve(12345);
    const q = await prepareRun(set.steps, new AbortController().signal);
    assert.equal(q.protocol, 'quic', 'a protocol the user set is kept');
    await q.gate.close();
  });
});

void describe('TunnelController: a stop during its preparation', () => {
  for (const step of ['find', 'token'] as const) {
    void test(`a stop while it waits on "${step}": stopped, nothing spawned, the state folder empty`, async () => {
      const stateDir = path.join(work, `ctl-${n++}`);
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let spawns = 0;
      const c = new TunnelController({
        stateDir,
        findCloudflared: async () => {
          if (step === 'find') await held;
          return { path: '/x/cloudflared', version: '2023.7.3' };
        },
        named: { hostname: 'mcp.example.com', token: async () => (step === 'token' && (await held), 'tok') },
        spawn: () => {
          spawns++;
          throw new Error('must not spawn');
        },
        metricsIntervalMs: 0,
      });
      const started = c.start({ host: '127.0.0.1', port: 9, path: '/mcp', access: 'secret' });
      await new Promise((r) => setTimeout(r, 20));
      const stopped = c.stop();
      release();
      await stopped;
      assert.equal((await started).status, 'stopped');
      assert.equal(c.state.status, 'stopped');
      assert.equal(spawns, 0);
      assert.equal(c.accessStats, undefined, 'no gate');
      assert.deepEqual(existsSync(stateDir) ? readdirSync(stateDir).filter((f) => /^(run|config)-/.test(f)) : [], []);
      c.dispose();
    });
  }
});

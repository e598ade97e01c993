/**
 * Several shares on one tunnel, against the fake cloudflared: one process for all of them, each
 * share reachable only with its own secret, rotated and stopped alone; the last one stopped stops
 * the tunnel. Plus the registry on its own.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { ShareRegistry, probeOrigin, shareKey, type ShareOrigin } from '../../src/core/shares/shares';
import { TunnelController } from '../../src/core/tunnelController';
import { TunnelBusyError } from '../../src/core/model/tunnelState';
import { freePort, get, startStrictOrigin, type Origin } from '../support/origins';
import { fakeRunOptions } from '../support/fakeRuns';
import { publicPath, readFakeState, waitFor, waitGone } from '../support/proc';

let work: string;
let a: Origin;
let b: Origin;
const controllers: TunnelController[] = [];

function make(): TunnelController {
  const c = new TunnelController({ ...fakeRunOptions(work, controllers.length, { FAKE_CLOUDFLARED_SCENARIO: 'ok' }), metricsIntervalMs: 0 });
  controllers.push(c);
  return c;
}

const t = (o: Origin, access?: 'secret' | 'open') => ({ host: 'localhost', port: o.port, path: '/mcp', ...(access ? { access } : {}) });

describe('shares on one tunnel (fake cloudflared)', { concurrency: false }, () => {
  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'mcpt-shares-'));
    a = await startStrictOrigin();
    b = await startStrictOrigin();
  });
  afterEach(async () => {
    await Promise.all(controllers.splice(0).map((c) => c.shutdown(3000)));
  });
  after(async () => {
    await a.close();
    await b.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('two origins at once: one cloudflared; each reachable only with its own secret; rotate one, stop one, then the last stops the tunnel', async () => {
    const c = make();
    assert.equal((await c.start(t(a))).status, 'active');
    const pid = c.snapshot().pid!;
    const s2 = await c.start(t(b));
    assert.equal(s2.status, 'active');
    assert.equal(c.snapshot().pid, pid, 'no second cloudflared');
    const shares = c.listShares();
    assert.equal(shares.length, 2);
    const [sa, sb] = shares;
    assert.ok(sa && sb);
    assert.equal(sa.name, `localhost:${a.port}/mcp`);
    assert.equal(sa.mcp_url, c.snapshot().mcp_url, 'the primary share is what tunnel://url describes');
    assert.notEqual(sa.mcp_url, sb.mcp_url);
    assert.equal(c.findShare(t(b))?.id, sb.id);
    const fake = await waitFor(() => readFakeState(work, pid), 3000, 'fake state');
    const countA = a.hosts.length;
    const countB = b.hosts.length;
    assert.equal((await get(fake.publicPort, publicPath(sa.mcp_url))).status, 200);
    assert.equal((await get(fake.publicPort, publicPath(sb.mcp_url))).status, 200);
    assert.deepEqual([a.hosts.length - countA, b.hosts.length - countB], [1, 1], 'each secret reached its own origin');
    assert.equal((await get(fake.publicPort, '/mcp')).status, 401);
    // Rotate B: its old URL is refused, A's still works.
    const next = c.rotateSecret(sb.id);
    assert.ok(next);
    assert.equal((await get(fake.publicPort, publicPath(sb.mcp_url))).status, 401);
    assert.equal((await get(fake.publicPort, publicPath(sa.mcp_url))).status, 200);
    const sbNew = c.listShares().find((x) => x.id === sb.id)!;
    assert.equal((await get(fake.publicPort, publicPath(sbNew.mcp_url))).status, 200);
    // Stop A: it is refused, B goes on, the tunnel stays (B is now the primary).
    assert.equal(await c.stopShare(sa.id), true);
    assert.equal((await get(fake.publicPort, publicPath(sa.mcp_url))).status, 401);
    assert.equal((await get(fake.publicPort, publicPath(sbNew.mcp_url))).status, 200);
    assert.equal(c.snapshot().pid, pid);
    assert.equal(c.snapshot().mcp_url, sbNew.mcp_url);
    assert.deepEqual(c.listShares().map((x) => x.id), [sb.id]);
    const counted = c.listShares()[0];
    assert.ok(counted, 'one share left');
    assert.equal(counted.requests, 3, 'B counted its three requests (the refused one is no one\'s)');
    // The last share: the tunnel stops with it.
    assert.equal(await c.stopShare(sb.id), true);
    assert.equal(c.state.status, 'stopped');
    assert.ok(await waitGone(pid, 3000));
    assert.deepEqual(c.listShares(), []);
    assert.equal(await c.stopShare(sb.id), false);
  });

  it('an open share beside a secret one: the open one keeps the plain URL; the secret one still needs its secret', async () => {
    const c = make();
    assert.equal((await c.start(t(a, 'open'))).status, 'active');
    await c.start(t(b));
    const [open, secret] = c.listShares();
    assert.ok(secret, 'two shares');
    assert.equal(open?.mcp_url, `${c.snapshot().url}/mcp`);
    assert.equal(c.snapshot().access, 'open');
    const fake = await waitFor(() => readFakeState(work, c.snapshot().pid!), 3000, 'fake state');
    const before = b.hosts.length;
    assert.equal((await get(fake.publicPort, '/mcp')).status, 200);
    assert.equal(b.hosts.length, before, 'the plain URL reached the open share only');
    assert.equal((await get(fake.publicPort, publicPath(secret.mcp_url))).status, 200);
    assert.equal(b.hosts.length, before + 1);
  });

  it('the same target again returns its share; the same target in the other mode is refused; Stop Tunnel stops every share', async () => {
    const c = make();
    await c.start(t(a));
    await c.start(t(b));
    await c.start(t(a));
    await c.start({ host: '127.0.0.1', port: b.port, path: '/mcp', access: 'secret' }).catch(() => undefined);
    assert.equal(c.listShares().filter((x) => x.name === `localhost:${a.port}/mcp`).length, 1);
    await assert.rejects(c.start(t(a, 'open')), (err: unknown) => err instanceof TunnelBusyError && /secret mode/.test(err.message));
    const pid = c.snapshot().pid!;
    await c.stop();
    assert.ok(await waitGone(pid, 3000));
    assert.deepEqual(c.listShares(), []);
  });

  it('a stdio share (ShareOrigin): closed when its share stops, or with the tunnel; kept across restart(); the same key again reuses the share and closes the new origin', async () => {
    const closed: string[] = [];
    const origin = (key: string, o: Origin): { target: ReturnType<typeof t>; origin: ShareOrigin } => ({
      target: t(o),
      origin: { kind: 'stdio', name: `srv-${key}`, commandLine: `run ${key}`, key, detail: () => '3 tools · 0 sessions', close: () => Promise.resolve(void closed.push(key)) },
    });
    const c = make();
    const one = origin('one', a);
    assert.equal((await c.start(one.target, { origin: one.origin })).status, 'active');
    const two = origin('two', b);
    await c.start(two.target, { origin: two.origin });
    const shares = c.listShares();
    assert.deepEqual(
      shares.map((s) => [s.name, s.kind, s.command, s.detail]),
      [
        ['srv-one', 'stdio', 'run one', '3 tools · 0 sessions'],
        ['srv-two', 'stdio', 'run two', '3 tools · 0 sessions'],
      ],
    );
    // Same key, another origin object: the share is reused, the newcomer closed at once.
    const again = origin('two', b);
    await c.start(again.target, { origin: again.origin });
    assert.equal(c.listShares().length, 2);
    assert.deepEqual(closed, ['two']);
    closed.length = 0;
    // restart(): both come back with their origins running.
    assert.equal((await c.restart()).status, 'active');
    assert.deepEqual(closed, []);
    assert.deepEqual(c.listShares().map((s) => s.name), ['srv-one', 'srv-two']);
    const second = c.listShares()[1];
    assert.ok(second);
    await c.stopShare(second.id);
    assert.deepEqual(closed, ['two']);
    await c.stop();
    assert.deepEqual(closed, ['two', 'one']);
  });

  it('replaceOrigin: a stdio share runs a new definition under the same id and secret (links keep working, they reach the new origin); the old origin is closed; an unknown share closes the newcomer', async () => {
    const closed: string[] = [];
    const origin = (key: string): ShareOrigin => ({ kind: 'stdio', name: 'srv', commandLine: `run ${key}`, key, detail: () => undefined, close: () => Promise.resolve(void closed.push(key)) });
    const c = make();
    assert.equal((await c.start(t(a), { origin: origin('v1') })).status, 'active');
    const before = c.listShares()[0];
    assert.ok(before?.mcp_url);
    const fake = await waitFor(() => readFakeState(work, c.snapshot().pid!), 3000, 'fake state');
    assert.match((await get(fake.publicPort, publicPath(before.mcp_url))).body, new RegExp(`localhost:${a.port}`));

    assert.equal(c.replaceOrigin(before.id, t(b), origin('v2')), true);
    assert.deepEqual(closed, ['v1'], 'the old origin is closed');
    const after = c.listShares()[0];
    assert.equal(after?.id, before.id);
    assert.equal(after?.mcp_url, before.mcp_url, 'the same link');
    assert.equal(after?.command, 'run v2');
    assert.equal(after?.local_url, `http://localhost:${b.port}`);
    assert.match((await get(fake.publicPort, publicPath(before.mcp_url))).body, new RegExp(`localhost:${b.port}`), 'the link now reaches the new origin');

    assert.equal(c.replaceOrigin('sh-unknown', t(a), origin('v3')), false);
    assert.deepEqual(closed, ['v1', 'v3']);
    await c.stop();
    assert.deepEqual(closed, ['v1', 'v3', 'v2']);
  });

  it("originHeaders: sent to that share's server on every request, kept by restart(), never to another share", async () => {
    const seen: Array<[number, string | undefined]> = [];
    const servers = await Promise.all([0, 1].map(async (i) => {
      const srv = http.createServer((req, res) => {
        seen.push([i, req.headers['x-api-key'] as string | undefined]);
        res.writeHead(200).end('ok');
      });
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      return srv;
    }));
    try {
      const [p0, p1] = servers.map((srv) => (srv.address() as AddressInfo).port);
      assert.ok(p0 && p1, 'two servers');
      const c = make();
      await c.start({ host: '127.0.0.1', port: p0, path: '/mcp' }, { originHeaders: { 'X-Api-Key': 'k-0' } });
      await c.start({ host: '127.0.0.1', port: p1, path: '/mcp' });
      const hit = async () => {
        const fake = await waitFor(() => readFakeState(work, c.snapshot().pid!), 3000, 'fake state');
        for (const sh of c.listShares()) await get(fake.publicPort, publicPath(sh.mcp_url), { 'x-api-key': 'from-client' });
      };
      await hit();
      assert.deepEqual(seen.splice(0), [[0, 'k-0'], [1, 'from-client']]);
      assert.equal((await c.restart()).status, 'active');
      await waitFor(() => (c.listShares().length === 2 ? true : undefined), 3000, 'both shares back');
      await hit();
      assert.deepEqual(seen.splice(0), [[0, 'k-0'], [1, 'from-client']], 'kept across restart()');
    } finally {
      for (const srv of servers) {
        srv.closeAllConnections();
        srv.close();
      }
    }
  });

  it('links: a recipient link has its own MCP URL through the tunnel; revoked, it gets 401 saying so while the share goes on; an open share has none', async () => {
    const c = make();
    await c.start(t(a));
    const share = c.listShares()[0];
    assert.ok(share?.mcp_url);
    const link = c.createLink(share.id, { label: 'Alice', expiresInMs: 3_600_000 });
    assert.ok(link?.mcp_url && link.mcp_url !== share.mcp_url);
    assert.equal(link.label, 'Alice');
    assert.ok(link.expires_at && Date.parse(link.expires_at) > Date.now());
    assert.deepEqual(c.listShares()[0]?.links.map((l) => l.label), ['Alice']);
    const fake = await waitFor(() => readFakeState(work, c.snapshot().pid!), 3000, 'fake state');
    assert.equal((await get(fake.publicPort, publicPath(link.mcp_url))).status, 200);
    assert.equal(c.revokeLink(share.id, link.id), true);
    const refused = await get(fake.publicPort, publicPath(link.mcp_url));
    assert.equal(refused.status, 401);
    assert.match(refused.body, /revoked/);
    assert.equal((await get(fake.publicPort, publicPath(share.mcp_url))).status, 200, 'the share secret still works');
    assert.deepEqual(c.listShares()[0]?.links, []);
    await c.start(t(b, 'open'));
    const open = c.listShares().find((x) => x.access === 'open');
    assert.equal(open && c.createLink(open.id, { label: 'x' }), undefined);
  });

  it('a share whose local server is not running is still created, and says so', async () => {
    const c = make();
    await c.start(t(a));
    const port = await freePort();
    await c.start({ host: 'localhost', port, path: '/mcp' });
    const dead = await waitFor(() => c.listShares().find((x) => x.local_url === `http://localhost:${port}` && x.reachable === false), 3000, 'the probe');
    assert.match(dead.problem ?? '', new RegExp(`Nothing is listening on localhost:${port}`));
    assert.equal(c.listShares()[0]?.reachable, true);
    const fake = await waitFor(() => readFakeState(work, c.snapshot().pid!), 3000, 'fake state');
    const r = await get(fake.publicPort, publicPath(dead.mcp_url));
    assert.equal(r.status, 502);
    assert.equal(c.listShares().find((x) => x.id === dead.id)?.errors, 1);
  });
});

describe('ShareRegistry', () => {
  it('adds in order (the first is the primary), finds by target (sameTarget rules), removes, and says so', () => {
    const r = new ShareRegistry(() => 1000);
    let changes = 0;
    r.onDidChange(() => changes++);
    const one = r.add({ host: 'localhost', port: 1, path: '/mcp', access: 'secret' });
    const two = r.add({ host: 'localhost', port: 2, path: '/mcp', access: 'open' });
    assert.match(one.id, /^sh-[0-9a-f]{8}$/);
    assert.match(one.secret ?? '', /^[A-Za-z0-9_-]{43}$/);
    assert.equal(two.secret, undefined, 'an open share has no secret');
    assert.equal(r.primary(), one);
    assert.equal(r.find({ host: '127.0.0.1', port: 1, path: '/mcp' }), undefined, 'localhost and 127.0.0.1 are different hosts to sameTarget');
    assert.equal(r.find({ host: 'LOCALHOST', port: 1, path: '/mcp' }), one);
    assert.equal(r.conflicting({ host: 'localhost', port: 1, path: '/mcp', access: 'open' }), one);
    assert.equal(r.conflicting({ host: 'localhost', port: 1, path: '/mcp', access: 'secret' }), undefined);
    r.setHealth(one.id, { ok: false, message: 'down' });
    r.setHealth(one.id, { ok: false, message: 'down' });
    assert.equal(r.remove(one.id), one);
    assert.equal(r.primary(), two);
    assert.equal(r.remove(one.id), undefined);
    assert.equal(changes, 4, 'add, add, health (once), remove');
    assert.equal(shareKey({ host: 'LocalHost', port: 8002, path: '/mcp' }), 'localhost:8002/mcp');
  });

  it('probeOrigin: a listening port is ok; a closed one names the port and the fix', async () => {
    const o = await startStrictOrigin();
    assert.deepEqual(await probeOrigin('127.0.0.1', o.port), { ok: true });
    await o.close();
    const h = await probeOrigin('127.0.0.1', o.port);
    assert.equal(h.ok, false);
    assert.match(h.ok ? '' : h.message, new RegExp(`Nothing is listening on 127\\.0\\.0\\.1:${o.port}\\. Start your MCP server`));
  });
});

/**
 * The orphan reaper does not trust its records: real processes (a long-running Node stands in for
 * cloudflared, its argv carrying `--config <path>`), records planted by hand with a dead owner.
 * A record is acted on only if its id has the generated form and matches its file name, its PIDs
 * are positive integers and its config path is exactly `<stateDir>/config-<id>.yml`; a PID is
 * ended only if its argv holds `--config` followed by exactly that path. Bad records are removed
 * by their file name; nothing outside the state dir is ever deleted.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
// A namespace import: a missing export fails its own test, not the whole file.
import * as orphans from '../../src/core/supervisor/orphans';
import { isAlive, waitGone } from '../support/proc';

const POSIX = process.platform !== 'win32';


const spawned: ChildProcess[] = [];
let work: string;

before(() => {
  work = mkdtempSync(path.join(tmpdir(), 'orphans-test-'));
});

after(async () => {
  for (const c of spawned) if (c.pid && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const c of spawned) if (c.pid) await waitGone(c.pid, 2000);
  rmSync(work, { recursive: true, force: true });
});

/** A long-running stand-in for cloudflared whose argv (after `--`) is `args`; resolves once it runs. */
async function victim(args: string[], ignoreTerm = false): Promise<number> {
  const script = `${ignoreTerm ? "process.on('SIGTERM', () => {});" : ''} setInterval(() => {}, 1000); process.stdout.write('ready');`;
  const child = spawn(process.execPath, ['-e', script, '--', ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
  spawned.push(child);
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`victim exited early (${code})`)));
  });
  assert.ok(child.pid);
  return child.pid;
}

/** The PID of a process that ran and is gone: a dead owner. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((r) => child.once('exit', r));
  assert.ok(child.pid && !isAlive(child.pid));
  return child.pid;
}

let seq = 0;
function stateDir(): string {
  const dir = path.join(work, `case-${++seq}`, 'state');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** A record that would pass every check, for `id` and `pid`. */
function record(dir: string, id: string, pid: unknown, ownerPid: unknown): Record<string, unknown> {
  return { id, pid, configPath: path.join(dir, `config-${id}.yml`), ownerPid, startedAt: Date.now(), binary: '/usr/local/bin/cloudflared' };
}

function plant(dir: string, fileId: string, content: unknown): string {
  const file = path.join(dir, `run-${fileId}.json`);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content), { mode: 0o600 });
  return file;
}

function config(dir: string, id: string): string {
  const file = path.join(dir, `config-${id}.yml`);
  writeFileSync(file, '{}\n', { mode: 0o600 });
  return file;
}

const runFiles = (dir: string): string[] => readdirSync(dir).filter((f) => f.startsWith('run-'));
const ID_A = 'a1b2c3d4e5f6';
const ID_B = '0123456789ab';
const ID_C = 'fedcba987654';
const ID_D = '00aa11bb22cc';

function outcomes(results: orphans.ReapResult[]): Record<string, string> {
  return Object.fromEntries(results.map((r) => [r.id, r.outcome]));
}

describe('reapOrphans: kept behaviour', () => {
  it('a dead owner\'s verified cloudflared is ended (SIGTERM); its record and config are removed', async () => {
    const dir = stateDir();
    const cfg = config(dir, ID_A);
    const pid = await victim(['tunnel', '--no-autoupdate', '--config', cfg, '--metrics', '127.0.0.1:0']);
    plant(dir, ID_A, record(dir, ID_A, pid, await deadPid()));
    const logs: string[] = [];
    const reaped = await orphans.reapOrphans(dir, (m) => logs.push(m));
    assert.deepEqual(reaped.map((r) => [r.pid, r.id, r.outcome]), [[pid, ID_A, 'ended']]);
    assert.ok(await waitGone(pid, 2000));
    assert.deepEqual(readdirSync(dir), []);
    assert.match(logs.join('\n'), new RegExp(`Ended cloudflared \\(PID ${pid}\\)`));
  });

  it('one that ignores SIGTERM gets SIGKILL after 1 s', async () => {
    const dir = stateDir();
    const cfg = config(dir, ID_A);
    const pid = await victim(['tunnel', '--config', cfg], true);
    plant(dir, ID_A, record(dir, ID_A, pid, await deadPid()));
    const t0 = Date.now();
    const reaped = await orphans.reapOrphans(dir);
    assert.deepEqual(reaped.map((r) => [r.pid, r.outcome]), [[pid, 'ended']]);
    assert.ok(Date.now() - t0 >= 900, 'SIGKILL only after the 1 s grace');
    assert.ok(await waitGone(pid, 2000));
    assert.deepEqual(readdirSync(dir), []);
  });

  it('a live owner\'s record (another window) is left alone, and so is its cloudflared', async () => {
    const dir = stateDir();
    const cfg = config(dir, ID_A);
    const pid = await victim(['tunnel', '--config', cfg]);
    const owner = await victim(['owner-window']);
    plant(dir, ID_A, record(dir, ID_A, pid, owner));
    const reaped = await orphans.reapOrphans(dir);
    assert.deepEqual(reaped, []);
    assert.ok(isAlive(pid));
    assert.deepEqual(readdirSync(dir).sort(), [`config-${ID_A}.yml`, `run-${ID_A}.json`]);
  });

  it('a dead owner\'s PID that is now gone: already-gone, record removed', async () => {
    const dir = stateDir();
    config(dir, ID_A);
    plant(dir, ID_A, record(dir, ID_A, await deadPid(), await deadPid()));
    const reaped = await orphans.reapOrphans(dir);
    assert.deepEqual(outcomes(reaped), { [ID_A]: 'already-gone' });
    assert.deepEqual(readdirSync(dir), []);
  });
});

describe('reapOrphans: a record is checked before it is trusted', () => {
  it('configPath "" is rejected: the victim lives, the record is removed', async () => {
    const dir = stateDir();
    const pid = await victim(['some', 'other', 'program']);
    plant(dir, ID_A, { ...record(dir, ID_A, pid, await deadPid()), configPath: '' });
    const reaped = await orphans.reapOrphans(dir);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(isAlive(pid), 'an empty config path must not match every command line');
    assert.deepEqual(runFiles(dir), []);
    assert.notEqual(outcomes(reaped)[ID_A], 'ended');
  });

  it('a configPath naming another path (another run\'s config, the state dir, a file outside) is rejected: not killed', async () => {
    const dir = stateDir();
    const outside = path.join(work, `outside-${seq}.yml`);
    writeFileSync(outside, '{}\n');
    const cfgB = config(dir, ID_B);
    // Each victim really runs with `--config <the path its record names>`; only the path is wrong.
    const pB = await victim(['tunnel', '--config', cfgB]);
    const pOut = await victim(['tunnel', '--config', outside]);
    const pDir = await victim(['tunnel', '--config', path.join(dir, `config-${ID_D}.yml`)]);
    const dead = await deadPid();
    plant(dir, ID_A, { ...record(dir, ID_A, pB, dead), configPath: cfgB });
    plant(dir, ID_C, { ...record(dir, ID_C, pOut, dead), configPath: outside });
    plant(dir, ID_D, { ...record(dir, ID_D, pDir, dead), configPath: dir });
    const reaped = await orphans.reapOrphans(dir);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(isAlive(pB), 'another run\'s config path');
    assert.ok(isAlive(pOut), 'a config path outside the state dir');
    assert.ok(isAlive(pDir), 'the state dir itself (a prefix of the real path)');
    assert.ok(!Object.values(outcomes(reaped)).includes('ended'), JSON.stringify(reaped));
    assert.deepEqual(runFiles(dir), []);
    assert.ok(existsSync(outside) && existsSync(cfgB), 'only the record files are removed');
  });

  it('argv holding the path only as a substring (--config <path>.bak, --configx <path>, --config=<path>, reversed) is not killed', async () => {
    const dir = stateDir();
    const ids = [ID_A, ID_B, ID_C, ID_D];
    const cfg = (id: string) => config(dir, id);
    const pids = [
      await victim(['tunnel', '--config', `${cfg(ID_A)}.bak`]),
      await victim(['tunnel', '--configx', cfg(ID_B)]),
      await victim(['tunnel', `--config=${cfg(ID_C)}`]),
      await victim(['tunnel', cfg(ID_D), '--config']),
    ];
    const dead = await deadPid();
    ids.forEach((id, i) => plant(dir, id, record(dir, id, pids[i], dead)));
    const reaped = await orphans.reapOrphans(dir);
    await new Promise((r) => setTimeout(r, 200));
    pids.forEach((pid, i) => assert.ok(isAlive(pid), `victim ${ids[i]} was killed`));
    assert.deepEqual(outcomes(reaped), Object.fromEntries(ids.map((id) => [id, 'not-ours'])));
    assert.deepEqual(runFiles(dir), [], 'not-ours records are removed');
  });

  it('a crafted id in the content (../../../escape) deletes nothing outside the state dir; the record is removed', async () => {
    const dir = stateDir();
    const evil = '../../../escape';
    // What a path built from that id points at: outside the state dir.
    const canaries = [path.join(dir, `run-${evil}.json`), path.join(dir, `config-${evil}.yml`)];
    for (const c of canaries) {
      assert.ok(!c.startsWith(dir + path.sep), c);
      mkdirSync(path.dirname(c), { recursive: true });
      writeFileSync(c, 'canary');
    }
    plant(dir, ID_A, { ...record(dir, ID_A, await deadPid(), await deadPid()), id: evil, configPath: path.join(dir, `config-${evil}.yml`) });
    const reaped = await orphans.reapOrphans(dir);
    for (const c of canaries) assert.ok(existsSync(c), `${c} was deleted`);
    assert.deepEqual(runFiles(dir), [], 'the bad record is removed by its file name');
    assert.ok(!Object.values(outcomes(reaped)).includes('ended'));
  });

  it('the content id must equal the file-name id: a mismatch is not acted on, and removed by its file name', async () => {
    const dir = stateDir();
    const cfgB = config(dir, ID_B);
    const pid = await victim(['tunnel', '--config', cfgB]);
    // run-A.json claims to be run B (whose config the victim really runs with).
    plant(dir, ID_A, record(dir, ID_B, pid, await deadPid()));
    const reaped = await orphans.reapOrphans(dir);
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(isAlive(pid));
    assert.deepEqual(runFiles(dir), []);
    assert.ok(existsSync(cfgB), "run B's config is not removed on run A's say-so");
    assert.deepEqual(reaped.map((r) => [r.id, r.outcome]), [[ID_A, 'invalid']]);
  });

  it('a file-name id with uppercase or the wrong length is rejected and removed; nothing outside is deleted', async () => {
    const dir = stateDir();
    const upper = 'A1B2C3D4E5F6';
    const short = 'abc';
    const long = `${ID_A}00`;
    const canary = path.join(path.dirname(dir), 'canary.txt');
    writeFileSync(canary, 'canary');
    const pids: number[] = [];
    const dead = await deadPid();
    for (const id of [upper, short, long]) {
      const pid = await victim(['tunnel', '--config', config(dir, id)]);
      pids.push(pid);
      plant(dir, id, record(dir, id, pid, dead));
    }
    const reaped = await orphans.reapOrphans(dir);
    await new Promise((r) => setTimeout(r, 200));
    pids.forEach((pid) => assert.ok(isAlive(pid), `PID ${pid} was killed on a malformed record`));
    assert.deepEqual(runFiles(dir), [], 'malformed records are removed by their file name');
    assert.deepEqual(outcomes(reaped), { [upper]: 'invalid', [short]: 'invalid', [long]: 'invalid' });
    assert.ok(existsSync(canary));
  });

  it('pid and ownerPid must be positive integers; unparseable or non-object records are invalid too (all removed)', async () => {
    const dir = stateDir();
    const dead = await deadPid();
    const bad: Record<string, unknown> = {
      '000000000001': { ...record(dir, '000000000001', 0, dead) },
      '000000000002': { ...record(dir, '000000000002', -1, dead) },
      '000000000003': { ...record(dir, '000000000003', 1.5, dead) },
      '000000000004': { ...record(dir, '000000000004', String(dead), dead) },
      '000000000005': { ...record(dir, '000000000005', dead, 0) },
      '000000000006': { ...record(dir, '000000000006', dead, -1) },
      '000000000007': { ...record(dir, '000000000007', dead, null) },
      '000000000008': '{ not json',
      '000000000009': '[1, 2, 3]',
      '00000000000a': 'null',
    };
    for (const [id, content] of Object.entries(bad)) plant(dir, id, content);
    const reaped = await orphans.reapOrphans(dir);
    assert.deepEqual(outcomes(reaped), Object.fromEntries(Object.keys(bad).map((id) => [id, 'invalid'])));
    assert.deepEqual(runFiles(dir), []);
  });
});

describe('removeRun / writeRunRecord take only generated ids', () => {
  it('removeRun refuses a crafted id and deletes nothing outside the state dir', async () => {
    const dir = stateDir();
    const evil = '../../../escape2';
    const canaries = [path.join(dir, `run-${evil}.json`), path.join(dir, `config-${evil}.yml`)];
    for (const c of canaries) {
      mkdirSync(path.dirname(c), { recursive: true });
      writeFileSync(c, 'canary');
    }
    await assert.rejects(orphans.removeRun(dir, evil), /run id/i);
    for (const c of canaries) assert.ok(existsSync(c), `${c} was deleted`);
  });

  it('writeRunRecord writes a checked record (0600, in a 0700 dir it creates) and refuses a crafted one', async () => {
    const dir = path.join(work, `case-${++seq}`, 'new', 'state');
    const id = orphans.newRunId();
    assert.match(id, /^[0-9a-f]{12}$/);
    await orphans.writeRunRecord(dir, record(dir, id, 4242, process.pid) as unknown as orphans.RunRecord);
    assert.deepEqual(readdirSync(dir), [`run-${id}.json`]);
    if (POSIX) {
      assert.equal(statSync(dir).mode & 0o777, 0o700);
      assert.equal(statSync(path.join(dir, `run-${id}.json`)).mode & 0o777, 0o600);
    }
    await assert.rejects(orphans.writeRunRecord(dir, record(dir, '../../x', 4242, process.pid) as unknown as orphans.RunRecord), /run id/i);
    await assert.rejects(orphans.writeRunRecord(dir, { ...record(dir, ID_A, 4242, process.pid), configPath: '' } as unknown as orphans.RunRecord), /config/i);
    assert.ok(!existsSync(path.join(dir, '..', '..', 'x.json')));
    assert.deepEqual(readdirSync(dir), [`run-${id}.json`]);
  });
});

describe('ensureStateDir', { skip: !POSIX && 'POSIX modes' }, () => {
  it('creates a new (nested) dir with mode 0700', async () => {
    const dir = path.join(work, `case-${++seq}`, 'a', 'b');
    await orphans.ensureStateDir(dir);
    assert.ok(statSync(dir).isDirectory());
    assert.equal(statSync(dir).mode & 0o777, 0o700);
  });

  it('tightens an existing 0755 dir to 0700', async () => {
    const dir = path.join(work, `case-${++seq}`);
    mkdirSync(dir, { mode: 0o755 });
    assert.equal(statSync(dir).mode & 0o777, 0o755);
    await orphans.ensureStateDir(dir);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
  });

  it('refuses a symlink (naming the path) and leaves its target as it was', async () => {
    const target = path.join(work, `case-${++seq}-target`);
    mkdirSync(target, { mode: 0o755 });
    const link = path.join(work, `case-${seq}-link`);
    symlinkSync(target, link);
    await assert.rejects(orphans.ensureStateDir(link), (err: Error) => err.message.includes(link) && /symlink/i.test(err.message));
    assert.equal(statSync(target).mode & 0o777, 0o755);
    assert.ok(lstatSync(link).isSymbolicLink());
    // writeRunRecord goes through it too.
    await assert.rejects(orphans.writeRunRecord(link, record(link, ID_A, 4242, process.pid) as unknown as orphans.RunRecord), /symlink/i);
    assert.deepEqual(readdirSync(target), []);
  });

  it('refuses a path that is not a directory, naming it', async () => {
    const file = path.join(work, `case-${++seq}-file`);
    writeFileSync(file, 'x');
    await assert.rejects(orphans.ensureStateDir(file), (err: Error) => err.message.includes(file) && /not a directory/i.test(err.message));
  });
});

describe('command-line checks (the joined line of ps / PowerShell)', () => {
  it('argvHasConfig: --config then exactly the path, as separate elements', () => {
    const p = '/s/config-a1b2c3d4e5f6.yml';
    assert.equal(orphans.argvHasConfig(['cloudflared', 'tunnel', '--config', p, '--metrics', 'x'], p), true);
    assert.equal(orphans.argvHasConfig(['cloudflared', '--config', `${p}.bak`], p), false);
    assert.equal(orphans.argvHasConfig(['cloudflared', '--configx', p], p), false);
    assert.equal(orphans.argvHasConfig(['cloudflared', `--config=${p}`], p), false);
    assert.equal(orphans.argvHasConfig(['cloudflared', p, '--config'], p), false);
    assert.equal(orphans.argvHasConfig(['cloudflared', '--config', ''], ''), false);
  });

  it('commandLineHasConfig: " --config <path>" bounded by a space or the end', () => {
    const p = '/s/config-a1b2c3d4e5f6.yml';
    assert.equal(orphans.commandLineHasConfig(`/usr/bin/cloudflared tunnel --config ${p} --metrics 127.0.0.1:0`, p), true);
    assert.equal(orphans.commandLineHasConfig(`/usr/bin/cloudflared tunnel --config ${p}`, p), true);
    assert.equal(orphans.commandLineHasConfig(`cloudflared --config ${p}.bak`, p), false);
    assert.equal(orphans.commandLineHasConfig(`cloudflared --configx ${p}`, p), false);
    assert.equal(orphans.commandLineHasConfig(`cloudflared x--config ${p}`, p), false);
    assert.equal(orphans.commandLineHasConfig(`cloudflared --config ${p}.bak --config /other`, p), false);
    assert.equal(orphans.commandLineHasConfig(`cloudflared --config ${p}.bak --config ${p}`, p), true);
    assert.equal(orphans.commandLineHasConfig('cloudflared --config  x', ''), false);
    // Windows: PowerShell shows a path with spaces quoted.
    assert.equal(orphans.commandLineHasConfig('"C:\\cf.exe" tunnel --config "C:\\Users\\A B\\config-a.yml" --metrics x', 'C:\\Users\\A B\\config-a.yml'), true);
  });
});

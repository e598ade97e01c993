/**
 * A child must not outlive its host: SIGKILL the host (no chance to clean up) and the child is
 * gone within seconds, with the kernel's parent-death signal (Linux, setpriv) and with the
 * watchdog (macOS, Windows; run here too). `none` is the control: there the child survives, so
 * the test can tell the difference.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { defaultLifeline, findSetpriv } from '../../src/core/supervisor/processRunner';
import { REPO, isAlive, waitGone } from '../support/proc';

const HOST = path.join(REPO, 'test', 'fixtures', 'lifelineHost.ts');
const leftovers: number[] = [];

after(() => {
  for (const pid of leftovers) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

function startHost(lifeline: string): { host: ChildProcess; childPid: Promise<number>; out: () => string } {
  const host = spawn(process.execPath, ['--import', 'tsx', HOST, lifeline], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const childPid = new Promise<number>((resolve, reject) => {
    host.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^(\d+)\n/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    host.once('exit', () => reject(new Error(`host exited early: ${out}`)));
  });
  return { host, childPid, out: () => out };
}

/** PIDs of watchdogs (the host's node running the watchdog source) watching `pid`. */
function watchdogsOf(pid: number): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (argv.includes('-e') && argv.some((a) => a.includes('process.stdin.on')) && argv.includes(String(pid))) found.push(Number(name));
    } catch {
      // gone
    }
  }
  return found;
}

async function killHostAndCheck(lifeline: string): Promise<void> {
  const { host, childPid } = startHost(lifeline);
  const pid = await childPid;
  leftovers.push(pid);
  assert.ok(isAlive(pid), 'the child runs');
  host.kill('SIGKILL');
  assert.ok(await waitGone(pid, 5000), `with lifeline ${lifeline}, the child (PID ${pid}) outlived its SIGKILLed host by more than 5 s`);
  if (lifeline === 'watchdog') {
    const deadline = Date.now() + 3000;
    while (watchdogsOf(pid).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(watchdogsOf(pid), [], 'the watchdog exits after its work');
  }
}

describe('lifeline: a child never outlives its host', { skip: process.platform !== 'linux' ? 'reads /proc; Linux only' : false }, () => {
  it('this Linux machine uses the kernel parent-death signal (setpriv --pdeathsig)', () => {
    assert.ok(findSetpriv(), 'setpriv with --pdeathsig is part of util-linux on Debian');
    assert.equal(defaultLifeline(), 'pdeathsig');
  });

  it('pdeathsig: SIGKILL the host, the child is gone within 5 s', { timeout: 30_000 }, () => killHostAndCheck('pdeathsig'));

  it('watchdog: SIGKILL the host, the child is gone within 5 s, and so is the watchdog', { timeout: 30_000 }, () => killHostAndCheck('watchdog'));

  it('watchdog: a child that ends while the host lives takes its watchdog with it (nothing left, nothing signalled later)', { timeout: 30_000 }, async () => {
    const { host, childPid, out } = startHost('watchdog');
    const pid = await childPid;
    leftovers.push(pid);
    const deadline = Date.now() + 3000;
    while (watchdogsOf(pid).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(watchdogsOf(pid).length, 1, 'one watchdog watches the child');
    host.stdin!.write('kill-child\n');
    assert.ok(await waitGone(pid, 5000));
    const deadline2 = Date.now() + 3000;
    while (watchdogsOf(pid).length > 0 && Date.now() < deadline2) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(watchdogsOf(pid), []);
    assert.match(out(), /child exited/);
    host.kill('SIGKILL');
  });

  it('control: with no lifeline the child survives its SIGKILLed host (what the lifeline prevents)', { timeout: 30_000 }, async () => {
    const { host, childPid } = startHost('none');
    const pid = await childPid;
    leftovers.push(pid);
    host.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(isAlive(pid), 'without a lifeline the orphan lives on');
    process.kill(pid, 'SIGKILL');
  });
});

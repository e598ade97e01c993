/**
 * The platform decisions, Windows included, on any OS: how a child is spawned (a .cmd wrapper
 * through cmd.exe with its line quoted), how it is stopped (POSIX signals to the process or group;
 * Windows `taskkill /T`, then `/T /F`), and where cloudflared is looked for (PATH with PATHEXT,
 * winget, Program Files, Homebrew), against an injected file system. What these tests cannot show
 * (no Windows machine here): that taskkill and cmd.exe behave as documented; see the README.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as path from 'node:path';
import { findCloudflared, executableNames, searchLocations, wellKnownLocations, CloudflaredError, type LocateFs } from '../../src/core/cloudflared/locate';
import { intentOf, isBatchWrapper, quoteCmdArgument, spawnDecision, stopAction, stopPlan, taskkillPath } from '../../src/core/supervisor/stopPlan';
import { spawnTied } from '../../src/core/supervisor/processRunner';
import { unreadableOutcome } from '../../src/core/supervisor/orphans';

describe('stop plan', () => {
  it('POSIX: SIGTERM to the process now, SIGKILL after the grace period; the group for a group leader', () => {
    assert.deepEqual(stopPlan({ platform: 'linux', pid: 42 }, 6000), [
      { atMs: 0, intent: 'polite', action: { kind: 'signal', pid: 42, signal: 'SIGTERM', group: false } },
      { atMs: 6000, intent: 'force', action: { kind: 'signal', pid: 42, signal: 'SIGKILL', group: false } },
    ]);
    assert.deepEqual(
      stopPlan({ platform: 'darwin', pid: 7, group: true }, 0).map((s) => s.action),
      [
        { kind: 'signal', pid: 7, signal: 'SIGTERM', group: true },
        { kind: 'signal', pid: 7, signal: 'SIGKILL', group: true },
      ],
    );
  });

  it('Windows: taskkill /T (polite; a refusal forces at once), then taskkill /T /F after the grace period', () => {
    const plan = stopPlan({ platform: 'win32', pid: 4242, group: true, systemRoot: 'C:\\Windows\\' }, 5000);
    assert.deepEqual(plan, [
      { atMs: 0, intent: 'polite', action: { kind: 'exec', file: 'C:\\Windows\\System32\\taskkill.exe', args: ['/PID', '4242', '/T'], onFailure: 'force' } },
      { atMs: 5000, intent: 'force', action: { kind: 'exec', file: 'C:\\Windows\\System32\\taskkill.exe', args: ['/PID', '4242', '/T', '/F'], onFailure: 'ignore' } },
    ]);
    // No signal is ever sent on Windows (child.kill would be TerminateProcess of one process).
    assert.ok(plan.every((s) => s.action.kind === 'exec'));
    assert.equal(taskkillPath(undefined), 'taskkill.exe');
  });

  it('signal names map to intents; a bad grace period is refused with its value', () => {
    assert.equal(intentOf('SIGKILL'), 'force');
    assert.equal(intentOf(9), 'force');
    assert.equal(intentOf('SIGTERM'), 'polite');
    assert.equal(intentOf(undefined), 'polite');
    assert.deepEqual(stopAction({ platform: 'win32', pid: 1 }, intentOf('SIGINT')), { kind: 'exec', file: 'taskkill.exe', args: ['/PID', '1', '/T'], onFailure: 'force' });
    assert.throws(() => stopPlan({ platform: 'linux', pid: 1 }, -1), /non-negative.*-1/);
    assert.throws(() => stopPlan({ platform: 'linux', pid: 1 }, Number.NaN), /NaN/);
  });
});

describe('orphan reaper, where a command line cannot be read', () => {
  it('Windows / macOS: a live PID is unverified (left alone, record kept), a dead one gone; Linux: gone (/proc is the truth)', () => {
    assert.equal(unreadableOutcome('win32', () => true), 'unverified');
    assert.equal(unreadableOutcome('darwin', () => true), 'unverified');
    assert.equal(unreadableOutcome('win32', () => false), 'already-gone');
    assert.equal(unreadableOutcome('linux', () => true), 'already-gone');
  });
});

/** Windows' argv parsing (CommandLineToArgvW / the MSVC runtime), for checking quoted lines. */
function parseWindowsArgv(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let inArg = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c === '\\') {
      let n = 0;
      while (line[i] === '\\') {
        n++;
        i++;
      }
      if (line[i] === '"') {
        cur += '\\'.repeat(Math.floor(n / 2));
        if (n % 2 === 1) cur += '"';
        else quoted = !quoted;
      } else {
        cur += '\\'.repeat(n);
        i--;
      }
      inArg = true;
    } else if (c === '"') {
      quoted = !quoted;
      inArg = true;
    } else if ((c === ' ' || c === '\t') && !quoted) {
      if (inArg) out.push(cur);
      cur = '';
      inArg = false;
    } else {
      cur += c;
      inArg = true;
    }
  }
  if (inArg) out.push(cur);
  return out;
}

/** What cmd.exe does to `^`-escapes outside its own quoting: drops each caret, keeps the next character. */
function cmdUnescape(s: string): string {
  return s.replace(/\^(.)/g, '$1');
}

describe('spawn decision', () => {
  it('an .exe (and anything on POSIX) is spawned directly: no shell, no console window; detached only on POSIX', () => {
    assert.deepEqual(spawnDecision('C:\\Program Files\\cloudflared\\cloudflared.exe', ['tunnel', '--url', 'http://127.0.0.1:1'], { platform: 'win32', detached: true }), {
      file: 'C:\\Program Files\\cloudflared\\cloudflared.exe',
      args: ['tunnel', '--url', 'http://127.0.0.1:1'],
      options: { windowsHide: true, detached: false, shell: false },
    });
    assert.deepEqual(spawnDecision('/usr/bin/npx', ['-y', 'x'], { platform: 'linux', detached: true }).options, { windowsHide: true, detached: true, shell: false });
    // A .cmd is only a wrapper on Windows.
    assert.equal(spawnDecision('/opt/x.cmd', [], { platform: 'linux' }).file, '/opt/x.cmd');
    assert.equal(isBatchWrapper('C:\\x\\CLOUDFLARED.BAT', 'win32'), true);
    assert.equal(isBatchWrapper('C:\\x\\cloudflared.exe', 'win32'), false);
  });

  it('a .cmd runs as cmd.exe /d /s /c "<line>" with verbatim arguments, every argument arriving intact', () => {
    const args = ['tunnel', '--config', 'C:\\Users\\A B\\AppData\\config-1.yml', 'a&b|c>d', '50%', 'say "hi"', 'trail\\', '(x);^!', ''];
    const d = spawnDecision('C:\\Users\\A B\\bin\\cloudflared.cmd', args, { platform: 'win32', comspec: 'C:\\Windows\\system32\\cmd.exe' });
    assert.equal(d.file, 'C:\\Windows\\system32\\cmd.exe');
    assert.deepEqual(d.args.slice(0, 3), ['/d', '/s', '/c']);
    assert.deepEqual(d.options, { windowsHide: true, detached: false, shell: false, windowsVerbatimArguments: true });
    const line = d.args[3] ?? '';
    // /s: cmd strips the outer quotes and takes the rest literally, after its caret escapes.
    assert.ok(line.startsWith('"') && line.endsWith('"'));
    const inner = cmdUnescape(line.slice(1, -1));
    // Every metacharacter outside a caret is gone: nothing for cmd to act on (&, |, >, %).
    assert.equal(/(^|[^^])[&|<>%]/.test(line.slice(1, -1).replace(/\^./g, '')), false);
    // The wrapper's path comes first, spaces and all; then exactly our argv, as the program parses it.
    assert.ok(inner.startsWith('C:\\Users\\A B\\bin\\cloudflared.cmd '), inner);
    assert.deepEqual(parseWindowsArgv(inner.slice('C:\\Users\\A B\\bin\\cloudflared.cmd '.length)), args);
    assert.equal(spawnDecision('C:\\x\\y.cmd', [], { platform: 'win32' }).file, 'cmd.exe');
  });

  it("an npm shim's arguments are escaped twice (it re-parses %*)", () => {
    assert.equal(quoteCmdArgument('a&b'), '^"a^&b^"');
    assert.equal(quoteCmdArgument('a&b', true), '^^^"a^^^&b^^^"');
    const d = spawnDecision('C:\\p\\node_modules\\.bin\\server.cmd', ['a&b'], { platform: 'win32' });
    assert.ok((d.args[3] ?? '').includes('^^^"a^^^&b^^^"'), d.args[3]);
    assert.ok((spawnDecision('C:\\nodejs\\npx.cmd', ['a&b'], { platform: 'win32' }).args[3] ?? '').includes('^^^&'));
  });

  it('a line break cannot be passed through cmd.exe: refused, naming the argument by position and the fix', () => {
    assert.throws(
      () => spawnDecision('C:\\x\\cloudflared.cmd', ['ok', 'secret\r\ncalc.exe'], { platform: 'win32' }),
      (err: Error) => /argument 2/.test(err.message) && /\.exe/.test(err.message) && !err.message.includes('secret'),
    );
  });
});

/** A fake file system: `files` maps paths to whether they are executable; directories are derived. */
function fakeFs(files: Record<string, boolean>, platform: NodeJS.Platform): LocateFs {
  const p = platform === 'win32' ? path.win32 : path.posix;
  const norm = (x: string) => (platform === 'win32' ? x.toLowerCase() : x);
  const table = new Map(Object.entries(files).map(([k, v]) => [norm(k), v]));
  return {
    isFile: (f) => Promise.resolve(table.has(norm(f))),
    isExecutable: (f, pl) => Promise.resolve(pl === 'win32' || table.get(norm(f)) === true),
    readdir: (dir) => {
      const names = new Set<string>();
      for (const f of Object.keys(files)) {
        const rel = p.relative(dir, f);
        if (rel && !rel.startsWith('..') && !p.isAbsolute(rel)) names.add(rel.split(p.sep)[0] ?? rel);
      }
      return Promise.resolve([...names]);
    },
  };
}

const version = (): Promise<string> => Promise.resolve('2025.8.1');
const WIN_ENV = {
  Path: 'C:\\Windows\\system32;"C:\\Program Files\\Tools";;C:\\bin',
  PATHEXT: '.COM;.EXE;.BAT;.CMD;.VBS;.JS',
  LocalAppData: 'C:\\Users\\ann\\AppData\\Local',
  ProgramFiles: 'C:\\Program Files',
  'ProgramFiles(x86)': 'C:\\Program Files (x86)',
};

describe('cloudflared lookup, per platform', () => {
  it('Windows: PATH (quoted entries, PATHEXT order: only what runs), then winget links, Program Files, winget packages', async () => {
    assert.deepEqual(executableNames('win32', WIN_ENV), ['cloudflared.com', 'cloudflared.exe', 'cloudflared.bat', 'cloudflared.cmd']);
    assert.deepEqual(executableNames('win32', {}), ['cloudflared.com', 'cloudflared.exe', 'cloudflared.bat', 'cloudflared.cmd']);
    assert.deepEqual(executableNames('win32', { PATHEXT: '.JS' }), ['cloudflared.exe']);
    assert.deepEqual(executableNames('linux', WIN_ENV), ['cloudflared']);
    const pkg = 'C:\\Users\\ann\\AppData\\Local\\Microsoft\\WinGet\\Packages';
    const fsys = fakeFs({ [`${pkg}\\Cloudflare.cloudflared_Microsoft.Winget.Source_8wekyb3d8bbwe\\cloudflared.exe`]: true, [`${pkg}\\Other.tool_x\\cloudflared.exe`]: true }, 'win32');
    const all = await searchLocations('win32', WIN_ENV, fsys);
    assert.deepEqual(all.slice(0, 4), ['C:\\Windows\\system32\\cloudflared.com', 'C:\\Windows\\system32\\cloudflared.exe', 'C:\\Windows\\system32\\cloudflared.bat', 'C:\\Windows\\system32\\cloudflared.cmd']);
    assert.ok(all.includes('C:\\Program Files\\Tools\\cloudflared.exe'), 'a quoted PATH entry is unquoted');
    assert.deepEqual(all.slice(12), [
      'C:\\Users\\ann\\AppData\\Local\\Microsoft\\WinGet\\Links\\cloudflared.exe',
      'C:\\Program Files\\WinGet\\Links\\cloudflared.exe',
      'C:\\Program Files\\cloudflared\\cloudflared.exe',
      'C:\\Program Files (x86)\\cloudflared\\cloudflared.exe',
      `${pkg}\\Cloudflare.cloudflared_Microsoft.Winget.Source_8wekyb3d8bbwe\\cloudflared.exe`,
    ]);
  });

  it('Windows: finds the winget package when nothing is on PATH, Program Files (x86) too, by any case of the variables', async () => {
    const exe = 'C:\\Users\\ann\\AppData\\Local\\Microsoft\\WinGet\\Packages\\Cloudflare.cloudflared_Microsoft.Winget.Source_8wekyb3d8bbwe\\cloudflared.exe';
    const found = await findCloudflared({ platform: 'win32', env: { ...WIN_ENV, Path: '' }, fs: fakeFs({ [exe]: true }, 'win32'), readVersion: version });
    assert.deepEqual(found, { path: exe, version: '2025.8.1' });
    const x86 = 'C:\\Program Files (x86)\\cloudflared\\cloudflared.exe';
    assert.equal((await findCloudflared({ platform: 'win32', env: { 'PROGRAMFILES(X86)': 'C:\\Program Files (x86)' }, fs: fakeFs({ [x86]: true }, 'win32'), readVersion: version })).path, x86);
    // PATH wins over the install folders; a .cmd on PATH is found by its PATHEXT name.
    const cmd = 'C:\\bin\\cloudflared.cmd';
    assert.equal((await findCloudflared({ platform: 'win32', env: WIN_ENV, fs: fakeFs({ [cmd]: true, [x86]: true }, 'win32'), readVersion: version })).path, cmd);
  });

  it('Windows: an explicit path is judged by Windows rules on any host; nothing found names winget and Program Files', async () => {
    const exe = 'D:\\tools\\cloudflared.exe';
    assert.equal((await findCloudflared({ platform: 'win32', env: WIN_ENV, explicitPath: exe, fs: fakeFs({ [exe]: true }, 'win32'), readVersion: version })).path, exe);
    await assert.rejects(findCloudflared({ platform: 'win32', env: WIN_ENV, explicitPath: 'tools\\cloudflared.exe', fs: fakeFs({}, 'win32'), readVersion: version }), /must be an absolute path/);
    await assert.rejects(
      findCloudflared({ platform: 'win32', env: WIN_ENV, fs: fakeFs({}, 'win32'), readVersion: version, settingName: 'mcpTunnel.cloudflaredPath' }),
      (err: CloudflaredError) => err.code === 'not-found' && /WinGet or Program Files/.test(err.message) && /winget install --id Cloudflare\.cloudflared/.test(err.message) && /mcpTunnel\.cloudflaredPath/.test(err.message),
    );
  });

  it('macOS: Homebrew on Apple silicon, then Intel; a copy without the execute bit is reported with chmod', async () => {
    assert.deepEqual(wellKnownLocations('darwin', { HOME: '/Users/ann' }).slice(0, 2), ['/opt/homebrew/bin/cloudflared', '/usr/local/bin/cloudflared']);
    const env = { HOME: '/Users/ann', PATH: '/usr/bin:/bin' };
    assert.equal((await findCloudflared({ platform: 'darwin', env, fs: fakeFs({ '/usr/local/bin/cloudflared': true }, 'darwin'), readVersion: version })).path, '/usr/local/bin/cloudflared');
    assert.equal(
      (await findCloudflared({ platform: 'darwin', env, fs: fakeFs({ '/usr/local/bin/cloudflared': true, '/opt/homebrew/bin/cloudflared': true }, 'darwin'), readVersion: version })).path,
      '/opt/homebrew/bin/cloudflared',
    );
    await assert.rejects(findCloudflared({ platform: 'darwin', env, fs: fakeFs({ '/opt/homebrew/bin/cloudflared': false }, 'darwin'), readVersion: version }), (err: CloudflaredError) => err.code === 'not-executable' && /chmod \+x \/opt\/homebrew\/bin\/cloudflared/.test(err.message));
  });
});

async function gone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return true;
    }
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('the plan carried out (POSIX here)', { skip: process.platform === 'win32' && 'POSIX process groups' }, () => {
  it("a group leader's kill() ends its children too (the wrapper case: a child that spawned another)", async () => {
    const script = "const c = require('child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' }); process.stdout.write(String(c.pid)); setInterval(() => {}, 1000);";
    const child = spawnTied(process.execPath, ['-e', script], { env: { PATH: process.env['PATH'] ?? '' }, detached: true, lifeline: 'none' });
    const grandchild = await new Promise<number>((resolve, reject) => {
      child.stdout?.once('data', (d: Buffer) => resolve(Number(d.toString())));
      child.once('error', reject);
    });
    assert.ok(grandchild > 0);
    const exited = new Promise((r) => child.once('exit', r));
    assert.equal(child.kill('SIGTERM'), true);
    await exited;
    assert.equal(await gone(grandchild, 3000), true, 'the grandchild ended with its group');
  });
});

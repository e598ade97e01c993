/**
 * The spawn seam: the controller spawns through this, so tests can inject a fake process.
 * `ChildProcess` satisfies `SpawnedProcess`.
 *
 * A child must not outlive its host. If the extension host or the CLI is killed (SIGKILL, a
 * crash), a cloudflared left running would keep the public URL pointing at the gate's freed
 * loopback port, which any local process could bind (and then receive the clients' secrets).
 * So every real child is tied to the host by a **lifeline**:
 * - Linux: `setpriv --pdeathsig KILL` (util-linux) execs the child with the kernel's parent-death
 *   signal set, so the kernel kills it the moment the host dies. No extra process stays around.
 * - Elsewhere (macOS, Windows), or where setpriv is missing or too old: a tiny watchdog (the host's
 *   own Node, `-e`) holds a pipe from the host; when the pipe closes without a goodbye, the host
 *   is gone and the watchdog kills the child, then exits. It also exits when the child does.
 * The orphan reaper (orphans.ts) stays as the second line, for what a lifeline cannot cover.
 */
import { spawn as nodeSpawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants } from 'node:fs';
import { intentOf, spawnDecision, stopAction, type ProcessFacts, type StopAction, type StopIntent } from './stopPlan';

export interface SpawnedProcess {
  readonly pid?: number | undefined;
  readonly stdout: NodeJS.ReadableStream | null;
  readonly stderr: NodeJS.ReadableStream | null;
  kill(signal?: NodeJS.Signals | number): boolean;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown;
  once(event: 'error', listener: (err: Error) => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
}

export type SpawnFn = (command: string, args: readonly string[], options: { env: NodeJS.ProcessEnv }) => SpawnedProcess;

/** How a child is tied to its host: see the file comment. `none` only for tests that need an orphan. */
export type Lifeline = 'pdeathsig' | 'watchdog' | 'none';

const SETPRIV_CANDIDATES = ['/usr/bin/setpriv', '/bin/setpriv'];
let setprivPath: string | null | undefined;

/** setpriv with `--pdeathsig` (util-linux ≥ 2.33), or null. Looked up once per process. */
export function findSetpriv(): string | null {
  if (setprivPath !== undefined) return setprivPath;
  setprivPath = null;
  if (process.platform !== 'linux') return setprivPath;
  for (const candidate of SETPRIV_CANDIDATES) {
    try {
      accessSync(candidate, fsConstants.X_OK);
      const help = execFileSync(candidate, ['--help'], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] });
      if (help.includes('--pdeathsig')) {
        setprivPath = candidate;
        break;
      }
    } catch {
      // missing, or too old to know --pdeathsig
    }
  }
  return setprivPath;
}

/** The lifeline this machine gives a child: the kernel's where it can, the watchdog elsewhere. */
export function defaultLifeline(): Lifeline {
  return findSetpriv() ? 'pdeathsig' : 'watchdog';
}

/**
 * The watchdog: argv[1] is the child's PID, argv[2] taskkill's path (Windows: the whole tree is
 * ended, a .cmd wrapper's children too; the stop plan's forced step). Stdin is the host's end of a pipe: EOF means the host
 * died (a host that ends the child itself kills the watchdog first, with SIGTERM: no kill then).
 * Polls the child so it never outlives it, and so a PID reused much later is never signalled.
 */
const WATCHDOG_SOURCE = `
const pid = Number(process.argv[1]);
const alive = () => { try { process.kill(pid, 0); return true; } catch (e) { return e.code === 'EPERM'; } };
const force = () => process.platform === 'win32'
  ? require('child_process').execFileSync(process.argv[2], ['/PID', String(pid), '/T', '/F'], { stdio: 'ignore', windowsHide: true, timeout: 5000 })
  : process.kill(pid, 'SIGKILL');
const end = () => { try { if (alive()) force(); } catch { try { process.kill(pid, 'SIGKILL'); } catch {} } process.exit(0); };
process.on('SIGTERM', () => process.exit(0));
process.stdin.on('end', end); process.stdin.on('close', end); process.stdin.on('error', end);
process.stdin.resume();
setInterval(() => { if (!alive()) process.exit(0); }, 500);
`;

function isExecutable(file: string): boolean {
  try {
    accessSync(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** This process's facts about a child, for the stop plan. */
export function factsOf(pid: number, group: boolean): ProcessFacts {
  return { platform: process.platform, pid, group, systemRoot: process.env['SystemRoot'] ?? process.env['SYSTEMROOT'] };
}

/**
 * Carries out one stop action (stopPlan.ts). `fallback` runs when the action cannot be done at
 * all (taskkill missing or refused, a group already gone): Node's own kill, TerminateProcess on
 * Windows. A fallback that throws (the process is gone) is ignored: it may run in a callback.
 */
export function runStopAction(action: StopAction, fallback: (intent: StopIntent) => void, facts: ProcessFacts): void {
  const fall = (intent: StopIntent): void => {
    try {
      fallback(intent);
    } catch {
      // gone meanwhile
    }
  };
  if (action.kind === 'signal') {
    try {
      process.kill(action.group ? -action.pid : action.pid, action.signal);
    } catch {
      fall(action.signal === 'SIGKILL' ? 'force' : 'polite');
    }
    return;
  }
  execFile(action.file, action.args, { timeout: 10_000, windowsHide: true }, (err) => {
    if (!err) return;
    if (action.onFailure === 'force') runStopAction(stopAction(facts, 'force'), fallback, facts);
    else fall('force');
  });
}

/**
 * The child's `kill(signal)` follows the stop plan: SIGTERM is the polite step, SIGKILL the forced
 * one, each to the child's group (POSIX, detached) or tree (Windows). So every caller (the
 * controller's SIGTERM-then-SIGKILL, the bridge) stops the same way on every platform.
 */
function planKill(child: ChildProcess, group: boolean): void {
  const nodeKill = child.kill.bind(child);
  child.kill = (signal?: NodeJS.Signals | number): boolean => {
    const pid = child.pid;
    if (!pid || child.exitCode !== null || child.signalCode !== null) return nodeKill(signal);
    const intent = intentOf(signal);
    const facts = factsOf(pid, group);
    const action = stopAction(facts, intent);
    if (action.kind === 'signal' && !action.group) return nodeKill(action.signal);
    runStopAction(action, (i) => void nodeKill(i === 'force' ? 'SIGKILL' : 'SIGTERM'), facts);
    return true;
  };
}

function startWatchdog(child: ChildProcess): void {
  if (!child.pid) return;
  let watchdog: ChildProcess;
  const forced = stopAction(factsOf(child.pid, false), 'force');
  try {
    watchdog = nodeSpawn(process.execPath, ['-e', WATCHDOG_SOURCE, String(child.pid), forced.kind === 'exec' ? forced.file : ''], {
      // Only what Node needs to start: the host's secrets stay with the host.
      env: {
        ELECTRON_RUN_AS_NODE: '1',
        ...(process.env['PATH'] ? { PATH: process.env['PATH'] } : {}),
        ...(process.env['SystemRoot'] ? { SystemRoot: process.env['SystemRoot'] } : {}),
      },
      stdio: ['pipe', 'ignore', 'ignore'],
      windowsHide: true,
      detached: process.platform !== 'win32',
    });
  } catch {
    return; // the reaper remains
  }
  watchdog.on('error', () => undefined);
  watchdog.stdin?.on('error', () => undefined);
  // Neither the watchdog nor its pipe keeps the host's event loop alive.
  watchdog.unref();
  (watchdog.stdin as (NodeJS.WritableStream & { unref?: () => void }) | null)?.unref?.();
  child.once('exit', () => {
    try {
      watchdog.kill('SIGTERM');
    } catch {
      // already gone
    }
  });
}

export interface SpawnTiedOptions {
  env: NodeJS.ProcessEnv;
  lifeline?: Lifeline;
  /** `pipe` for a child that reads its stdin (a stdio MCP server); default closed. */
  stdin?: 'pipe' | 'ignore';
  /** Its own process group (POSIX), so the child and everything it spawns end together. */
  detached?: boolean;
  cwd?: string;
}

/**
 * Spawns a real process tied to this one by `lifeline` (default: `defaultLifeline()`): no shell
 * (argv is passed as is), stdin closed unless asked, no console window on Windows.
 */
export function spawnTied(command: string, args: readonly string[], options: SpawnTiedOptions): ChildProcess {
  const lifeline = options.lifeline ?? defaultLifeline();
  const setpriv = lifeline === 'pdeathsig' ? findSetpriv() : null;
  // A missing or non-executable binary is spawned directly, so its error stays ENOENT / EACCES.
  const viaSetpriv = setpriv !== null && isExecutable(command);
  // No shell: argv as is; a Windows .cmd / .bat goes through cmd.exe with its line quoted (stopPlan.ts).
  const how = spawnDecision(command, args, { platform: process.platform, detached: options.detached, comspec: process.env['ComSpec'] ?? process.env['COMSPEC'] });
  const child = nodeSpawn(viaSetpriv ? setpriv : how.file, viaSetpriv ? ['--pdeathsig', 'KILL', '--', command, ...args] : how.args, {
    env: options.env,
    stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
    ...how.options,
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
  });
  planKill(child, how.options.detached);
  if (lifeline === 'watchdog' || (lifeline === 'pdeathsig' && !viaSetpriv)) startWatchdog(child);
  return child;
}

/** Real processes, each tied to this one (see `spawnTied`). */
export const spawnProcess: SpawnFn = (command, args, options) => spawnTied(command, args, { env: options.env });

/**
 * How a child is spawned and how it is stopped, per platform, as pure decisions (the supervisor
 * carries them out: processRunner.ts, orphans.ts). No I/O here, so every branch is unit-tested on
 * any OS, Windows included (test/unit/windows.test.ts).
 *
 * POSIX: SIGTERM to the process (or its group, for a child spawned as a group leader), SIGKILL
 * after the grace period. cloudflared drains in-flight requests for `--grace-period` on SIGTERM.
 *
 * Windows has no signals: Node's `child.kill()` is TerminateProcess, which ends that one process
 * at once (no draining, and a `.cmd` wrapper's children survive it). So the polite step is
 * `taskkill /PID n /T` (no /F: it asks the windows / console of the whole tree to close, which Go
 * programs such as cloudflared see as SIGTERM), and the forced step `taskkill /PID n /T /F`
 * (TerminateProcess on the whole tree). A polite request that taskkill refuses (a console process
 * without a window "can only be terminated forcefully") cannot succeed by waiting: force at once.
 */

/** The two intents of a stop: let it finish (drain), or end it now. */
export type StopIntent = 'polite' | 'force';

/** One action on a process. */
export type StopAction =
  /** `process.kill(pid or -pid, signal)`; `group`: the child's whole process group (POSIX). */
  | { kind: 'signal'; pid: number; signal: 'SIGTERM' | 'SIGKILL'; group: boolean }
  /** Run a program (no shell); `onFailure: 'force'`: if it exits non-zero, do the forced step at once. */
  | { kind: 'exec'; file: string; args: string[]; onFailure: 'force' | 'ignore' };

export interface StopStep {
  /** Milliseconds after the stop began. */
  atMs: number;
  intent: StopIntent;
  action: StopAction;
}

export interface ProcessFacts {
  platform: NodeJS.Platform;
  pid: number;
  /** Spawned as the leader of its own process group (POSIX `detached`): signal the group. */
  group?: boolean | undefined;
  /** `%SystemRoot%`, for taskkill's full path (a PATH without System32 still finds it). */
  systemRoot?: string | undefined;
}

/** taskkill's path: `%SystemRoot%\System32\taskkill.exe`, or the bare name when SystemRoot is unknown. */
export function taskkillPath(systemRoot: string | undefined): string {
  return systemRoot ? `${systemRoot.replace(/[\\/]+$/, '')}\\System32\\taskkill.exe` : 'taskkill.exe';
}

/** What one intent does to one process: see the file comment. */
export function stopAction(facts: ProcessFacts, intent: StopIntent): StopAction {
  if (facts.platform === 'win32') {
    const args = ['/PID', String(facts.pid), '/T', ...(intent === 'force' ? ['/F'] : [])];
    return { kind: 'exec', file: taskkillPath(facts.systemRoot), args, onFailure: intent === 'polite' ? 'force' : 'ignore' };
  }
  return { kind: 'signal', pid: facts.pid, signal: intent === 'polite' ? 'SIGTERM' : 'SIGKILL', group: facts.group === true };
}

/** The intent a Node signal name stands for: SIGKILL is force, anything else (SIGTERM, SIGINT) polite. */
export function intentOf(signal: NodeJS.Signals | number | undefined): StopIntent {
  return signal === 'SIGKILL' || signal === 9 ? 'force' : 'polite';
}

/** The whole stop: the polite step now, the forced one after `graceMs`. */
export function stopPlan(facts: ProcessFacts, graceMs: number): [polite: StopStep, force: StopStep] {
  if (!Number.isFinite(graceMs) || graceMs < 0) throw new RangeError(`The grace period must be a non-negative number of milliseconds, got ${graceMs}.`);
  return [
    { atMs: 0, intent: 'polite', action: stopAction(facts, 'polite') },
    { atMs: graceMs, intent: 'force', action: stopAction(facts, 'force') },
  ];
}

/** A Windows batch wrapper (`.cmd` / `.bat`): it needs cmd.exe to run. */
export function isBatchWrapper(command: string, platform: NodeJS.Platform): boolean {
  return platform === 'win32' && /\.(cmd|bat)$/i.test(command);
}

/** cmd.exe's metacharacters, escaped with `^` outside and inside quotes (cmd's parser sees both). */
const CMD_META = /([()\][%!^"`<>&|;, *?])/g;

/**
 * One argument for a command line that cmd.exe passes on to a program: quoted and backslash-escaped
 * as MSVCRT parses argv (CommandLineToArgvW), then every cmd metacharacter `^`-escaped so cmd takes
 * it literally. `doubleEscape` escapes once more, for a wrapper that re-parses its `%*` (an npm
 * `.cmd` shim passes its arguments through a second cmd parse). The approach of cross-spawn.
 */
export function quoteCmdArgument(arg: string, doubleEscape = false): string {
  let quoted = arg.replace(/(\\*)"/g, '$1$1\\"').replace(/(\\*)$/, '$1$1');
  quoted = `"${quoted}"`.replace(CMD_META, '^$1');
  return doubleEscape ? quoted.replace(CMD_META, '^$1') : quoted;
}

/** The wrapper's own path on cmd's command line: metacharacters escaped, no quotes (cmd /s strips the outer pair). */
export function quoteCmdCommand(command: string): string {
  return command.replace(CMD_META, '^$1');
}

export interface SpawnDecision {
  file: string;
  args: string[];
  options: {
    windowsHide: true;
    /** POSIX only: the child leads its own process group (Windows `detached` means no console at all). */
    detached: boolean;
    /** Never a shell built from unquoted argv: a `.cmd` gets cmd.exe with its line quoted here. */
    shell: false;
    windowsVerbatimArguments?: true;
  };
}

/**
 * How to spawn `command args`: directly, or for a Windows `.cmd` / `.bat` wrapper through
 * `cmd.exe /d /s /c "<quoted line>"` with verbatim arguments (Node refuses to spawn a batch file
 * without a shell since the 2024 fix for CVE-2024-27980, and `shell: true` would join argv
 * unquoted). `/d`: no AutoRun commands from the registry.
 */
export function spawnDecision(command: string, args: readonly string[], o: { platform: NodeJS.Platform; detached?: boolean | undefined; comspec?: string | undefined }): SpawnDecision {
  const detached = o.detached === true && o.platform !== 'win32';
  if (!isBatchWrapper(command, o.platform)) return { file: command, args: [...args], options: { windowsHide: true, detached, shell: false } };
  // A line break ends cmd's command line: the rest would run as a command of its own.
  // (The message names the argument by position only: arguments may carry secrets.)
  const broken = args.findIndex((a) => /[\r\n]/.test(a));
  if (broken !== -1) throw new Error(`${command} is a batch wrapper, and cmd.exe cannot pass it an argument with a line break (argument ${broken + 1}). Point at the program itself (an .exe) instead of the wrapper, or remove the line break.`);
  // npm's shims live in node_modules\.bin (or next to npm itself) and expand %* a second time.
  const doubleEscape = /[\\/]node_modules[\\/]\.bin[\\/][^\\/]+\.cmd$/i.test(command) || /[\\/]np[mx]\.cmd$/i.test(command);
  const line = [quoteCmdCommand(command), ...args.map((a) => quoteCmdArgument(a, doubleEscape))].join(' ');
  return {
    file: o.comspec || 'cmd.exe',
    args: ['/d', '/s', '/c', `"${line}"`],
    options: { windowsHide: true, detached, shell: false, windowsVerbatimArguments: true },
  };
}

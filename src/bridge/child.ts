/**
 * One stdio MCP server process: spawned in its own process group and tied to the host (the
 * supervisor's lifeline), framed with the SDK's own stdio framing (newline-delimited JSON-RPC,
 * validated), its stderr kept (the last lines) for messages, ended politely then by force, and
 * listed in a run record while it lives so a host that crashed leaves nothing behind (reapChildren).
 */
import { accessSync, constants as fsConstants, promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { ReadBuffer, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { factsOf, runStopAction, spawnTied, type Lifeline } from '../core/supervisor/processRunner';
import { stopAction } from '../core/supervisor/stopPlan';
import { argvOf, ensureStateDir, isAlive, isRunId, newRunId } from '../core/supervisor/orphans';

/** A stdio MCP server as `mcp.json` defines it, variables already substituted. */
export interface StdioServerDefinition {
  /** What the user calls it (`filesystem`): logs, the UI, messages. */
  name: string;
  command: string;
  args: readonly string[];
  /** Added to (and overriding) the environment the child inherits. */
  env?: Readonly<Record<string, string>>;
  cwd?: string;
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when it could not be spawned at all (ENOENT, EACCES). */
  spawnError?: string;
}

/** Names of the host's variables a stdio server never inherits: our secrets and cloudflared's. */
const NEVER_INHERITED = /^(MCP_TUNNEL_|TUNNEL_|CLOUDFLARED_|FAKE_CLOUDFLARED_|E2E_RIG_)/i;
/** Last stderr lines kept for messages. */
const STDERR_LINES = 20;

/** The environment a stdio server gets: the host's (minus our secrets and cloudflared's), then its own. */
export function serverEnv(def: StdioServerDefinition, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined && !NEVER_INHERITED.test(k) && k !== 'ELECTRON_RUN_AS_NODE') env[k] = v;
  return { ...env, ...def.env };
}

/**
 * The command's file: as given when it has a slash, else the first executable of that name on
 * PATH (PATHEXT on Windows); undefined if there is none.
 */
export function resolveCommand(command: string, env: NodeJS.ProcessEnv, cwd: string = process.cwd()): string | undefined {
  const executable = (f: string): boolean => {
    try {
      accessSync(f, process.platform === 'win32' ? fsConstants.F_OK : fsConstants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (command.includes('/') || (process.platform === 'win32' && command.includes('\\'))) {
    const f = path.resolve(cwd, command);
    return executable(f) ? f : undefined;
  }
  const exts = process.platform === 'win32' ? ['', ...(env['PATHEXT'] ?? '.COM;.EXE;.BAT;.CMD').split(';')] : [''];
  for (const dir of (env['PATH'] ?? env['Path'] ?? '').split(path.delimiter)) {
    if (!dir) continue;
    for (const ext of exts) {
      const f = path.join(dir, command + ext);
      if (executable(f)) return f;
    }
  }
  return undefined;
}

export interface ChildOptions {
  /** Where run records go (the host's state dir); none: no record. */
  stateDir?: string;
  /** SIGTERM, then SIGKILL this long after. Default 2000 ms. */
  killGraceMs?: number;
  lifeline?: Lifeline;
  baseEnv?: NodeJS.ProcessEnv;
  log?: (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;
}

/** A live stdio server. `onMessage` gets each JSON-RPC message it writes; `exited` settles once. */
export class StdioChild {
  readonly pid: number | undefined;
  readonly exited: Promise<ChildExit>;
  exit: ChildExit | undefined;
  onMessage: (m: JSONRPCMessage) => void = () => undefined;
  onExit: (e: ChildExit) => void = () => undefined;
  private readonly proc: ChildProcess | undefined;
  private readonly readBuffer = new ReadBuffer();
  private readonly stderrTail: string[] = [];
  private stderrPartial = '';
  private readonly recordId = newRunId();
  private killTimer: NodeJS.Timeout | undefined;
  private ending = false;

  constructor(
    readonly def: StdioServerDefinition,
    private readonly options: ChildOptions = {},
  ) {
    const env = serverEnv(def, options.baseEnv);
    const cwd = def.cwd ?? process.cwd();
    const file = resolveCommand(def.command, env, cwd);
    let resolveExit!: (e: ChildExit) => void;
    this.exited = new Promise((r) => (resolveExit = r));
    const finish = (e: ChildExit): void => {
      if (this.exit) return;
      this.exit = e;
      if (this.killTimer) clearTimeout(this.killTimer);
      void this.removeRecord();
      resolveExit(e);
      this.onExit(e);
    };
    if (!file) {
      this.pid = undefined;
      queueMicrotask(() => finish({ code: null, signal: null, spawnError: `command not found: "${def.command}" is not an executable file${def.command.includes('/') ? '' : ' on PATH'}` }));
      return;
    }
    let proc: ChildProcess;
    try {
      proc = spawnTied(file, def.args, { env, stdin: 'pipe', detached: true, cwd, ...(options.lifeline ? { lifeline: options.lifeline } : {}) });
    } catch (err) {
      this.pid = undefined;
      queueMicrotask(() => finish({ code: null, signal: null, spawnError: (err as Error).message }));
      return;
    }
    this.proc = proc;
    this.pid = proc.pid;
    proc.once('error', (err: NodeJS.ErrnoException) => finish({ code: null, signal: null, spawnError: err.code === 'ENOENT' && def.cwd ? `${err.message} (does the folder ${def.cwd} exist?)` : err.message }));
    proc.once('exit', (code, signal) => finish({ code, signal }));
    proc.stdin?.on('error', () => undefined); // EPIPE when it died: its exit says why
    proc.stdout?.on('data', (chunk: Buffer) => this.onStdout(chunk));
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (text: string) => this.onStderr(text));
    if (proc.pid && options.stateDir) void this.writeRecord(proc.pid, [file, ...def.args]);
  }

  /** end() or kill() was called: its exit is ours, not a crash. */
  get killed(): boolean {
    return this.ending;
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  /** The last lines it wrote to stderr (at most 20). */
  lastStderr(): string[] {
    return this.stderrPartial ? [...this.stderrTail, this.stderrPartial] : [...this.stderrTail];
  }

  send(messages: readonly JSONRPCMessage[]): void {
    if (!this.alive || !this.proc?.stdin?.writable) return;
    const only = messages.length === 1 ? messages[0] : undefined;
    this.proc.stdin.write(only ? serializeMessage(only) : messages.map(serializeMessage).join(''));
  }

  /** Closes its stdin, SIGTERMs its process group, SIGKILLs it after the grace period. */
  end(): Promise<ChildExit> {
    this.ending = true;
    if (!this.alive || !this.proc) return this.exited;
    if (!this.killTimer) {
      this.proc.stdin?.end();
      this.signal('SIGTERM');
      this.killTimer = setTimeout(() => this.signal('SIGKILL'), this.options.killGraceMs ?? 2000);
      this.killTimer.unref();
    }
    return this.exited;
  }

  /** Ends it at once (SIGKILL to its group). */
  kill(): Promise<ChildExit> {
    this.ending = true;
    this.signal('SIGKILL');
    return this.exited;
  }

  private signal(sig: NodeJS.Signals): void {
    const pid = this.proc?.pid;
    if (!pid || !this.alive) return;
    try {
      // Its process group: npx and the server it starts end together.
      if (process.platform !== 'win32') process.kill(-pid, sig);
      else this.proc?.kill(sig);
    } catch {
      try {
        this.proc?.kill(sig);
      } catch {
        // gone
      }
    }
  }

  private onStdout(chunk: Buffer): void {
    try {
      this.readBuffer.append(chunk);
      for (;;) {
        let m: JSONRPCMessage | null;
        try {
          m = this.readBuffer.readMessage();
        } catch (err) {
          // Not JSON-RPC (a server that prints to stdout): skip the line, say so.
          this.options.log?.('warn', `[${this.def.name}] stdout line is not JSON-RPC, skipped: ${(err as Error).message.split('\n')[0]}`);
          continue;
        }
        if (m === null) break;
        this.onMessage(m);
      }
    } catch (err) {
      this.options.log?.('error', `[${this.def.name}] ${(err as Error).message}`);
    }
  }

  private onStderr(text: string): void {
    const lines = (this.stderrPartial + text).split(/\r?\n/);
    this.stderrPartial = (lines.pop() ?? '').slice(-2000);
    for (const line of lines) {
      if (!line) continue;
      this.options.log?.('info', `[${this.def.name}] ${line}`);
      this.stderrTail.push(line.slice(0, 2000));
      if (this.stderrTail.length > STDERR_LINES) this.stderrTail.shift();
    }
  }

  private recordPath(): string | undefined {
    return this.options.stateDir ? path.join(this.options.stateDir, `child-${this.recordId}.json`) : undefined;
  }

  private async writeRecord(pid: number, argv: string[]): Promise<void> {
    const file = this.recordPath();
    if (!file || !this.options.stateDir) return;
    try {
      await ensureStateDir(this.options.stateDir);
      const startTicks = await processStartTicks(pid);
      const rec: ChildRecord = { id: this.recordId, pid, ownerPid: process.pid, argv, startedAt: Date.now(), ...(startTicks ? { startTicks } : {}) };
      await fs.writeFile(file, JSON.stringify(rec), { mode: 0o600 });
      if (!this.alive) await this.removeRecord();
    } catch (err) {
      this.options.log?.('warn', `Could not write the run record of ${this.def.name}: ${(err as Error).message}`);
    }
  }

  private async removeRecord(): Promise<void> {
    const file = this.recordPath();
    if (file) await fs.rm(file, { force: true }).catch(() => undefined);
  }
}

interface ChildRecord {
  id: string;
  pid: number;
  ownerPid: number;
  /** The resolved command and its arguments: proof of identity in the process's argv. */
  argv: string[];
  startedAt: number;
  /** Linux: when the process started (clock ticks after boot, /proc/<pid>/stat): its identity. */
  startTicks?: string;
}

/** Field 22 of /proc/<pid>/stat (Linux), or undefined. */
async function processStartTicks(pid: number): Promise<string | undefined> {
  if (process.platform !== 'linux') return undefined;
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces: count after its end.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Whether `pid` is still the process a record describes (its start time, else its arguments). */
async function isRecordedProcess(rec: ChildRecord): Promise<boolean> {
  if (rec.startTicks !== undefined) return (await processStartTicks(rec.pid)) === rec.startTicks;
  // No start time (not Linux): the recorded arguments must end its argv (interpreters such as
  // `node` for an npx script come before them).
  const actual = await argvOf(rec.pid);
  const args = rec.argv.slice(1);
  return actual !== undefined && args.length > 0 && actual.length >= args.length && args.every((a, i) => actual[actual.length - args.length + i] === a);
}


/**
 * Ends stdio servers left by a host that died: a record whose owner is gone, whose PID is alive
 * and runs exactly the recorded argv (a reused PID runs something else and is left alone). Its
 * process group gets SIGKILL. Returns how many were ended.
 */
export async function reapChildren(stateDir: string, log?: (msg: string) => void): Promise<number> {
  let names: string[];
  try {
    names = await fs.readdir(stateDir);
  } catch {
    return 0;
  }
  let ended = 0;
  for (const name of names) {
    const m = /^child-(.*)\.json$/.exec(name);
    if (!m) continue;
    const file = path.join(stateDir, name);
    let rec: Partial<ChildRecord> | undefined;
    try {
      const st = await fs.lstat(file);
      if (st.isFile() && st.size < 64 * 1024) rec = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<ChildRecord>;
    } catch {
      rec = undefined;
    }
    const valid =
      rec && isRunId(rec.id) && rec.id === m[1] && Number.isInteger(rec.pid) && (rec.pid ?? 0) > 1 && Number.isInteger(rec.ownerPid) && Array.isArray(rec.argv) && rec.argv.every((a) => typeof a === 'string');
    if (!valid || !rec) {
      await fs.rm(file, { force: true }).catch(() => undefined);
      continue;
    }
    const { pid, ownerPid, argv } = rec as ChildRecord;
    if (ownerPid === process.pid || isAlive(ownerPid)) continue;
    if (isAlive(pid)) {
      if (await isRecordedProcess(rec as ChildRecord)) {
        try {
          // Its group (POSIX) or its whole tree (Windows: `taskkill /T /F`, npx.cmd's children too).
          const facts = factsOf(pid, true);
          runStopAction(stopAction(facts, 'force'), () => process.kill(pid, 'SIGKILL'), facts);
          ended++;
          log?.(`Ended a stdio MCP server (PID ${pid}: ${argv.join(' ')}) left running by an earlier session.`);
        } catch {
          // gone meanwhile
        }
      }
    }
    await fs.rm(file, { force: true }).catch(() => undefined);
  }
  return ended;
}

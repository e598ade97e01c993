/**
 * No orphans, even after a crash: each run is recorded in `<stateDir>/run-<id>.json` (the child's
 * PID, its unique config path, our own PID). On start-up, a record whose owner is gone and whose
 * PID is still *that* cloudflared (its argv holds `--config` followed by exactly the run's unique
 * config file, not just the PID) is ended, and the record removed.
 *
 * Records are not trusted: anything in the state dir may have been planted or corrupted. A record
 * is acted on only if its id has the generated form (12 lowercase hex digits) and equals the id in
 * its file name, its PIDs are positive integers and its config path is exactly
 * `<stateDir>/config-<id>.yml`. Anything else is removed by its file name (as read from the
 * directory, never by a path built from its content) and reported as 'invalid'.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { factsOf, runStopAction } from './processRunner';
import { stopPlan, type StopIntent } from './stopPlan';

export interface RunRecord {
  id: string;
  pid: number;
  /** The unique `--config` file of this run: proof of identity in the child's command line. */
  configPath: string;
  ownerPid: number;
  startedAt: number;
  binary: string;
}

/** The form `newRunId()` generates; the only ids turned into file names. */
const RUN_ID = /^[0-9a-f]{12}$/;
/** A run record's file name, with whatever id it claims (checked separately). */
const RECORD_NAME = /^run-(.*)\.json$/;
/** Records are a few hundred bytes; anything much larger is not one of ours. */
const MAX_RECORD_BYTES = 64 * 1024;

export function newRunId(): string {
  return randomBytes(6).toString('hex');
}

export function isRunId(id: unknown): id is string {
  return typeof id === 'string' && RUN_ID.test(id);
}

function checkRunId(id: unknown): string {
  if (!isRunId(id)) throw new Error(`Not a run id (12 lowercase hex digits): ${JSON.stringify(id)}`);
  return id;
}

export function runRecordPath(stateDir: string, id: string): string {
  return path.join(stateDir, `run-${checkRunId(id)}.json`);
}

/** The one config path a run may have: `<stateDir>/config-<id>.yml`, stateDir resolved. */
export function runConfigPath(stateDir: string, id: string): string {
  return path.join(path.resolve(stateDir), `config-${checkRunId(id)}.yml`);
}

/**
 * Whether `configPath` is exactly run `id`'s config path. The unresolved join is accepted too: it
 * is what a controller given a relative stateDir writes (and passes to cloudflared); for an
 * absolute stateDir the two are the same string.
 */
function isRunConfigPath(stateDir: string, id: string, configPath: unknown): boolean {
  return typeof configPath === 'string' && (configPath === runConfigPath(stateDir, id) || configPath === path.join(stateDir, `config-${id}.yml`));
}

function isPid(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0;
}

/** Why `rec` (parsed from `run-<fileId>.json`) is not a record we may act on, or undefined if it is. */
function recordProblem(stateDir: string, fileId: string, rec: unknown): string | undefined {
  if (typeof rec !== 'object' || rec === null || Array.isArray(rec)) return 'not a JSON object';
  const r = rec as Partial<Record<keyof RunRecord, unknown>>;
  if (!isRunId(fileId)) return 'the file name does not carry a run id';
  if (r.id !== fileId) return 'its id does not match its file name';
  if (!isPid(r.pid)) return 'pid is not a positive integer';
  if (!isPid(r.ownerPid)) return 'ownerPid is not a positive integer';
  if (!isRunConfigPath(stateDir, fileId, r.configPath)) return "configPath is not this run's config file";
  return undefined;
}

/**
 * Creates the state dir (recursively) with mode 0700, or tightens an existing one of ours to 0700.
 * Throws if the path is a symlink, not a directory, or (POSIX) owned by another user. The check is
 * on the last path component (lstat); symlinks higher up (e.g. macOS /var -> /private/var) are fine.
 */
export async function ensureStateDir(stateDir: string): Promise<void> {
  let mkdirError: unknown;
  try {
    await fs.mkdir(stateDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    mkdirError = err; // e.g. EEXIST/ENOTDIR for a file: explained below if lstat can say why
  }
  let st;
  try {
    st = await fs.lstat(stateDir);
  } catch (err) {
    throw new Error(`Could not create the state directory ${stateDir}: ${((mkdirError ?? err) as Error).message}`);
  }
  if (st.isSymbolicLink()) throw new Error(`The state directory ${stateDir} is a symlink; refusing to use it (it must be a real directory).`);
  if (!st.isDirectory()) throw new Error(`The state directory ${stateDir} is not a directory.`);
  if (mkdirError) throw new Error(`Could not create the state directory ${stateDir}: ${(mkdirError as Error).message}`);
  if (process.platform === 'win32') return; // POSIX modes and owners do not apply
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new Error(`The state directory ${stateDir} belongs to another user (uid ${st.uid}); refusing to use it.`);
  if ((st.mode & 0o777) !== 0o700) await fs.chmod(stateDir, 0o700);
}

/** Writes the record (0600) atomically, after `ensureStateDir`; refuses a record `reapOrphans` would reject. */
export async function writeRunRecord(stateDir: string, rec: RunRecord): Promise<void> {
  const problem = recordProblem(stateDir, checkRunId(rec.id), rec);
  if (problem) throw new Error(`Refusing to write run record ${rec.id}: ${problem}`);
  await ensureStateDir(stateDir);
  const file = runRecordPath(stateDir, rec.id);
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(rec), { mode: 0o600 });
  await fs.rename(tmp, file);
}

/** Removes a run's record and config file; `id` must be a generated run id (throws otherwise). */
export async function removeRun(stateDir: string, id: string): Promise<void> {
  await Promise.all([fs.rm(runRecordPath(stateDir, id), { force: true }), fs.rm(runConfigPath(stateDir, id), { force: true })]);
}

/** Whether `pid` is a live process (EPERM: alive, another user's). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True if `argv` has the element `--config` immediately followed by the element `configPath`. */
export function argvHasConfig(argv: readonly string[], configPath: string): boolean {
  if (!configPath) return false;
  for (let i = 0; i + 1 < argv.length; i++) if (argv[i] === '--config' && argv[i + 1] === configPath) return true;
  return false;
}

/**
 * The same check on a joined command line (`ps -o command=`, PowerShell's CommandLine), where the
 * argv boundaries are lost: ` --config <path>` (or ` --config "<path>"`) followed by a space or
 * the end. Limitation: argv boundaries are guessed, so a path with spaces (macOS's default
 * "~/Library/Application Support/…") still matches its own run, but a process could also match
 * with the path split over several argv elements; only Linux (`argvOf`) checks real elements.
 */
export function commandLineHasConfig(line: string, configPath: string): boolean {
  if (!configPath) return false;
  for (const needle of [` --config ${configPath}`, ` --config "${configPath}"`]) {
    for (let at = line.indexOf(needle); at !== -1; at = line.indexOf(needle, at + 1)) {
      const next = line[at + needle.length];
      if (next === undefined || next === ' ') return true;
    }
  }
  return false;
}

/** A process's argv (Linux: /proc/<pid>/cmdline split on NUL), or undefined if gone / unreadable / not Linux. */
export async function argvOf(pid: number): Promise<string[] | undefined> {
  if (process.platform !== 'linux' || !isPid(pid)) return undefined;
  try {
    const raw = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8');
    if (!raw) return undefined; // a zombie / kernel thread
    const argv = raw.split('\0');
    if (argv[argv.length - 1] === '') argv.pop();
    return argv;
  } catch {
    return undefined;
  }
}

/** The command line of a process (argv joined by spaces on Linux), or undefined if it is gone / unreadable. */
export async function commandLineOf(pid: number): Promise<string | undefined> {
  if (!isPid(pid)) return undefined;
  if (process.platform === 'linux') return (await argvOf(pid))?.join(' ').trim() || undefined;
  if (process.platform === 'win32') {
    return new Promise((resolve) => {
      execFile('powershell.exe', ['-NoProfile', '-Command', `(Get-CimInstance Win32_Process -Filter "ProcessId=${pid}").CommandLine`], { timeout: 5000, windowsHide: true }, (err, out) =>
        resolve(err ? undefined : out.trim() || undefined),
      );
    });
  }
  // -ww: the whole line, never cut at a terminal width.
  const args = process.platform === 'darwin' ? ['-ww', '-p', String(pid), '-o', 'command='] : ['-p', String(pid), '-o', 'command='];
  return new Promise((resolve) => {
    execFile('ps', args, { timeout: 5000 }, (err, out) => resolve(err ? undefined : out.trim() || undefined));
  });
}

/** Whether `pid` runs with `--config <configPath>`; undefined if its command line cannot be read (gone). */
async function runsWithConfig(pid: number, configPath: string): Promise<boolean | undefined> {
  if (process.platform === 'linux') {
    const argv = await argvOf(pid);
    return argv && argvHasConfig(argv, configPath);
  }
  const line = await commandLineOf(pid);
  return line === undefined ? undefined : commandLineHasConfig(line, configPath);
}

/**
 * What a command line that could not be read means: on Linux (read from /proc) the process is
 * gone or a zombie; elsewhere a tool (PowerShell, ps) had to answer, so a PID still alive is
 * 'unverified' and left alone, never ended unproven.
 */
export function unreadableOutcome(platform: NodeJS.Platform, alive: () => boolean): 'already-gone' | 'unverified' {
  return platform !== 'linux' && alive() ? 'unverified' : 'already-gone';
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !isAlive(pid);
}

export interface ReapResult {
  /** The record's PID (0 for an 'invalid' record without a usable one). */
  pid: number;
  /** The id from the record's file name. */
  id: string;
  /**
   * 'invalid': a malformed or inconsistent record, removed without touching any process.
   * 'unverified': the PID is alive but its command line could not be read (no PowerShell, `ps`
   * failed), so it cannot be told from another program: left alone, the record kept for a later try.
   */
  outcome: 'ended' | 'already-gone' | 'not-ours' | 'could-not-end' | 'invalid' | 'unverified';
}

async function readRecord(file: string): Promise<unknown> {
  const st = await fs.lstat(file);
  if (!st.isFile()) throw new Error('not a regular file');
  if (st.size > MAX_RECORD_BYTES) throw new Error('too large');
  return JSON.parse(await fs.readFile(file, 'utf8')) as unknown;
}

/**
 * Ends cloudflared processes left by a host that died (SIGKILL, crash). Records of live owners
 * (another window's tunnel) are left alone.
 */
export async function reapOrphans(stateDir: string, log?: (msg: string) => void): Promise<ReapResult[]> {
  let names: string[];
  try {
    names = await fs.readdir(stateDir);
  } catch {
    return [];
  }
  const results: ReapResult[] = [];
  for (const name of names) {
    const fileId = RECORD_NAME.exec(name)?.[1];
    if (fileId === undefined) continue;
    // `name` comes from readdir: a single path component inside stateDir.
    const recordFile = path.join(stateDir, name);
    let rec: unknown;
    let problem: string | undefined;
    try {
      rec = await readRecord(recordFile);
      problem = recordProblem(stateDir, fileId, rec);
    } catch (err) {
      problem = `unreadable (${(err as Error).message})`;
    }
    if (problem) {
      // Only the record goes: a config file is removed only for a record that checked out.
      await fs.rm(recordFile, { force: true }).catch((err: Error) => log?.(`Could not remove invalid run record ${name}: ${err.message}`));
      log?.(`Removed an invalid run record ${name}: ${problem}.`);
      const pid = (rec as { pid?: unknown } | null | undefined)?.pid;
      results.push({ pid: isPid(pid) ? pid : 0, id: fileId, outcome: 'invalid' });
      continue;
    }
    const { id, pid, ownerPid, configPath } = rec as RunRecord; // checked: id === fileId, PIDs, exact config path
    if (ownerPid === process.pid) continue; // ours, live
    if (isAlive(ownerPid)) continue; // another live window owns it
    let outcome: ReapResult['outcome'];
    const verified = isAlive(pid) ? await runsWithConfig(pid, configPath) : undefined;
    if (verified === undefined) outcome = unreadableOutcome(process.platform, () => isAlive(pid));
    else if (!verified) outcome = 'not-ours';
    else {
      // The stop plan (stopPlan.ts): SIGTERM / `taskkill /T`, then SIGKILL / `taskkill /T /F`. An
      // orphan gets a second, not its grace period: no client of a dead host waits for it.
      const facts = factsOf(pid, false);
      const [polite, force] = stopPlan(facts, 1000);
      const fallback = (i: StopIntent) => process.kill(pid, i === 'force' ? 'SIGKILL' : 'SIGTERM');
      runStopAction(polite.action, fallback, facts);
      let gone = await waitGone(pid, force.atMs);
      if (!gone) {
        runStopAction(force.action, fallback, facts);
        gone = await waitGone(pid, 2000);
      }
      outcome = gone ? 'ended' : 'could-not-end';
    }
    if (outcome === 'ended') log?.(`Ended cloudflared (PID ${pid}) left running by an earlier session that did not shut down.`);
    if (outcome === 'not-ours') log?.(`PID ${pid} from an old run record is now another program; left it alone.`);
    if (outcome === 'unverified') {
      const how = process.platform === 'win32' ? `PowerShell's Get-CimInstance Win32_Process did not answer; if it is cloudflared, end it with \`taskkill /PID ${pid} /T /F\`` : `\`ps\` did not answer; if it is cloudflared, end it with \`kill ${pid}\``;
      log?.(`PID ${pid} from an old run record is alive, but its command line could not be read to prove it is that cloudflared (${how}); left it alone, and will check again at the next start.`);
    }
    if (outcome !== 'could-not-end' && outcome !== 'unverified') {
      // The record by its file name; the config only via the checked id (equal to the file's).
      await Promise.all([fs.rm(recordFile, { force: true }), fs.rm(runConfigPath(stateDir, id), { force: true })]).catch((err: Error) =>
        log?.(`Could not remove run record ${name}: ${err.message}`),
      );
    }
    results.push({ pid, id, outcome });
  }
  return results;
}

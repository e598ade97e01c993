/**
 * No orphans, even after a crash: each run is recorded in `<stateDir>/run-<id>.json` (the child's
 * PID, its unique config path, our own PID). On start-up, a record whose owner is gone and whose
 * PID is still *that* cloudflared (its command line names the run's unique config file, not just
 * the PID) is ended, and the record removed.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

export interface RunRecord {
  id: string;
  pid: number;
  /** The unique `--config` file of this run: proof of identity in the child's command line. */
  configPath: string;
  ownerPid: number;
  startedAt: number;
  binary: string;
}

export function newRunId(): string {
  return randomBytes(6).toString('hex');
}

export function runRecordPath(stateDir: string, id: string): string {
  return path.join(stateDir, `run-${id}.json`);
}

export async function writeRunRecord(stateDir: string, rec: RunRecord): Promise<void> {
  const file = runRecordPath(stateDir, rec.id);
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(rec), { mode: 0o600 });
  await fs.rename(tmp, file);
}

export async function removeRun(stateDir: string, id: string): Promise<void> {
  await Promise.all([
    fs.rm(runRecordPath(stateDir, id), { force: true }),
    fs.rm(path.join(stateDir, `config-${id}.yml`), { force: true }),
  ]);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The command line of a process, or undefined if it is gone / unreadable. */
export async function commandLineOf(pid: number): Promise<string | undefined> {
  if (process.platform === 'linux') {
    try {
      return (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').join(' ').trim() || undefined;
    } catch {
      return undefined;
    }
  }
  if (process.platform === 'win32') {
    return new Promise((resolve) => {
      execFile('powershell.exe', ['-NoProfile', '-Command', `(Get-CimInstance Win32_Process -Filter "ProcessId=${pid}").CommandLine`], { timeout: 5000, windowsHide: true }, (err, out) =>
        resolve(err ? undefined : out.trim() || undefined),
      );
    });
  }
  return new Promise((resolve) => {
    execFile('ps', ['-p', String(pid), '-o', 'command='], { timeout: 5000 }, (err, out) => resolve(err ? undefined : out.trim() || undefined));
  });
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
  pid: number;
  id: string;
  outcome: 'ended' | 'already-gone' | 'not-ours' | 'could-not-end';
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
    const m = /^run-([0-9a-f]+)\.json$/.exec(name);
    if (!m) continue;
    let rec: RunRecord;
    try {
      rec = JSON.parse(await fs.readFile(path.join(stateDir, name), 'utf8')) as RunRecord;
      if (typeof rec.pid !== 'number' || typeof rec.configPath !== 'string' || typeof rec.ownerPid !== 'number') throw new Error('bad record');
    } catch {
      await fs.rm(path.join(stateDir, name), { force: true });
      continue;
    }
    if (rec.ownerPid !== process.pid && isAlive(rec.ownerPid)) continue; // another live window owns it
    if (rec.ownerPid === process.pid) continue; // ours, live
    let outcome: ReapResult['outcome'];
    const cmd = isAlive(rec.pid) ? await commandLineOf(rec.pid) : undefined;
    if (!cmd) outcome = 'already-gone';
    else if (!cmd.includes(rec.configPath)) outcome = 'not-ours';
    else {
      try {
        process.kill(rec.pid, 'SIGTERM');
      } catch {
        // gone meanwhile
      }
      // cloudflared drains for --grace-period on the first signal; a second one ends it at once.
      let gone = await waitGone(rec.pid, 1000);
      if (!gone) {
        try {
          process.kill(rec.pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
        gone = await waitGone(rec.pid, 2000);
      }
      outcome = gone ? 'ended' : 'could-not-end';
    }
    if (outcome === 'ended') log?.(`Ended cloudflared (PID ${rec.pid}) left running by an earlier session that did not shut down.`);
    if (outcome === 'not-ours') log?.(`PID ${rec.pid} from an old run record is now another program; left it alone.`);
    if (outcome !== 'could-not-end') await removeRun(stateDir, rec.id);
    results.push({ pid: rec.pid, id: rec.id, outcome });
  }
  return results;
}

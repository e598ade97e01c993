/**
 * The spawn seam: the controller spawns through this, so tests can inject a fake process.
 * `ChildProcess` satisfies `SpawnedProcess`.
 */
import { spawn as nodeSpawn } from 'node:child_process';

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

/** Real processes: no shell (argv is passed as is), stdin closed, no console window on Windows. */
export const spawnProcess: SpawnFn = (command, args, options) =>
  nodeSpawn(command, [...args], {
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    windowsHide: true,
    // .cmd shims (tests on Windows) need a shell; the real cloudflared.exe does not.
    shell: process.platform === 'win32' && /\.(cmd|bat)$/i.test(command),
  });

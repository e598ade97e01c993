/** An in-memory process for controller tests: the test writes its stderr and decides its exit. */
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import type { SpawnFn, SpawnedProcess } from '../../src/core/supervisor/processRunner';

let nextPid = 40_000;

export class FakeProcess extends EventEmitter implements SpawnedProcess {
  readonly pid: number | undefined;
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly signals: (NodeJS.Signals | number | undefined)[] = [];
  exited = false;
  /** What to do on a signal; default: exit by that signal, like cloudflared before its banner. */
  onSignal: (sig: NodeJS.Signals | number | undefined) => void = (sig) => this.exit(null, (sig as NodeJS.Signals) ?? 'SIGTERM');

  constructor(
    readonly command: string,
    readonly args: readonly string[],
    readonly env: NodeJS.ProcessEnv,
    withPid = true,
  ) {
    super();
    this.pid = withPid ? nextPid++ : undefined;
  }

  kill(signal?: NodeJS.Signals | number): boolean {
    if (this.exited) return false;
    this.signals.push(signal);
    this.onSignal(signal);
    return true;
  }

  /** One zerolog console line on stderr. */
  log(message: string, level = 'INF'): void {
    this.stderr.write(`2026-11-24T05:55:09Z ${level} ${message}\n`);
  }

  raw(text: string, stream: 'stdout' | 'stderr' = 'stderr'): void {
    this[stream].write(text);
  }

  banner(url = 'https://seasonal-example-words-here.trycloudflare.com'): void {
    this.log('Requesting new quick Tunnel on trycloudflare.com...');
    const head = 'Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):';
    const w = head.length;
    const dash = '-'.repeat(w + 4);
    this.log(`+${dash}+`);
    this.log(`|  ${head}  |`);
    this.log(`|  ${url.padEnd(w)}  |`);
    this.log(`+${dash}+`);
  }

  register(connIndex = 0, location = 'lax01'): void {
    this.log(`Registered tunnel connection connIndex=${connIndex} connection=ed9f0541-5685-4976-83cc-2c162ce8926c event=0 ip=198.41.200.13 location=${location} protocol=quic`);
  }

  exit(code: number | null, signal: NodeJS.Signals | null = null): void {
    if (this.exited) return;
    this.exited = true;
    this.stdout.end();
    this.stderr.end();
    // Let the stream data drain first, as a real child's 'exit' comes after its output.
    setImmediate(() => this.emit('exit', code, signal));
  }
}

export function fakeSpawner(configure?: (p: FakeProcess) => void): { spawn: SpawnFn; procs: FakeProcess[] } {
  const procs: FakeProcess[] = [];
  const spawn: SpawnFn = (command, args, options) => {
    const p = new FakeProcess(command, args, options.env);
    procs.push(p);
    configure?.(p);
    return p;
  };
  return { spawn, procs };
}

/** Let streams, promises and immediates run (timers stay mocked). */
export async function flush(times = 5): Promise<void> {
  for (let i = 0; i < times; i++) await new Promise<void>((r) => setImmediate(r));
}

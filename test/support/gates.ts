/**
 * The gate tests' harness: gates that log into `logLines` (checked for secrets at the end of a
 * file), the secrets they held in `secretsSeen`, and `closers` run after the file, bounded so one
 * failed test's leftovers cannot keep the file from finishing. One copy per test file (each runs in
 * its own process).
 */
import { after } from 'node:test';
import { startAccessGate, type AccessGate, type AccessGateOptions } from '../../src/core/gate/accessGate';

export const logLines: string[] = [];
export const secretsSeen = new Set<string>();
export const closers: Array<() => Promise<void> | void> = [];

after(async () => {
  for (const c of closers.splice(0).reverse()) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.resolve(c()).catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, 5000)))]);
    clearTimeout(timer);
  }
});

export function secretOf(gate: AccessGate): string {
  const s = gate.secretPath().slice(1);
  secretsSeen.add(s);
  return s;
}

export async function newGate(options: AccessGateOptions): Promise<AccessGate> {
  const gate = await startAccessGate({ log: (level, msg) => logLines.push(`${level} ${msg}`), ...options });
  closers.push(() => gate.close());
  secretOf(gate);
  return gate;
}

/** The transcripts of a real cloudflared in test/fixtures/cloudflared-transcripts (see its README), read for tests. */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { TRANSCRIPTS_DIR } from './proc';

export { TRANSCRIPTS_DIR };

export interface Transcript {
  name: string;
  /** Lines written to stderr, without the `[  0.093 ERR] ` prefix. */
  stderr: string[];
  stdout: string[];
  exitCode: number | null;
  /** `$ cmd` style files (version, help, unknown flag). */
  commandStyle: boolean;
}

export function readTranscript(name: string): Transcript {
  const text = readFileSync(path.join(TRANSCRIPTS_DIR, name), 'utf8');
  const lines = text.split('\n');
  if (name.endsWith('.json')) {
    return { name, stderr: lines.filter((l) => l.trim() !== ''), stdout: [], exitCode: null, commandStyle: false };
  }
  const t: Transcript = { name, stderr: [], stdout: [], exitCode: null, commandStyle: false };
  const timed = /^\[\s*[\d.]+ (\w+)\] ?(.*)$/;
  if (lines.some((l) => timed.test(l))) {
    for (const l of lines) {
      const m = timed.exec(l);
      if (!m) continue;
      const [, kind, rest = ''] = m;
      if (kind === 'ERR') t.stderr.push(rest);
      else if (kind === 'OUT') t.stdout.push(rest);
      else if (kind === 'EXIT') {
        const c = /exit code (\d+)/.exec(rest);
        if (c) t.exitCode = Number(c[1]);
      }
    }
    return t;
  }
  // `$ cmd` style: sections `--- stdout:` / `--- stderr:`; other lines count as stdout.
  t.commandStyle = true;
  let section: 'stdout' | 'stderr' = 'stdout';
  for (const l of lines) {
    if (l.startsWith('$ ')) section = 'stdout';
    else if (l === '--- stdout:') section = 'stdout';
    else if (l === '--- stderr:') section = 'stderr';
    else if (/^exit=(\d+)$/.test(l)) t.exitCode = Number(l.slice(5));
    else if (l.trim() !== '') t[section].push(l);
  }
  return t;
}

/** The transcript files, sorted (not the README, not the raw `/metrics` scrapes beside them). */
export function transcriptNames(): string[] {
  return readdirSync(TRANSCRIPTS_DIR)
    .filter((f) => f !== 'README.md' && !/\.metrics-[\d.]+\.txt$/.test(f))
    .sort();
}

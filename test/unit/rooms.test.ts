/** The rooms are enforced by path in `npm run lint`: an import across a wall fails the lint. */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { ESLint } from 'eslint';
import tseslint from 'typescript-eslint';
import { REPO } from '../support/proc';

async function importErrors(file: string, code: string): Promise<string[]> {
  // The text is linted as if it were at `file` (which does not exist): type-aware rules need the
  // file in the TS project, the rooms rule does not, so those are off here.
  const eslint = new ESLint({ cwd: REPO, overrideConfig: [tseslint.configs.disableTypeChecked, { languageOptions: { parserOptions: { projectService: false, project: null } } }] });
  const [result] = await eslint.lintText(code, { filePath: path.join(REPO, file) });
  return (result?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('rooms (eslint no-restricted-imports by path)', () => {
  for (const [file, code] of [
    ['src/core/x.ts', "import { readConfig } from '../vscode/config';\nexport const x = readConfig;\n"],
    ['src/core/x.ts', "import { startHttpHost } from '../mcp/httpHost';\nexport const x = startHttpHost;\n"],
    ['src/core/deep/x.ts', "import * as vscode from 'vscode';\nexport const x = vscode;\n"],
    ['src/mcp/x.ts', "import { activate } from '../extension';\nexport const x = activate;\n"],
    ['src/vscode/x.ts', "import * as cli from '../cli';\nexport const x = cli;\n"],
  ] as const) {
    it(`refuses ${file}: ${code.split('\n')[0]}`, async () => {
      const errors = await importErrors(file, code);
      assert.ok(errors.length >= 1, `expected a rooms error, got none`);
      assert.match(errors[0] ?? '', /ARCHITECTURE\.md/);
    });
  }
  it('allows downward imports (core from mcp, mcp from vscode, core from core)', async () => {
    assert.deepEqual(await importErrors('src/mcp/x.ts', "import { isLive } from '../core/model/tunnelState';\nexport const x = isLive;\n"), []);
    assert.deepEqual(await importErrors('src/vscode/x.ts', "import type * as M from '../mcp/index';\nexport type X = typeof M;\n"), []);
    assert.deepEqual(await importErrors('src/core/x.ts', "import { Emitter } from './events';\nexport const x = Emitter;\n"), []);
  });
});

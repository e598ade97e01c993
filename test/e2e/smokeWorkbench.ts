// Browser e2e example: the workbench opened normally (no test payload), the extension loaded either
// from a VSIX installed with code-server's CLI or from the repo in development mode; one command run
// from the palette; a screenshot in test-results/e2e-smoke-workbench.png.
//   node --import tsx test/e2e/smokeWorkbench.ts [--vsix mcp-tunnel.vsix]
// (node esbuild.mjs first when running from the repo.) Exit code 0 on success.
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  REPO_ROOT, installVsix, launchBrowser, makeRigDirs, openWorkbench, runCommand, screenshot,
  startVsCodeServer, waitForExtensionActivated, type BrowserSession, type VsCodeServer,
} from './codeServer';

const EXTENSION_ID = 'mcp-tunnel.mcp-tunnel';

async function main(): Promise<void> {
  const t0 = Date.now();
  const vsixArg = process.argv.indexOf('--vsix');
  const vsix = vsixArg > 0 ? process.argv[vsixArg + 1] : undefined;
  let server: VsCodeServer | undefined;
  let browser: BrowserSession | undefined;
  try {
    const dirs = makeRigDirs();
    if (vsix) installVsix(vsix, dirs);
    server = await startVsCodeServer({ dirs });
    const workspace = path.join(dirs.root, 'workspace');
    fs.mkdirSync(workspace, { recursive: true });
    fs.writeFileSync(path.join(workspace, 'README.md'), '# e2e workspace\n');

    browser = await launchBrowser({ profileDir: dirs.browserProfile, server });
    await openWorkbench(browser.page, server, { folder: workspace, ...(vsix ? {} : { extensionDevelopmentPath: REPO_ROOT }) });
    await waitForExtensionActivated(server, EXTENSION_ID);
    await runCommand(browser.page, 'Developer: Show Running Extensions');
    const row = browser.page.locator('.runtime-extensions-editor .monaco-list-row').filter({ hasText: /MCP Tunnel|mcp-tunnel\.mcp-tunnel/ }).first();
    await row.waitFor({ state: 'visible', timeout: 30_000 });
    await screenshot(browser.page, 'e2e-smoke-workbench');
    console.log(`[e2e] workbench smoke OK (${vsix ? `VSIX ${path.basename(vsix)}` : 'development path'}) in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  } finally {
    await browser?.close();
    await server?.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error('[e2e] workbench smoke FAILED:', err);
    process.exit(1);
  },
);

/**
 * Where the managed cloudflared lives, and a loader of dist/install.js (Install cloudflared…,
 * the update check, the installer): a computed require, so esbuild leaves it out of extension.js.
 */
import * as path from 'node:path';
import type * as vscode from 'vscode';
import type * as InstallUi from './installCloudflared';

export function loadInstallUi(): typeof InstallUi {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(path.join(__dirname, 'install.js')) as typeof InstallUi;
}

/** The folder of the managed copy, in the extension's global storage. */
export function managedDir(context: vscode.ExtensionContext): string {
  return path.join(context.globalStorageUri.fsPath, 'cloudflared');
}

/** The managed copy's path (whether it exists or not). */
export function managedCloudflaredPath(context: vscode.ExtensionContext): string {
  return path.join(managedDir(context), process.platform === 'win32' ? 'cloudflared.exe' : 'cloudflared');
}

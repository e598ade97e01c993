/**
 * Install cloudflared… and the weekly update check of the managed copy, with the installer
 * (src/core/cloudflared/install.ts): together they are `dist/install.js`, loaded on first use
 * through installModule.ts, so none of it is in extension.js and nothing runs at activation.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import * as Install from '../core/cloudflared/install';
import type { TunnelLog } from './log';
import { managedCloudflaredPath, managedDir } from './installModule';

/** globalState key: when the managed copy was last checked for a newer release (ms). */
const LAST_UPDATE_CHECK_KEY = 'mcpTunnel.cloudflared.lastUpdateCheck';

const loadInstaller = (): typeof Install => Install;

/** VS Code's `http.proxy`, which wins over HTTPS_PROXY (VS Code also reads the system's proxy for us otherwise). */
function proxySetting(): string | undefined {
  const p = vscode.workspace.getConfiguration('http').get<string>('proxy');
  return p?.trim() || undefined;
}

export interface InstallDeps {
  context: vscode.ExtensionContext;
  log: TunnelLog;
  /** Look for cloudflared again (the tree, the welcome view, the walkthrough). */
  recheck: () => Promise<void>;
  /** `mcpTunnel.cloudflaredPath`: when set, it wins over the managed copy. */
  explicitPath: () => string;
}

/**
 * Downloads, verifies and installs cloudflared (the latest, or `release`) with a cancellable
 * progress notification in MB. Returns the installed copy, or undefined (cancelled, failed: said).
 */
export async function installWithProgress(deps: InstallDeps, release?: Install.Release): Promise<Install.Installed | undefined> {
  const installer = loadInstaller();
  const dir = managedDir(deps.context);
  try {
    const done = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: vscode.l10n.t('Installing cloudflared'), cancellable: true },
      async (progress, token) => {
        const ac = new AbortController();
        const sub = token.onCancellationRequested(() => ac.abort());
        let shown = 0;
        try {
          progress.report({ message: vscode.l10n.t('looking up the release…') });
          return await installer.installCloudflared({
            dir,
            signal: ac.signal,
            ...(release ? { release } : {}),
            ...(proxySetting() ? { proxy: proxySetting() } : {}),
            onProgress: ({ done, total }) => {
              const mb = (n: number) => (n / 1e6).toFixed(1);
              const pct = total ? (done / total) * 100 : 0;
              progress.report({
                message: total ? vscode.l10n.t('{0} of {1} MB', mb(done), mb(total)) : vscode.l10n.t('{0} MB', mb(done)),
                ...(total ? { increment: pct - shown } : {}),
              });
              shown = pct;
            },
          });
        } finally {
          sub.dispose();
        }
      },
    );
    deps.log.info(`Installed cloudflared ${done.version} at ${done.path} (${done.asset}, SHA-256 ${done.sha256} verified).`);
    await deps.recheck();
    const overridden = deps.explicitPath() ? vscode.l10n.t(' The setting mcpTunnel.cloudflaredPath still points elsewhere and wins: clear it to use this copy.') : '';
    void vscode.window.showInformationMessage(vscode.l10n.t('MCP Tunnel: installed cloudflared {0} (checksum verified).', done.version) + overridden);
    return done;
  } catch (err) {
    const e = err as Install.InstallError;
    if (e.code === 'cancelled') {
      void vscode.window.showInformationMessage(vscode.l10n.t('MCP Tunnel: the cloudflared install was cancelled; nothing was installed.'));
      return undefined;
    }
    deps.log.warn(`Installing cloudflared failed: ${e.message}`);
    const manual = vscode.l10n.t('Open Downloads Page');
    const retry = vscode.l10n.t('Retry');
    // Notifications render no Markdown code spans.
    const a = await vscode.window.showErrorMessage(`MCP Tunnel: ${e.message.replace(/`([^`]+)`/g, '"$1"')}`, retry, manual);
    if (a === retry) return installWithProgress(deps, release);
    if (a === manual) void vscode.env.openExternal(vscode.Uri.parse('https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/downloads/'));
    return undefined;
  }
}

/**
 * At most weekly, for the managed copy only (never a cloudflared someone else installed, which its
 * package manager updates) and unless `mcpTunnel.cloudflared.checkForUpdates` is off: asks for
 * the latest release and offers it. cloudflared itself runs with `--no-autoupdate` always.
 */
export async function maybeOfferUpdate(deps: InstallDeps, found: { path: string; version: string }, enabled: boolean): Promise<void> {
  if (!enabled || path.resolve(found.path) !== path.resolve(managedCloudflaredPath(deps.context))) return;
  const installer = loadInstaller();
  const last = deps.context.globalState.get<number>(LAST_UPDATE_CHECK_KEY);
  if (!installer.updateCheckDue(last)) return;
  await deps.context.globalState.update(LAST_UPDATE_CHECK_KEY, Date.now());
  let newer: Install.Release | undefined;
  try {
    newer = await installer.newerRelease(found.version, { ...(proxySetting() ? { proxy: proxySetting() } : {}) });
  } catch (err) {
    deps.log.info(`The cloudflared update check could not reach the release host: ${(err as Error).message}`);
    return;
  }
  if (!newer) return;
  deps.log.info(`cloudflared ${newer.version} is available (installed: ${found.version}).`);
  const update = vscode.l10n.t('Update');
  const never = vscode.l10n.t("Don't Check Again");
  const a = await vscode.window.showInformationMessage(vscode.l10n.t('MCP Tunnel: cloudflared {0} is available (you have {1}).', newer.version, found.version), update, never);
  if (a === update) await installWithProgress(deps, newer);
  if (a === never) await vscode.workspace.getConfiguration('mcpTunnel').update('cloudflared.checkForUpdates', false, vscode.ConfigurationTarget.Global);
}

/** The user-facing flows behind the commands: progress, outcomes, failures with the action that fixes them. */
import * as vscode from 'vscode';
import { readVersion } from '../core/cloudflared/locate';
import { validateTarget } from '../core/model/target';
import { ALLOW_HOST_HINT } from './config';
import { shareUrlPrefix, type ShareOptions } from '../core/shares/shares';
import { maskSharePath } from '../core/util/format';
import { TunnelBusyError, isLive, joinUrl, localUrlOf, type AccessMode, type TunnelError, type TunnelState, type TunnelTarget } from '../core/model/tunnelState';
import type { CommandDeps } from './commands';
import type { TunnelLog } from './log';

function phase(s: TunnelState): string | undefined {
  switch (s.status) {
    case 'starting':
      return s.pid ? 'Asking Cloudflare for a quick tunnel…' : 'Looking for cloudflared…';
    case 'connecting':
      return `Got ${s.url}; connecting to the edge…`;
    default:
      return undefined;
  }
}

/** Starts (or restarts) with a cancellable progress notification, then reports the outcome. */
export async function runStart(deps: CommandDeps, target: TunnelTarget, restart: boolean, options: ShareOptions = {}): Promise<TunnelState | undefined> {
  const { controller } = deps;
  let outcome: TunnelState;
  try {
    // Another share on a live tunnel is only a route: no progress to watch, and no Cancel that
    // would stop the tunnel (and every other share) with it.
    outcome = !restart && isLive(controller.state) ? await controller.start(target, options) : await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: 'MCP Tunnel', cancellable: true },
      async (progress, token) => {
        const cancel = token.onCancellationRequested(() => void controller.stop());
        const sub = controller.onDidChangeState((s) => {
          const m = phase(s);
          if (m) progress.report({ message: m });
        });
        progress.report({ message: `Starting a tunnel to ${joinUrl(localUrlOf(target), target.path)}…` });
        try {
          return await (restart ? controller.restart(target) : controller.start(target, options));
        } finally {
          sub.dispose();
          cancel.dispose();
        }
      },
    );
  } catch (err) {
    if (err instanceof TunnelBusyError) {
      void vscode.window.showWarningMessage(err.message, 'Restart with New Target', 'Stop').then((a) => {
        if (a === 'Restart with New Target') void runStart(deps, target, true);
        if (a === 'Stop') void controller.stop();
      });
      return undefined;
    }
    throw err;
  }
  const snap = controller.snapshot();
  switch (outcome.status) {
    case 'active': {
      // This target's share (one tunnel carries several); its secret stays off the screen
      // (screens get shared): Copy MCP URL carries it.
      const all = controller.listShares();
      const share = controller.findShare(target);
      const isPrimary = !share || share.id === all[0]?.id;
      const mcpUrl = share?.mcp_url ?? snap.mcp_url ?? '';
      const secret = share ? share.access === 'secret' : !!outcome.sharePath;
      const secretPath = !secret ? undefined : share ? shareUrlPrefix(snap.url, share) : outcome.sharePath;
      const shown = maskSharePath(mcpUrl, secretPath || undefined);
      const count = all.length > 1 ? ` (${all.length} shares on this tunnel)` : '';
      const message = secret ? `Tunnel active${count}. MCP URL: ${shown} (secret link: only requests with it get in)` : `Tunnel active and OPEN${count}: anyone with the URL reaches your server. MCP URL: ${shown}`;
      const shownMessage = secret ? vscode.window.showInformationMessage(message, 'Copy MCP URL', 'Open') : vscode.window.showWarningMessage(message, 'Copy MCP URL', 'Open');
      void shownMessage.then((a) => {
        if (a === 'Copy MCP URL') void (isPrimary || !share ? vscode.commands.executeCommand('mcpTunnel.copyMcpUrl') : vscode.commands.executeCommand('mcpTunnel.copyShareMcpUrl', share.id));
        if (a === 'Open') void vscode.commands.executeCommand('mcpTunnel.openUrl');
      });
      break;
    }
    case 'connecting':
      void vscode.window.showWarningMessage(
        `The tunnel URL ${snap.url} is issued, but cloudflared has not connected to Cloudflare's edge yet; it keeps trying. If UDP is blocked here, set the protocol to http2.`,
        'Show Log',
      ).then((a) => a && deps.log.show());
      break;
    case 'failed':
      showFailure(deps, outcome.error, target);
      break;
    default:
      break;
  }
  return outcome;
}

const OPEN_REMOTE_SETTINGS = () => vscode.l10n.t('Open Remote Settings');

/**
 * In a remote window (SSH, WSL, containers, code-server) the extension runs on the remote machine
 * and reads machine-scoped settings such as `mcpTunnel.cloudflaredPath` from the *Remote*
 * settings: a path set in the local user settings is not seen there.
 */
export function remoteHint(): string {
  return vscode.env.remoteName ? ' ' + vscode.l10n.t('In this remote window, cloudflared must be on the remote machine, and mcpTunnel.cloudflaredPath goes in the Remote settings.') : '';
}

/** The cause in plain words, and the action that fixes it. */
export function showFailure(deps: CommandDeps, error: TunnelError, target: TunnelTarget): void {
  const actions: string[] = [];
  switch (error.code) {
    case 'not-found':
      actions.push('Install cloudflared', 'Locate cloudflared…');
      if (vscode.env.remoteName) actions.push(OPEN_REMOTE_SETTINGS());
      break;
    case 'not-executable':
    case 'not-cloudflared':
      actions.push('Locate cloudflared…', 'Show Log');
      break;
    case 'edge-unreachable':
      actions.push('Use HTTP/2 and Retry', 'Show Log');
      break;
    case 'no-token':
      actions.push('Set Tunnel Token…', 'Open Settings');
      break;
    default:
      actions.push('Retry', 'Show Log');
  }
  // Notifications render no Markdown code spans: show `brew install cloudflared` as "brew install cloudflared".
  const message = error.message.replace(/`([^`]+)`/g, '"$1"') + (error.code === 'not-found' ? remoteHint() : '');
  void vscode.window.showErrorMessage(`MCP Tunnel: ${message}`, ...actions).then(async (a) => {
    if (a && a === OPEN_REMOTE_SETTINGS()) return void vscode.commands.executeCommand('workbench.action.openRemoteSettings');
    switch (a) {
      case 'Install cloudflared':
        // Installs the managed copy, then starts what failed.
        if (await vscode.commands.executeCommand<boolean>('mcpTunnel.installCloudflared')) await runStart(deps, target, false);
        break;
      case 'Locate cloudflared…':
        await vscode.commands.executeCommand('mcpTunnel.locateCloudflared');
        break;
      case 'Use HTTP/2 and Retry':
        await vscode.workspace.getConfiguration('mcpTunnel').update('protocol', 'http2', vscode.ConfigurationTarget.Global);
        await runStart(deps, target, false);
        break;
      case 'Set Tunnel Token…':
        await vscode.commands.executeCommand('mcpTunnel.setTunnelToken');
        break;
      case 'Open Settings':
        await vscode.commands.executeCommand('workbench.action.openSettings', 'mcpTunnel.namedTunnel');
        break;
      case 'Retry':
        await runStart(deps, target, false);
        break;
      case 'Show Log':
        deps.log.show();
        break;
    }
  });
}

/** Start Tunnel…: port, host and path, validated as you type. */
export async function askTarget(def: TunnelTarget, allowedHosts: readonly string[], title = 'Start Tunnel'): Promise<TunnelTarget | undefined> {
  // Typed by the user, yet held to the same rule as every other source: loopback or allowed.
  const check = (t: Partial<TunnelTarget>) => validateTarget({ ...def, ...t }, { allowedHosts, howToAllow: ALLOW_HOST_HINT });
  const port = await vscode.window.showInputBox({
    title: `${title} (1/4): local port`,
    prompt: 'Port of the local server to expose',
    value: String(def.port),
    validateInput: (v) => {
      const r = check({ port: Number(v.trim()) });
      return r.ok || !/port/i.test(r.message) ? undefined : r.message;
    },
  });
  if (port === undefined) return undefined;
  const host = await vscode.window.showInputBox({
    title: `${title} (2/4): local host`,
    prompt: 'Host of the local server (usually localhost)',
    value: def.host,
    validateInput: (v) => {
      const r = check({ port: Number(port), host: v.trim() });
      return r.ok ? undefined : r.message;
    },
  });
  if (host === undefined) return undefined;
  const path = await vscode.window.showInputBox({
    title: `${title} (3/4): MCP endpoint path`,
    prompt: 'Path of the MCP endpoint on that server; the public MCP URL is the tunnel URL plus this path',
    value: def.path,
    validateInput: (v) => {
      const r = check({ port: Number(port), host: host.trim(), path: v.trim() });
      return r.ok ? undefined : r.message;
    },
  });
  if (path === undefined) return undefined;
  const modes: (vscode.QuickPickItem & { access: AccessMode })[] = [
    { access: 'secret', label: '$(lock) Secret link', description: def.access !== 'open' ? 'recommended, your default' : 'recommended', detail: 'Only requests with the share secret (in the MCP URL you copy) get in; the rest get 401.' },
    { access: 'open', label: '$(unlock) Open', description: def.access === 'open' ? 'your default' : '', detail: 'Anyone who learns the public URL reaches your server.' },
  ];
  const mode = await vscode.window.showQuickPick(def.access === 'open' ? [...modes].reverse() : modes, {
    title: `${title} (4/4): who gets in`,
    placeHolder: 'Access to the public URL',
  });
  if (mode === undefined) return undefined;
  const r = check({ port: Number(port), host: host.trim(), path: path.trim(), access: mode.access });
  return r.ok ? r.target : undefined;
}

/** "Locate cloudflared…": pick a file, check it really is cloudflared, then save the setting. */
export async function locateCloudflared(log: TunnelLog): Promise<boolean> {
  const picked = await vscode.window.showOpenDialog({
    title: 'Locate cloudflared',
    openLabel: 'Use this cloudflared',
    canSelectMany: false,
    canSelectFolders: false,
    ...(process.platform === 'win32' ? { filters: { Executables: ['exe', 'cmd'] } } : {}),
  });
  const file = picked?.[0]?.fsPath;
  if (!file) return false;
  try {
    const version = await readVersion(file, 'the chosen file');
    await vscode.workspace.getConfiguration('mcpTunnel').update('cloudflaredPath', file, vscode.ConfigurationTarget.Global);
    log.info(`cloudflared path set to ${file} (version ${version}).`);
    void vscode.window.showInformationMessage(`Using cloudflared ${version} at ${file}.`);
    return true;
  } catch (err) {
    void vscode.window.showErrorMessage((err as Error).message);
    return false;
  }
}

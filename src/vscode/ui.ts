/** The user-facing flows behind the commands: progress, outcomes, failures with the action that fixes them. */
import * as vscode from 'vscode';
import { readVersion } from '../core/cloudflared/locate';
import { validateTarget } from '../core/model/target';
import { ALLOW_HOST_HINT } from './config';
import { shareUrlPrefix, type ShareOptions } from '../core/shares/shares';
import { maskSharePath } from '../core/util/format';
import { isLive, isTunnelBusyError, joinUrl, localUrlOf, type AccessMode, type TunnelError, type TunnelState, type TunnelTarget } from '../core/model/tunnelState';
import type { CommandDeps } from './commands';
import type { TunnelLog } from './log';

function phase(s: TunnelState): string | undefined {
  switch (s.status) {
    case 'starting':
      return s.pid ? vscode.l10n.t('Asking Cloudflare for a quick tunnel…') : vscode.l10n.t('Looking for cloudflared…');
    case 'connecting':
      return vscode.l10n.t('Got {0}; connecting to the edge…', s.url);
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
      { location: vscode.ProgressLocation.Notification, title: vscode.l10n.t('MCP Tunnel'), cancellable: true },
      async (progress, token) => {
        const cancel = token.onCancellationRequested(() => void controller.stop());
        const sub = controller.onDidChangeState((s) => {
          const m = phase(s);
          if (m) progress.report({ message: m });
        });
        progress.report({ message: vscode.l10n.t('Starting a tunnel to {0}…', joinUrl(localUrlOf(target), target.path)) });
        try {
          return await (restart ? controller.restart(target) : controller.start(target, options));
        } finally {
          sub.dispose();
          cancel.dispose();
        }
      },
    );
  } catch (err) {
    if (isTunnelBusyError(err)) {
      const restartNew = vscode.l10n.t('Restart with New Target');
      const stop = vscode.l10n.t('Stop');
      void vscode.window.showWarningMessage(err.message, restartNew, stop).then((a) => {
        if (a === restartNew) void runStart(deps, target, true);
        if (a === stop) void controller.stop();
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
      const many = all.length > 1;
      const message = secret
        ? many ? vscode.l10n.t('Tunnel active ({0} shares on this tunnel). MCP URL: {1} (secret link: only requests with it get in)', all.length, shown) : vscode.l10n.t('Tunnel active. MCP URL: {0} (secret link: only requests with it get in)', shown)
        : many ? vscode.l10n.t('Tunnel active and OPEN ({0} shares on this tunnel): anyone with the URL reaches your server. MCP URL: {1}', all.length, shown) : vscode.l10n.t('Tunnel active and OPEN: anyone with the URL reaches your server. MCP URL: {0}', shown);
      const copy = vscode.l10n.t('Copy MCP URL');
      const open = vscode.l10n.t('Open');
      const shownMessage = secret ? vscode.window.showInformationMessage(message, copy, open) : vscode.window.showWarningMessage(message, copy, open);
      void shownMessage.then((a) => {
        if (a === copy) void (isPrimary || !share ? vscode.commands.executeCommand('mcpTunnel.copyMcpUrl') : vscode.commands.executeCommand('mcpTunnel.copyShareMcpUrl', share.id));
        if (a === open) void vscode.commands.executeCommand('mcpTunnel.openUrl');
      });
      break;
    }
    case 'connecting':
      void vscode.window.showWarningMessage(
        vscode.l10n.t("The tunnel URL {0} is issued, but cloudflared has not connected to Cloudflare's edge yet; it keeps trying. If UDP is blocked here, set the protocol to http2.", snap.url ?? ''),
        vscode.l10n.t('Show Log'),
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
  const A = {
    install: vscode.l10n.t('Install cloudflared'),
    locate: vscode.l10n.t('Locate cloudflared…'),
    showLog: vscode.l10n.t('Show Log'),
    http2: vscode.l10n.t('Use HTTP/2 and Retry'),
    setToken: vscode.l10n.t('Set Tunnel Token…'),
    settings: vscode.l10n.t('Open Settings'),
    retry: vscode.l10n.t('Retry'),
  };
  const actions: string[] = [];
  switch (error.code) {
    case 'not-found':
      actions.push(A.install, A.locate);
      if (vscode.env.remoteName) actions.push(OPEN_REMOTE_SETTINGS());
      break;
    case 'not-executable':
    case 'not-cloudflared':
      actions.push(A.locate, A.showLog);
      break;
    case 'edge-unreachable':
      actions.push(A.http2, A.showLog);
      break;
    case 'no-token':
      actions.push(A.setToken, A.settings);
      break;
    default:
      actions.push(A.retry, A.showLog);
  }
  // Notifications render no Markdown code spans: show `brew install cloudflared` as "brew install cloudflared".
  const message = error.message.replace(/`([^`]+)`/g, '"$1"') + (error.code === 'not-found' ? remoteHint() : '');
  void vscode.window.showErrorMessage(vscode.l10n.t('MCP Tunnel: {0}', message), ...actions).then(async (a) => {
    if (a && a === OPEN_REMOTE_SETTINGS()) return void vscode.commands.executeCommand('workbench.action.openRemoteSettings');
    switch (a) {
      case A.install:
        // Installs the managed copy, then starts what failed.
        if (await vscode.commands.executeCommand<boolean>('mcpTunnel.installCloudflared')) await runStart(deps, target, false);
        break;
      case A.locate:
        await vscode.commands.executeCommand('mcpTunnel.locateCloudflared');
        break;
      case A.http2:
        await vscode.workspace.getConfiguration('mcpTunnel').update('protocol', 'http2', vscode.ConfigurationTarget.Global);
        await runStart(deps, target, false);
        break;
      case A.setToken:
        await vscode.commands.executeCommand('mcpTunnel.setTunnelToken');
        break;
      case A.settings:
        await vscode.commands.executeCommand('workbench.action.openSettings', 'mcpTunnel.namedTunnel');
        break;
      case A.retry:
        await runStart(deps, target, false);
        break;
      case A.showLog:
        deps.log.show();
        break;
    }
  });
}

/** Start Tunnel…: port, host and path, validated as you type. */
export async function askTarget(def: TunnelTarget, allowedHosts: readonly string[], title = vscode.l10n.t('Start Tunnel')): Promise<TunnelTarget | undefined> {
  // Typed by the user, yet held to the same rule as every other source: loopback or allowed.
  const check = (t: Partial<TunnelTarget>) => validateTarget({ ...def, ...t }, { allowedHosts, howToAllow: ALLOW_HOST_HINT });
  const port = await vscode.window.showInputBox({
    title: vscode.l10n.t('{0} (1/4): local port', title),
    prompt: vscode.l10n.t('Port of the local server to expose'),
    value: String(def.port),
    validateInput: (v) => {
      const r = check({ port: Number(v.trim()) });
      return r.ok || !/port/i.test(r.message) ? undefined : r.message;
    },
  });
  if (port === undefined) return undefined;
  const host = await vscode.window.showInputBox({
    title: vscode.l10n.t('{0} (2/4): local host', title),
    prompt: vscode.l10n.t('Host of the local server (usually localhost)'),
    value: def.host,
    validateInput: (v) => {
      const r = check({ port: Number(port), host: v.trim() });
      return r.ok ? undefined : r.message;
    },
  });
  if (host === undefined) return undefined;
  const path = await vscode.window.showInputBox({
    title: vscode.l10n.t('{0} (3/4): MCP endpoint path', title),
    prompt: vscode.l10n.t('Path of the MCP endpoint on that server; the public MCP URL is the tunnel URL plus this path'),
    value: def.path,
    validateInput: (v) => {
      const r = check({ port: Number(port), host: host.trim(), path: v.trim() });
      return r.ok ? undefined : r.message;
    },
  });
  if (path === undefined) return undefined;
  const modes: (vscode.QuickPickItem & { access: AccessMode })[] = [
    { access: 'secret', label: `$(lock) ${vscode.l10n.t('Secret link')}`, description: def.access !== 'open' ? vscode.l10n.t('recommended, your default') : vscode.l10n.t('recommended'), detail: vscode.l10n.t('Only requests with the share secret (in the MCP URL you copy) get in; the rest get 401.') },
    { access: 'open', label: `$(unlock) ${vscode.l10n.t('Open')}`, description: def.access === 'open' ? vscode.l10n.t('your default') : '', detail: vscode.l10n.t('Anyone who learns the public URL reaches your server.') },
  ];
  const mode = await vscode.window.showQuickPick(def.access === 'open' ? [...modes].reverse() : modes, {
    title: vscode.l10n.t('{0} (4/4): who gets in', title),
    placeHolder: vscode.l10n.t('Access to the public URL'),
  });
  if (mode === undefined) return undefined;
  const r = check({ port: Number(port), host: host.trim(), path: path.trim(), access: mode.access });
  return r.ok ? r.target : undefined;
}

/** "Locate cloudflared…": pick a file, check it really is cloudflared, then save the setting. */
export async function locateCloudflared(log: TunnelLog): Promise<boolean> {
  const picked = await vscode.window.showOpenDialog({
    title: vscode.l10n.t('Locate cloudflared'),
    openLabel: vscode.l10n.t('Use this cloudflared'),
    canSelectMany: false,
    canSelectFolders: false,
    ...(process.platform === 'win32' ? { filters: { [vscode.l10n.t('Executables')]: ['exe', 'cmd'] } } : {}),
  });
  const file = picked?.[0]?.fsPath;
  if (!file) return false;
  try {
    const version = await readVersion(file, 'the chosen file');
    await vscode.workspace.getConfiguration('mcpTunnel').update('cloudflaredPath', file, vscode.ConfigurationTarget.Global);
    log.info(`cloudflared path set to ${file} (version ${version}).`);
    void vscode.window.showInformationMessage(vscode.l10n.t('Using cloudflared {0} at {1}.', version, file));
    return true;
  } catch (err) {
    void vscode.window.showErrorMessage((err as Error).message);
    return false;
  }
}

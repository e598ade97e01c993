import * as path from 'node:path';
/** Composition root: build objects, wire events, push disposables. No logic. */
import * as vscode from 'vscode';
import { findCloudflared } from './core/cloudflared/locate';
import { DEFAULT_RESTART_POLICY, TunnelController } from './core/tunnelController';
import { mcpUrlFor, shareInputOf } from './core/shares/clientConfigs';
import { isLive, type CloudflaredInfo } from './core/model/tunnelState';
import { registerCommands, TUNNEL_TOKEN_KEY } from './vscode/commands';
import { createShareSecretStore } from './vscode/shareSecrets';
import { shareKey } from './core/shares/shares';
import { readConfig, SECTION, type ConfigProblem, type TunnelConfig } from './vscode/config';
import { TunnelLog } from './vscode/log';
import type { ShareServer, ShareServerDeps } from './vscode/shareServer';
import { loadShareServer, SHARE_SERVER_COMMANDS } from './vscode/shareServerModule';
import { PROVIDER_ID, TunnelMcpProvider } from './vscode/mcpProvider';
import { QrPanel } from './vscode/qrView';
import { LazyInspector } from './vscode/panelsModule';
import { lifetimeInMinutes, type LifetimeRequest } from './core/shares/lifetime';
import { TunnelStatusBar } from './vscode/statusBar';
import { TunnelTreeProvider } from './vscode/tunnelTree';
import { runStart } from './vscode/ui';
import { ReachabilityMonitor, type ReachabilityCheck } from './core/doctor/monitor';
import type * as Doctor from './core/doctor/reachability';
import type { InstallDeps } from './vscode/installCloudflared';
import { loadInstallUi, managedCloudflaredPath } from './vscode/installModule';

/** What `activate` returns: the extension-host tests drive and read these. */
export interface McpTunnelExtensionApi {
  controller: TunnelController;
  tree: TunnelTreeProvider;
  mcp: TunnelMcpProvider;
  statusBarText(): string;
  config(): TunnelConfig;
  /** Settings problems reported at the last read. */
  configProblems(): ConfigProblem[];
  checkCloudflared(): Promise<CloudflaredInfo | undefined>;
}

/** @deprecated Misspelled: use {@link McpTunnelExtensionApi}. Kept so existing imports still compile. */
export type MpcTunnelExtensionApi = McpTunnelExtensionApi;

let controller: TunnelController | undefined;

export function activate(context: vscode.ExtensionContext): McpTunnelExtensionApi {
  const log = new TunnelLog();
  let { config, problems } = readConfig();
  const warn = (ps: ConfigProblem[]) => {
    for (const p of ps) {
      log.warn(p.message);
      void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: {0}', p.message), vscode.l10n.t('Open Settings')).then((a) => a && vscode.commands.executeCommand('workbench.action.openSettings', p.setting));
    }
  };
  warn(problems);

  const settingName = 'the setting `mcpTunnel.cloudflaredPath`';
  // The explicit setting, then the copy Install cloudflared… put in global storage, then PATH.
  const lookup = () => findCloudflared({ ...(config.cloudflaredPath ? { explicitPath: config.cloudflaredPath } : {}), settingName, managedPath: managedCloudflaredPath(context) });
  const namedTunnel = () =>
    config.tunnelMode === 'named' ? { hostname: config.namedHostname, token: () => Promise.resolve(context.secrets.get(TUNNEL_TOKEN_KEY)) } : undefined;
  // A named tunnel's hostname is stable: so is its share secret (secret storage), until rotated.
  const shareSecretStore = () => (config.tunnelMode === 'named' ? createShareSecretStore(context.secrets, () => shareKey(config.target)) : undefined);
  const ctl = new TunnelController({
    findCloudflared: lookup,
    stateDir: context.globalStorageUri.fsPath,
    startTimeoutMs: config.startTimeoutMs,
    stopGraceMs: config.stopGraceMs,
    hostHeader: config.hostHeader,
    protocol: config.protocol,
    logLevel: config.logLevel,
    autoRestart: config.autoRestart && DEFAULT_RESTART_POLICY,
    named: namedTunnel(),
    access: config.target.access,
    shareSecretStore: shareSecretStore(),
    inspector: { maxEntries: config.inspector.maxEntries, captureBodies: config.inspector.captureBodies },
    autoStop: autoStopOf(config),
  });
  controller = ctl;
  // "Share for…": a share whose time was up says so (it is not an error).
  context.subscriptions.push(ctl.onDidStopShareByItself((e) => void vscode.window.showInformationMessage(vscode.l10n.t('MCP Tunnel: {0}', e.message))));
  // A new client on a share: who, from where, through which link; stopping it is one click.
  const newClients = ctl.recorder?.onDidSeeClient((c) => {
    if (!config.inspector.notifyNewClients) return;
    const share = ctl.listShares().find((x) => x.id === c.share_id);
    if (!share) return;
    const stop = vscode.l10n.t('Stop Share');
    const never = vscode.l10n.t("Don't Show Again");
    const message = c.country
      ? vscode.l10n.t('MCP Tunnel: {0} connected to {1} from {2} via its {3}.', c.client, share.name, c.country, c.link)
      : vscode.l10n.t('MCP Tunnel: {0} connected to {1} via its {2}.', c.client, share.name, c.link);
    void vscode.window
      .showInformationMessage(message, stop, never)
      .then((a) => {
        if (a === stop) void vscode.commands.executeCommand('mcpTunnel.stopShare', c.share_id);
        if (a === never) void vscode.workspace.getConfiguration(SECTION).update('inspector.notifyNewClients', false, vscode.ConfigurationTarget.Global);
      });
  });
  if (newClients) context.subscriptions.push(newClients);
  context.subscriptions.push(
    ctl.onDidRestart((e) => {
      if (e.state.status !== 'active' && e.state.status !== 'connecting') return;
      const msg = e.url && e.url !== e.previousUrl ? vscode.l10n.t('MCP Tunnel restarted after cloudflared stopped unexpectedly. The public URL changed to {0}; share the new MCP URL.', e.url) : vscode.l10n.t('MCP Tunnel restarted after cloudflared stopped unexpectedly.');
      const copy = vscode.l10n.t('Copy MCP URL');
      const showLog = vscode.l10n.t('Show Log');
      void vscode.window.showWarningMessage(msg, copy, showLog).then((a) => {
        if (a === copy) void vscode.commands.executeCommand('mcpTunnel.copyMcpUrl');
        if (a === showLog) log.show();
      });
    }),
  );
  context.subscriptions.push(ctl.onDidLog((e) => log.write(e)));

  // Context keys drive menus, `when` clauses and the welcome views.
  let cloudflared: CloudflaredInfo | undefined;
  /** Why the last lookup found nothing (its message names the cause and the fix). */
  let lookupError = '';
  const setKeys = () => {
    void vscode.commands.executeCommand('setContext', 'mcpTunnel.state', ctl.state.status);
    void vscode.commands.executeCommand('setContext', 'mcpTunnel.hasUrl', 'url' in ctl.state && !!ctl.state.url);
    void vscode.commands.executeCommand('setContext', 'mcpTunnel.access', ctl.snapshot().access ?? '');
  };
  setKeys();
  const checkCloudflared = async (): Promise<CloudflaredInfo | undefined> => {
    try {
      cloudflared = await lookup();
      log.info(`Using cloudflared ${cloudflared.version} at ${cloudflared.path}.`);
      // dist/install.js is loaded only for the managed copy, and only when its check is on.
      if (config.checkCloudflaredUpdates && cloudflared.path === managedCloudflaredPath(context)) void loadInstallUi().maybeOfferUpdate(installDeps, cloudflared, true);
    } catch (err) {
      cloudflared = undefined;
      lookupError = (err as Error).message;
      log.warn(lookupError);
    }
    void vscode.commands.executeCommand('setContext', 'mcpTunnel.cloudflaredMissing', !cloudflared);
    // The walkthrough's first step completes on it.
    if (cloudflared) void vscode.commands.executeCommand('setContext', 'mcpTunnel.cloudflaredFound', true);
    tree.refresh();
    return cloudflared;
  };
  context.subscriptions.push(
    ctl.onDidChangeState((s) => {
      setKeys();
      if (s.status === 'failed' && (s.error.code === 'not-found' || s.error.code === 'not-executable' || s.error.code === 'not-cloudflared')) {
        void vscode.commands.executeCommand('setContext', 'mcpTunnel.cloudflaredMissing', true);
      } else if (s.status === 'active' || s.status === 'connecting') {
        void vscode.commands.executeCommand('setContext', 'mcpTunnel.cloudflaredMissing', false);
        void vscode.commands.executeCommand('setContext', 'mcpTunnel.cloudflaredFound', true);
      }
      // The walkthrough's "start a tunnel" step completes on it (it stays set for the session).
      if (s.status === 'active') void vscode.commands.executeCommand('setContext', 'mcpTunnel.tunnelWasActive', true);
    }),
  );

  // Is the public URL reachable from the internet? Checked once a share is active, and on demand.
  const reachability = new ReachabilityMonitor(ctl, { check: doctorCheck(log), auto: () => config.checkReachability });
  context.subscriptions.push(reachability);
  const statusBar = new TunnelStatusBar(ctl, () => config.target);
  const tree = new TunnelTreeProvider(ctl, () => config.target, () => cloudflared, () => ctl.accessStats, reachability);
  // Look for cloudflared when the view is first shown, not at activation (no process at start-up).
  tree.onFirstVisible = () => void checkCloudflared();
  const treeView = vscode.window.createTreeView('mcpTunnel.status', { treeDataProvider: tree });
  // Metrics are read only while the view shows them.
  tree.setVisible(treeView.visible);
  context.subscriptions.push(treeView.onDidChangeVisibility((e) => tree.setVisible(e.visible)));
  context.subscriptions.push(statusBar, tree, treeView, log);
  const qr = new QrPanel();
  const inspector = new LazyInspector(ctl, vscode.Uri.joinPath(context.extensionUri, 'media'));
  context.subscriptions.push(
    qr,
    inspector,
    ctl.onDidChangeState((s) => {
      // The same URL Show QR Code shows (with the share secret behind the gate), or close it.
      const share = isLive(s) ? shareInputOf(s) : undefined;
      qr.update(share && mcpUrlFor(share, true), vscode.l10n.t('The tunnel URL changed.'));
    }),
  );
  const shareDeps: ShareServerDeps = {
    controller: ctl,
    log,
    stateDir: context.globalStorageUri.fsPath,
    // globalStorage/<extension id> sits in the profile folder, beside the user's mcp.json.
    userMcpJson: () => path.join(path.dirname(path.dirname(context.globalStorageUri.fsPath)), 'mcp.json'),
    // With headers for the origin: not through the public Start Tunnel command (whose arguments other extensions may pass).
    sharePort: async (target, originHeaders) => (originHeaders ? runStart(commandDeps, { ...target, access: config.target.access }, false, { originHeaders }) : vscode.commands.executeCommand('mcpTunnel.start', target)),
  };
  const installDeps: InstallDeps = { context, log, recheck: async () => void (await checkCloudflared()), explicitPath: () => config.cloudflaredPath };
  const commandDeps = { installCloudflared: async () => !!(await loadInstallUi().installWithProgress(installDeps)), controller: ctl, log, defaultTarget: () => config.target, recheckCloudflared: async () => void (await checkCloudflared()), findCloudflared: async () => (await checkCloudflared()) ?? { error: lookupError }, qr, inspector, secrets: context.secrets, allowedHosts: () => config.allowedHosts, reachability };
  context.subscriptions.push(
    ...registerCommands(commandDeps),
  );
  // Loaded on the first of its commands (or an agent's share_mcp_server), not at activation.
  let shareServer: ShareServer | undefined;
  const sharing = (): ShareServer => (shareServer ??= loadShareServer().createShareServer(shareDeps));
  context.subscriptions.push(
    ...SHARE_SERVER_COMMANDS.map((id) => vscode.commands.registerCommand(id, (...args: unknown[]) => sharing().handlers[id](...args))),
    { dispose: () => shareServer?.dispose() },
  );

  const version = (context.extension.packageJSON as { version?: string }).version ?? '0.0.0';
  const mcp = new TunnelMcpProvider(ctl, version, () => config, log, (name) => sharing().shareForAgent(name), reachability);
  context.subscriptions.push(mcp, vscode.lm.registerMcpServerDefinitionProvider(PROVIDER_ID, mcp));

  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (!e.affectsConfiguration(SECTION)) return;
      const prevPath = config.cloudflaredPath;
      const prevAccess = config.target.access;
      ({ config, problems } = readConfig());
      const running = ctl.snapshot().access;
      if (config.target.access !== prevAccess && running && running !== config.target.access) {
        const message =
          config.target.access === 'secret'
            ? vscode.l10n.t('New tunnels will require the share secret. The running tunnel keeps its mode until it restarts (a quick tunnel gets a new URL).')
            : vscode.l10n.t('New tunnels will be open to anyone with the URL. The running tunnel keeps its mode until it restarts (a quick tunnel gets a new URL).');
        void vscode.window
          .showInformationMessage(message, vscode.l10n.t('Restart Tunnel'))
          .then((a) => a && vscode.commands.executeCommand('mcpTunnel.restart'));
      }
      warn(problems);
      ctl.updateOptions({ startTimeoutMs: config.startTimeoutMs, stopGraceMs: config.stopGraceMs, hostHeader: config.hostHeader, protocol: config.protocol, logLevel: config.logLevel, autoRestart: config.autoRestart && DEFAULT_RESTART_POLICY, named: namedTunnel(), access: config.target.access, shareSecretStore: shareSecretStore(), autoStop: autoStopOf(config) });
      statusBar.render();
      tree.refresh();
      if (prevPath !== config.cloudflaredPath) void checkCloudflared();
    }),
  );

  // A host killed earlier (crash, SIGKILL) may have left cloudflared serving a public URL: end it.
  const reap = setTimeout(() => {
    void ctl.reapOrphans().then((rs) => {
      const n = rs.filter((r) => r.outcome === 'ended').length;
      if (n) void vscode.window.showInformationMessage(n > 1 ? vscode.l10n.t('MCP Tunnel ended {0} cloudflared processes left running by an earlier session.', n) : vscode.l10n.t('MCP Tunnel ended a cloudflared process left running by an earlier session.'));
    });
  }, 1000);
  context.subscriptions.push({ dispose: () => clearTimeout(reap) });

  return {
    controller: ctl,
    tree,
    mcp,
    statusBarText: () => statusBar.text,
    config: () => config,
    configProblems: () => problems,
    checkCloudflared,
  };
}

/**
 * The doctor as the extension runs it. `MCP_TUNNEL_DOCTOR_CONNECT_TO` (`host=addr:port`, as the
 * CLI's) points it elsewhere: the e2e tests aim it at the fake cloudflared's loopback edge. It comes
 * from the editor's own environment, which no workspace sets; read at each check.
 */
function doctorCheck(log: TunnelLog): ReachabilityCheck {
  return (target, onProgress) => {
    // dist/doctor.js, loaded on the first check (a computed require: esbuild leaves it out of extension.js).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const doctor = require(path.join(__dirname, 'doctor.js')) as typeof Doctor;
    return doctor.redirectedCheck(() => {
      const spec = process.env['MCP_TUNNEL_DOCTOR_CONNECT_TO'];
      try {
        return spec ? doctor.parseConnectTo(spec) : undefined;
      } catch (err) {
        log.warn(`MCP_TUNNEL_DOCTOR_CONNECT_TO ignored: ${(err as Error).message}`);
        return undefined;
      }
    })(target, onProgress);
  };
}

/** The settings' default lifetime of a new share (`mcpTunnel.autoStop.*`), or undefined: until stopped. */
function autoStopOf(config: TunnelConfig): LifetimeRequest | undefined {
  return lifetimeInMinutes(config.autoStop.afterMinutes, config.autoStop.idleMinutes);
}

/** VS Code gives deactivate about 5 s: cloudflared is stopped well within it. */
export async function deactivate(): Promise<void> {
  const c = controller;
  controller = undefined;
  if (c) {
    await c.shutdown(3000);
    c.dispose();
  }
}

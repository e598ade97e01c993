/** One command table and one registerCommands(); handlers delegate to the controller and ui.ts. */
import * as vscode from 'vscode';
import { INSTALL_URL } from '../core/cloudflared';
import { isLive, sharePathOf, type TunnelState, type TunnelTarget } from '../core/tunnelState';
import { maskSharePath } from '../core/format';
import type { TunnelController } from '../core/tunnelController';
import type { TunnelLog } from './log';
import type { TunnelTreeRow } from './tunnelTree';
import { CLIENT_KINDS, clientConfig, mcpUrlFor, shareInputOf } from '../core/clientConfigs';
import type { QrPanel } from './qrView';
import { askTarget, locateCloudflared, runStart } from './ui';
import { validateTarget } from '../core/target';
import { ALLOW_HOST_HINT } from './config';

export const enum CommandId {
  Start = 'mcpTunnel.start',
  StartWith = 'mcpTunnel.startWith',
  Stop = 'mcpTunnel.stop',
  Restart = 'mcpTunnel.restart',
  CopyUrl = 'mcpTunnel.copyUrl',
  CopyMcpUrl = 'mcpTunnel.copyMcpUrl',
  OpenUrl = 'mcpTunnel.openUrl',
  ShowLog = 'mcpTunnel.showLog',
  ShowActions = 'mcpTunnel.showActions',
  LocateCloudflared = 'mcpTunnel.locateCloudflared',
  InstallCloudflared = 'mcpTunnel.installCloudflared',
  CopyItem = 'mcpTunnel.copyItem',
  OpenItem = 'mcpTunnel.openItem',
  CopyClientConfig = 'mcpTunnel.copyClientConfig',
  SetTunnelToken = 'mcpTunnel.setTunnelToken',
  ClearTunnelToken = 'mcpTunnel.clearTunnelToken',
  ShowQr = 'mcpTunnel.showQr',
  RotateSecret = 'mcpTunnel.rotateSecret',
}

export interface CommandDeps {
  controller: TunnelController;
  log: TunnelLog;
  defaultTarget: () => TunnelTarget;
  /** Re-check cloudflared after the path changed (updates the welcome view). */
  recheckCloudflared: () => Promise<void>;
  qr: QrPanel;
  secrets: vscode.SecretStorage;
  /** Non-loopback hosts the user allowed (`mcpTunnel.allowedHosts`). */
  allowedHosts: () => readonly string[];
}

export const TUNNEL_TOKEN_KEY = 'mcpTunnel.namedTunnel.token';

async function copy(text: string | null | undefined, what: string): Promise<void> {
  if (!text) {
    void vscode.window.showWarningMessage(`No ${what} yet: start the tunnel first.`);
    return;
  }
  await vscode.env.clipboard.writeText(text);
  vscode.window.setStatusBarMessage(`$(check) Copied ${what}`, 3000);
}

export function registerCommands(deps: CommandDeps): vscode.Disposable[] {
  const { controller, log } = deps;
  const start = (target: TunnelTarget, restart = false): Promise<TunnelState | undefined> => runStart(deps, target, restart);

  const handlers: Record<CommandId, (...args: never[]) => unknown> = {
    // Optional `{ port, host, path, access }` (keybindings, other extensions): validated like an
    // agent's input, missing fields from the settings.
    [CommandId.Start]: (args?: unknown) => {
      const def = deps.defaultTarget();
      if (args === undefined || args === null) return start(def);
      if (typeof args !== 'object' || Array.isArray(args)) {
        return void vscode.window.showErrorMessage('MCP Tunnel: Start Tunnel takes an optional object { port, host, path, access }.');
      }
      const a = args as Record<string, unknown>;
      const checked = validateTarget({ port: a['port'] ?? def.port, host: a['host'] ?? def.host, path: a['path'] ?? def.path, access: a['access'] ?? def.access }, { allowedHosts: deps.allowedHosts(), howToAllow: ALLOW_HOST_HINT });
      if (!checked.ok) return void vscode.window.showErrorMessage(`MCP Tunnel: ${checked.message}`);
      return start(checked.target);
    },
    [CommandId.StartWith]: async () => {
      const target = await askTarget(deps.defaultTarget(), deps.allowedHosts());
      return target ? start(target) : undefined;
    },
    [CommandId.Stop]: () => controller.stop(),
    [CommandId.Restart]: () => {
      const s = controller.state;
      const def = deps.defaultTarget();
      if (!('target' in s && s.target)) return start(def, true);
      // A restart keeps the tunnel's target but never weakens access: if the tunnel or the
      // setting asks for the share secret (say the user just switched the setting), it gets one.
      const access = s.target.access === 'open' && def.access === 'open' ? 'open' : 'secret';
      return start({ ...s.target, access }, true);
    },
    [CommandId.CopyUrl]: () => copy(controller.snapshot().url, controller.snapshot().access === 'secret' ? 'public URL (requests also need the share secret)' : 'public URL'),
    [CommandId.CopyMcpUrl]: () => copy(controller.snapshot().mcp_url, 'MCP URL'),
    [CommandId.OpenUrl]: async () => {
      const s = controller.state;
      const url = controller.snapshot().url;
      if (!url) return void vscode.window.showWarningMessage('No public URL yet: start the tunnel first.');
      // Behind the gate the bare URL answers 401: open it through the secret path.
      const sharePath = sharePathOf(s);
      await vscode.env.openExternal(vscode.Uri.parse(sharePath ? `${url}${sharePath}/` : url));
    },
    [CommandId.RotateSecret]: (): true | undefined => {
      const s = controller.state;
      if (!isLive(s)) return void vscode.window.showWarningMessage('No tunnel is running: the share secret is created when a tunnel starts in secret mode.');
      if (!s.sharePath) {
        return void vscode.window.showWarningMessage('This tunnel is open (no share secret): anyone with the URL gets in. Set mcpTunnel.access to "secret" and restart the tunnel to require one.', 'Open Settings').then((a) => {
          if (a) void vscode.commands.executeCommand('workbench.action.openSettings', 'mcpTunnel.access');
        });
      }
      if (!controller.rotateSecret()) return undefined;
      void vscode.window
        .showInformationMessage('Share secret rotated: the old MCP URL and client configs no longer work, and connections made with them were closed. Share the new MCP URL.', 'Copy MCP URL', 'Copy MCP Client Config…')
        .then((a) => {
          if (a === 'Copy MCP URL') void vscode.commands.executeCommand(CommandId.CopyMcpUrl);
          if (a === 'Copy MCP Client Config…') void vscode.commands.executeCommand(CommandId.CopyClientConfig);
        });
      return true;
    },
    [CommandId.ShowLog]: () => log.show(),
    [CommandId.ShowActions]: () => showActions(deps),
    [CommandId.LocateCloudflared]: async () => {
      if (await locateCloudflared(log)) await deps.recheckCloudflared();
    },
    [CommandId.InstallCloudflared]: () => vscode.env.openExternal(vscode.Uri.parse(INSTALL_URL)),
    [CommandId.CopyItem]: (row: TunnelTreeRow) => copy(row?.value, row?.label ?? 'value'),
    [CommandId.OpenItem]: async (row: TunnelTreeRow) => {
      if (row?.value) await vscode.env.openExternal(vscode.Uri.parse(row.value));
    },
    // An optional client kind (`vscode`, `claude-code`, …) skips the pick: for keybindings and tests.
    [CommandId.CopyClientConfig]: async (kind?: unknown) => {
      const input = shareInput(deps);
      if (!input) return void vscode.window.showWarningMessage('No public URL yet: start the tunnel first.');
      const given = typeof kind === 'string' && (CLIENT_KINDS as readonly string[]).includes(kind) ? clientConfig(kind as (typeof CLIENT_KINDS)[number], input) : undefined;
      const config =
        given ??
        (
          await vscode.window.showQuickPick(
            CLIENT_KINDS.map((k) => clientConfig(k, input)).map((c) => ({ label: c.label, detail: c.detail, config: c })),
            { title: 'Copy MCP Client Config', placeHolder: 'Which client will connect to the tunnel?' },
          )
        )?.config;
      if (!config) return;
      await vscode.env.clipboard.writeText(config.text);
      vscode.window.setStatusBarMessage(`$(check) Copied the ${config.label} config`, 3000);
      return config.kind;
    },
    [CommandId.SetTunnelToken]: async () => {
      const token = await vscode.window.showInputBox({
        title: 'Set Tunnel Token',
        prompt: 'The token of your named Cloudflare Tunnel (Zero Trust dashboard → Networks → Tunnels, or `cloudflared tunnel token <name>`). Kept in VS Code secret storage.',
        password: true,
        ignoreFocusOut: true,
        validateInput: (v) => (/^[A-Za-z0-9+/=_-]{40,}$/.test(v.trim()) ? undefined : 'That does not look like a tunnel token (a long base64 string).'),
      });
      if (!token) return;
      await deps.secrets.store(TUNNEL_TOKEN_KEY, token.trim());
      log.info('Tunnel token saved in secret storage.');
      vscode.window.setStatusBarMessage('$(check) Tunnel token saved', 3000);
    },
    [CommandId.ClearTunnelToken]: async () => {
      await deps.secrets.delete(TUNNEL_TOKEN_KEY);
      log.info('Tunnel token removed from secret storage.');
      vscode.window.setStatusBarMessage('$(check) Tunnel token removed', 3000);
    },
    [CommandId.ShowQr]: () => {
      const input = shareInput(deps);
      if (!input) return void vscode.window.showWarningMessage('No public URL yet: start the tunnel first.');
      const url = mcpUrlFor(input, true);
      deps.qr.show(url, input.secret ? 'Scan to get the MCP URL (it includes the share secret: show it only to people you trust).' : 'Scan to get the public MCP URL. Anyone with it can reach your local server while the tunnel runs.');
      return url;
    },
  };
  return Object.entries(handlers).map(([id, fn]) => vscode.commands.registerCommand(id, fn as (...args: unknown[]) => unknown));
}

function shareInput(deps: CommandDeps): ReturnType<typeof shareInputOf> {
  return shareInputOf(deps.controller.state);
}

/** The status bar's click: the actions that fit the state. */
async function showActions(deps: CommandDeps): Promise<void> {
  const s = deps.controller.state;
  const t = deps.defaultTarget();
  type Pick = vscode.QuickPickItem & { command: CommandId };
  const items: Pick[] = [];
  if (!isLive(s) && s.status !== 'stopping') {
    items.push({ label: '$(play) Start Tunnel', description: `http://${t.host}:${t.port}${t.path}`, command: CommandId.Start });
    items.push({ label: '$(debug-alt) Start Tunnel…', description: 'choose port, host and path', command: CommandId.StartWith });
  }
  if ('url' in s && s.url) {
    items.push({ label: '$(copy) Copy MCP URL', description: maskSharePath(deps.controller.snapshot().mcp_url ?? '', sharePathOf(s)), command: CommandId.CopyMcpUrl });
    items.push({ label: '$(copy) Copy Public URL', description: s.url, command: CommandId.CopyUrl });
    items.push({ label: '$(link-external) Open Public URL', command: CommandId.OpenUrl });
    items.push({ label: '$(json) Copy MCP Client Config…', description: 'VS Code, Claude Code, Claude Desktop, Cursor', command: CommandId.CopyClientConfig });
    items.push({ label: '$(device-mobile) Show QR Code', command: CommandId.ShowQr });
    if (sharePathOf(s)) items.push({ label: '$(refresh) Rotate Share Secret', description: 'the old MCP URL stops working at once', command: CommandId.RotateSecret });
  }
  if (isLive(s) || s.status === 'failed') items.push({ label: '$(debug-restart) Restart Tunnel', command: CommandId.Restart });
  if (isLive(s)) items.push({ label: '$(debug-stop) Stop Tunnel', command: CommandId.Stop });
  items.push({ label: '$(output) Show Log', command: CommandId.ShowLog });
  const picked = await vscode.window.showQuickPick(items, { title: `MCP Tunnel — ${s.status}`, placeHolder: 'Choose an action' });
  if (picked) await vscode.commands.executeCommand(picked.command);
}


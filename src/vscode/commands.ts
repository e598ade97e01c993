/** One command table and one registerCommands(); handlers delegate to the controller and ui.ts. */
import * as vscode from 'vscode';
import { isLive, sharePathOf, type TunnelState, type TunnelTarget } from '../core/model/tunnelState';
import { maskSharePath } from '../core/util/format';
import type { TunnelController } from '../core/tunnelController';
import type { TunnelLog } from './log';
import type { TunnelTreeRow } from './tunnelTree';
import { CLIENT_KINDS, clientConfig, mcpUrlFor, shareInputOf, shareInputOfLink, shareInputOfShare, type ClientConfigInput } from '../core/shares/clientConfigs';
import type { ShareSnapshot } from '../core/shares/shares';
import type { QrPanel } from './qrView';
import { loadPanels, type LazyInspector } from './panelsModule';
import { lifetimeInMinutes, type LifetimeRequest } from '../core/shares/lifetime';
import { askTarget, locateCloudflared, runStart } from './ui';
import { validateTarget } from '../core/model/target';
import { ALLOW_HOST_HINT } from './config';
import type { ReachabilityMonitor } from '../core/doctor/monitor';

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
  FindCloudflared = 'mcpTunnel.findCloudflared',
  CopyItem = 'mcpTunnel.copyItem',
  OpenItem = 'mcpTunnel.openItem',
  CopyClientConfig = 'mcpTunnel.copyClientConfig',
  SetTunnelToken = 'mcpTunnel.setTunnelToken',
  ClearTunnelToken = 'mcpTunnel.clearTunnelToken',
  ShowQr = 'mcpTunnel.showQr',
  RotateSecret = 'mcpTunnel.rotateSecret',
  ShareLocalServer = 'mcpTunnel.shareLocalServer',
  StopShare = 'mcpTunnel.stopShare',
  CopyShareMcpUrl = 'mcpTunnel.copyShareMcpUrl',
  CopyShareClientConfig = 'mcpTunnel.copyShareClientConfig',
  ShowShareQr = 'mcpTunnel.showShareQr',
  RotateShareSecret = 'mcpTunnel.rotateShareSecret',
  CreateShareLink = 'mcpTunnel.createShareLink',
  RevokeShareLink = 'mcpTunnel.revokeShareLink',
  OpenInspector = 'mcpTunnel.openInspector',
  ChooseShareTools = 'mcpTunnel.chooseShareTools',
  SetShareLifetime = 'mcpTunnel.setShareLifetime',
  CheckTunnel = 'mcpTunnel.checkTunnel',
}

/** What Share For… offers (a function: the labels are translated when shown). */
const lifetimes = (): ReadonlyArray<{ label: string; afterMinutes?: number; idleMinutes?: number }> => [
  { label: vscode.l10n.t('15 minutes'), afterMinutes: 15 },
  { label: vscode.l10n.t('1 hour'), afterMinutes: 60 },
  { label: vscode.l10n.t('8 hours'), afterMinutes: 8 * 60 },
  { label: vscode.l10n.t('24 hours'), afterMinutes: 24 * 60 },
  { label: vscode.l10n.t('Until 30 minutes without a request'), idleMinutes: 30 },
  { label: vscode.l10n.t('Until 2 hours without a request'), idleMinutes: 120 },
  { label: vscode.l10n.t('Until I stop it') },
];

/** The expiries a link may have (Create Link…), and `mcpTunnel.links.defaultExpiry`'s values. */
export const linkExpiries = (): ReadonlyArray<{ id: string; label: string; ms: number | undefined }> => [
  { id: '1h', label: vscode.l10n.t('1 hour'), ms: 3_600_000 },
  { id: '24h', label: vscode.l10n.t('24 hours'), ms: 86_400_000 },
  { id: '7d', label: vscode.l10n.t('7 days'), ms: 7 * 86_400_000 },
  { id: 'never', label: vscode.l10n.t('Never'), ms: undefined },
];

export interface CommandDeps {
  controller: TunnelController;
  log: TunnelLog;
  defaultTarget: () => TunnelTarget;
  /** Re-check cloudflared after the path changed (updates the welcome view). */
  recheckCloudflared: () => Promise<void>;
  qr: QrPanel;
  inspector: LazyInspector;
  secrets: vscode.SecretStorage;
  /** Non-loopback hosts the user allowed (`mcpTunnel.allowedHosts`). */
  allowedHosts: () => readonly string[];
  /** The reachability doctor (Check Tunnel). */
  reachability: ReachabilityMonitor;
  /** Install cloudflared…: the managed copy, with progress; true when it was installed. */
  installCloudflared: () => Promise<boolean>;
  /** Looks for cloudflared now (runs `cloudflared --version`): what it found, or why nothing. */
  findCloudflared: () => Promise<{ version: string; path: string } | { error: string }>;
}

export const TUNNEL_TOKEN_KEY = 'mcpTunnel.namedTunnel.token';

/** `what` is already translated: "MCP URL", "public URL"… */
async function copy(text: string | null | undefined, what: string): Promise<void> {
  if (!text) {
    void vscode.window.showWarningMessage(vscode.l10n.t('No {0} yet: start the tunnel first.', what));
    return;
  }
  await vscode.env.clipboard.writeText(text);
  vscode.window.setStatusBarMessage(`$(check) ${vscode.l10n.t('Copied {0}', what)}`, 3000);
}

export function registerCommands(deps: CommandDeps): vscode.Disposable[] {
  /** What a config or QR code carries for this share, or for the link whose row `arg` is. */
  const inputOf = (arg: unknown, share: ShareSnapshot): ClientConfigInput | undefined => {
    const url = deps.controller.snapshot().url ?? undefined;
    const link = linkIdOf(arg);
    return link ? shareInputOfLink(url, share, link) : shareInputOfShare(url, share);
  };
  const { controller, log } = deps;
  const start = (target: TunnelTarget, restart = false): Promise<TunnelState | undefined> => runStart(deps, target, restart);

  const handlers: Record<CommandId, (...args: never[]) => unknown> = {
    // Optional `{ port, host, path, access }` (keybindings, other extensions): validated like an
    // agent's input, missing fields from the settings.
    [CommandId.Start]: (args?: unknown) => {
      const def = deps.defaultTarget();
      if (args === undefined || args === null) return start(def);
      if (typeof args !== 'object' || Array.isArray(args)) {
        return void vscode.window.showErrorMessage(vscode.l10n.t('MCP Tunnel: Start Tunnel takes an optional object {0}.', '{ port, host, path, access }'));
      }
      const a = args as Record<string, unknown>;
      const checked = validateTarget({ port: a['port'] ?? def.port, host: a['host'] ?? def.host, path: a['path'] ?? def.path, access: a['access'] ?? def.access }, { allowedHosts: deps.allowedHosts(), howToAllow: ALLOW_HOST_HINT });
      if (!checked.ok) return void vscode.window.showErrorMessage(vscode.l10n.t('MCP Tunnel: {0}', checked.message));
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
    [CommandId.CopyUrl]: () => copy(controller.snapshot().url, controller.snapshot().access === 'secret' ? vscode.l10n.t('public URL (requests also need the share secret)') : vscode.l10n.t('public URL')),
    [CommandId.CopyMcpUrl]: () => copy(controller.snapshot().mcp_url, vscode.l10n.t('MCP URL')),
    [CommandId.OpenUrl]: async () => {
      const s = controller.state;
      const url = controller.snapshot().url;
      if (!url) return void vscode.window.showWarningMessage(vscode.l10n.t('No public URL yet: start the tunnel first.'));
      // Behind the gate the bare URL answers 401: open it through the secret path.
      const sharePath = sharePathOf(s);
      await vscode.env.openExternal(vscode.Uri.parse(sharePath ? `${url}${sharePath}/` : url));
    },
    [CommandId.RotateSecret]: (): true | undefined => {
      const s = controller.state;
      if (!isLive(s)) return void vscode.window.showWarningMessage(vscode.l10n.t('No tunnel is running: the share secret is created when a tunnel starts in secret mode.'));
      if (!s.sharePath) {
        return void vscode.window.showWarningMessage(vscode.l10n.t('This tunnel is open (no share secret): anyone with the URL gets in. Set mcpTunnel.access to "secret" and restart the tunnel to require one.'), vscode.l10n.t('Open Settings')).then((a) => {
          if (a) void vscode.commands.executeCommand('workbench.action.openSettings', 'mcpTunnel.access');
        });
      }
      if (!controller.rotateSecret()) return undefined;
      const copyUrl = vscode.l10n.t('Copy MCP URL');
      const copyConfig = vscode.l10n.t('Copy MCP Client Config…');
      void vscode.window
        .showInformationMessage(vscode.l10n.t('Share secret rotated: the old MCP URL and client configs no longer work, and connections made with them were closed. Share the new MCP URL.'), copyUrl, copyConfig)
        .then((a) => {
          if (a === copyUrl) void vscode.commands.executeCommand(CommandId.CopyMcpUrl);
          if (a === copyConfig) void vscode.commands.executeCommand(CommandId.CopyClientConfig);
        });
      return true;
    },
    [CommandId.ShowLog]: () => log.show(),
    [CommandId.ShowActions]: () => showActions(deps),
    [CommandId.LocateCloudflared]: async () => {
      if (await locateCloudflared(log)) await deps.recheckCloudflared();
    },
    [CommandId.InstallCloudflared]: () => deps.installCloudflared(),
    // Check for cloudflared (the walkthrough's first step, when it was installed before MCP Tunnel):
    // the lookup runs when asked, never at start-up. True when found.
    [CommandId.FindCloudflared]: async () => {
      const found = await deps.findCloudflared();
      if ('path' in found) {
        void vscode.window.showInformationMessage(vscode.l10n.t('Found cloudflared {0} at {1}.', found.version, found.path));
        return true;
      }
      const install = vscode.l10n.t('Install cloudflared');
      const locate = vscode.l10n.t('Locate cloudflared…');
      void vscode.window.showWarningMessage(found.error, install, locate).then((a) => {
        if (a === install) void deps.installCloudflared();
        else if (a === locate) void vscode.commands.executeCommand(CommandId.LocateCloudflared);
      });
      return false;
    },
    [CommandId.CopyItem]: (row: TunnelTreeRow) => copy(row?.value, row?.label ?? vscode.l10n.t('value')),
    [CommandId.OpenItem]: async (row: TunnelTreeRow) => {
      if (row?.value) await vscode.env.openExternal(vscode.Uri.parse(row.value));
    },
    // An optional client kind (`vscode`, `claude-code`, …) skips the pick: for keybindings and tests.
    [CommandId.CopyClientConfig]: (kind?: unknown) => copyClientConfig(shareInput(deps), kind),
    // Share Local Server…: another server on the same tunnel (or the first, which starts it).
    [CommandId.ShareLocalServer]: async () => {
      const target = await askTarget(deps.defaultTarget(), deps.allowedHosts(), vscode.l10n.t('Share Local Server'));
      if (!target) return undefined;
      const state = await start(target);
      const share = controller.findShare(target);
      if (share?.problem) void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: {0}', share.problem));
      return state && share ? share.id : undefined;
    },
    [CommandId.StopShare]: async (arg?: unknown) => {
      const share = await pickShare(deps, arg, vscode.l10n.t('Stop Share'));
      if (!share) return false;
      const last = controller.listShares().length === 1;
      await controller.stopShare(share.id);
      vscode.window.setStatusBarMessage(`$(check) ${last ? vscode.l10n.t('Stopped sharing {0}; the tunnel stopped with its last share', share.name) : vscode.l10n.t('Stopped sharing {0}', share.name)}`, 4000);
      return true;
    },
    [CommandId.CopyShareMcpUrl]: async (arg?: unknown) => {
      const share = await pickShare(deps, arg, vscode.l10n.t('Copy MCP URL'));
      if (share) await copy(share.mcp_url, vscode.l10n.t('MCP URL of {0}', share.name));
      return share?.mcp_url ?? undefined;
    },
    // On a link's row: that recipient's config (its own secret).
    [CommandId.CopyShareClientConfig]: async (arg?: unknown, kind?: unknown) => {
      const share = await pickShare(deps, arg, vscode.l10n.t('Copy MCP Client Config'));
      return share ? copyClientConfig(inputOf(arg, share), kind) : undefined;
    },
    [CommandId.ShowShareQr]: async (arg?: unknown) => {
      const share = await pickShare(deps, arg, vscode.l10n.t('Show QR Code'));
      const input = share ? inputOf(arg, share) : undefined;
      if (!share || !input) return undefined;
      const url = mcpUrlFor(input, true);
      const link = linkIdOf(arg) ? share.links.find((l) => l.id === linkIdOf(arg)) : undefined;
      const whose = link ? vscode.l10n.t('link "{0}" of {1}', link.label, share.name) : share.name;
      deps.qr.show(url, input.secret ? vscode.l10n.t('Scan to get the MCP URL of {0} (it includes its secret: show it only to people you trust).', whose) : vscode.l10n.t('Scan to get the public MCP URL of {0}. Anyone with it can reach that server.', whose));
      return url;
    },
    // From the palette: every share; from a share's menu or its Internet row: that one.
    [CommandId.CheckTunnel]: async (arg?: unknown) => {
      if (controller.state.status !== 'active') return void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: no active tunnel to check. Start the tunnel first (a tunnel still connecting is not reachable yet).'));
      const share = arg === undefined ? undefined : await pickShare(deps, arg, vscode.l10n.t('Check Tunnel'));
      if (arg !== undefined && !share) return undefined;
      const results = await vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title: vscode.l10n.t('Checking the tunnel from the internet…') }, () => deps.reachability.check(share?.id));
      const names = new Map(controller.listShares().map((x) => [x.id, x.name]));
      const ids = share ? [share.id] : [...names.keys()];
      const failed = ids.map((id) => ({ id, r: deps.reachability.result(id) })).filter((x) => x.r && !x.r.ok);
      for (const { id, r } of failed) log.warn(`Check Tunnel: ${names.get(id) ?? id}: ${r?.message ?? ''}${r?.fix ? ` ${r.fix}` : ''}`);
      if (failed.length === 0) {
        const rtts = results.map((r) => r.rtt_ms).filter((n): n is number => n !== null);
        vscode.window.setStatusBarMessage(`$(pass) ${rtts.length ? vscode.l10n.t('MCP Tunnel: reachable from the internet · {0} ms', Math.max(...rtts)) : vscode.l10n.t('MCP Tunnel: reachable from the internet')}`, 5000);
        return results;
      }
      const [one] = failed;
      const label = failed.length === 1 && one ? `${names.size > 1 ? `${names.get(one.id) ?? one.id}: ` : ''}${one.r?.message ?? ''}${one.r?.fix ? ` ${one.r.fix}` : ''}` : vscode.l10n.t('{0} shares are not reachable from the internet; the view says why for each.', failed.length);
      void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: {0}', label), vscode.l10n.t('Show Log')).then((a) => a && log.show());
      return results;
    },
    [CommandId.RotateShareSecret]: async (arg?: unknown) => {
      const share = await pickShare(deps, arg, vscode.l10n.t('Rotate Share Secret'), (x) => x.access === 'secret');
      if (!share) return undefined;
      if (!controller.rotateSecret(share.id)) return undefined;
      void vscode.window.showInformationMessage(vscode.l10n.t('The secret of {0} was rotated: its old MCP URL and configs no longer work (the other shares are untouched). Share the new one.', share.name), vscode.l10n.t('Copy MCP URL')).then((a) => {
        if (a) void vscode.commands.executeCommand(CommandId.CopyShareMcpUrl, share.id);
      });
      return true;
    },
    // Optional arguments (tests, keybindings): the share, and `{ label, expiry: '1h' | '24h' | '7d' | 'never' }`.
    [CommandId.CreateShareLink]: async (arg?: unknown, opts?: unknown) => {
      const share = await pickShare(deps, arg, vscode.l10n.t('Create Link'), (x) => x.access === 'secret');
      if (!share) return undefined;
      const given = (opts ?? {}) as { label?: unknown; expiry?: unknown };
      const label =
        typeof given.label === 'string'
          ? given.label
          : await vscode.window.showInputBox({
              title: vscode.l10n.t('Create Link for {0}', share.name),
              prompt: vscode.l10n.t('Who is it for? The label names this link in the view and the inspector; the link gets its own secret, revocable alone.'),
              placeHolder: vscode.l10n.t('Alice, claude.ai, my phone…'),
              ignoreFocusOut: true,
              validateInput: (v) => (v.trim() ? undefined : vscode.l10n.t('Give it a name.')),
            });
      if (!label?.trim()) return undefined;
      const def = vscode.workspace.getConfiguration('mcpTunnel.links').get<string>('defaultExpiry', '24h');
      const expiries = linkExpiries();
      let expiry = expiries.find((e) => e.id === given.expiry);
      if (!expiry) {
        const ordered = [...expiries].sort((a, b) => (a.id === def ? -1 : b.id === def ? 1 : 0));
        const picked = await vscode.window.showQuickPick(
          ordered.map((e) => ({ label: e.label, description: e.id === def ? vscode.l10n.t('default ({0})', 'mcpTunnel.links.defaultExpiry') : '', e })),
          { title: vscode.l10n.t('Link "{0}" expires after', label.trim()), placeHolder: vscode.l10n.t('After that it gets 401 and its open streams are cut.') },
        );
        expiry = picked?.e;
      }
      if (!expiry) return undefined;
      const link = controller.createLink(share.id, { label: label.trim(), ...(expiry.ms !== undefined ? { expiresInMs: expiry.ms } : {}) });
      if (!link) return void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: links need a running secret share.'));
      void vscode.window
        .showInformationMessage(
          link.expires_at
            ? vscode.l10n.t('Link "{0}" for {1}, until {2}: its own secret, revocable alone.', link.label, share.name, new Date(link.expires_at).toLocaleString())
            : vscode.l10n.t('Link "{0}" for {1}, without expiry: its own secret, revocable alone.', link.label, share.name),
          vscode.l10n.t('Copy MCP URL'),
        )
        .then((a) => {
          if (a) void copy(link.mcp_url, vscode.l10n.t('MCP URL of link "{0}"', link.label));
        });
      return link.id;
    },
    // Optional argument: the link's tree row, or `{ shareId, linkId }`; else a pick of every link.
    [CommandId.RevokeShareLink]: async (arg?: unknown) => {
      const a = (arg ?? {}) as { shareId?: unknown; linkId?: unknown };
      let target = typeof a.shareId === 'string' && typeof a.linkId === 'string' ? { shareId: a.shareId, linkId: a.linkId } : undefined;
      if (!target) {
        const all = controller.listShares().flatMap((sh) => sh.links.map((l) => ({ label: l.label, description: sh.name, detail: l.expires_at ? vscode.l10n.t('until {0}', new Date(l.expires_at).toLocaleString()) : vscode.l10n.t('no expiry'), shareId: sh.id, linkId: l.id })));
        if (all.length === 0) return void vscode.window.showInformationMessage(vscode.l10n.t('MCP Tunnel: no links to revoke (Create Link… makes one per recipient).'));
        const picked = await vscode.window.showQuickPick(all, { title: vscode.l10n.t('Revoke Link'), placeHolder: vscode.l10n.t('Which link? It gets 401 from now on.') });
        target = picked ? { shareId: picked.shareId, linkId: picked.linkId } : undefined;
      }
      if (!target) return false;
      const ok = controller.revokeLink(target.shareId, target.linkId);
      if (ok) vscode.window.setStatusBarMessage(`$(check) ${vscode.l10n.t('Link revoked: it gets 401 from now on')}`, 4000);
      return ok;
    },
    // Optional argument: the share (id or tree row). Returns the share id whose page is open.
    [CommandId.OpenInspector]: async (arg?: unknown) => {
      const share = await pickShare(deps, arg, vscode.l10n.t('Open Inspector'));
      if (!share) return undefined;
      deps.inspector.open(share);
      return share.id;
    },
    // Optional arguments: the share, and `{ tools?: string[] | null, readOnly?: boolean }` to set it without asking.
    [CommandId.ChooseShareTools]: async (arg?: unknown, opts?: unknown) => {
      const share = await pickShare(deps, arg, vscode.l10n.t('Choose Shared Tools'));
      if (!share) return undefined;
      return loadPanels().chooseShareTools(controller, share, opts);
    },
    // Optional arguments: the share, and `{ afterMinutes?, idleMinutes? }` (0 or none: until stopped).
    [CommandId.SetShareLifetime]: async (arg?: unknown, opts?: unknown) => {
      const share = await pickShare(deps, arg, vscode.l10n.t('Share For'));
      if (!share) return undefined;
      let req: LifetimeRequest | undefined;
      if (opts && typeof opts === 'object' && ('afterMinutes' in opts || 'idleMinutes' in opts)) {
        const o = opts as { afterMinutes?: unknown; idleMinutes?: unknown };
        const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);
        req = lifetimeInMinutes(num(o.afterMinutes), num(o.idleMinutes));
      } else {
        const picked = await vscode.window.showQuickPick(
          lifetimes().map((l) => ({ label: l.label, l })),
          {
            title: vscode.l10n.t('Share For — {0}', share.name),
            placeHolder: !share.stops_at
              ? vscode.l10n.t('Stop this share by itself after:')
              : share.stop_reason === 'idle'
                ? vscode.l10n.t('It stops by itself after {0} min without requests. Change it to:', share.idle_stop_minutes ?? 0)
                : vscode.l10n.t('It stops by itself at {0}. Change it to:', new Date(share.stops_at).toLocaleTimeString()),
          },
        );
        if (!picked) return undefined;
        req = lifetimeInMinutes(picked.l.afterMinutes, picked.l.idleMinutes);
      }
      try {
        if (!controller.setLifetime(share.id, req)) return void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: that share is no longer on the tunnel.'));
      } catch (err) {
        return void vscode.window.showErrorMessage(vscode.l10n.t('MCP Tunnel: {0}', (err as Error).message));
      }
      return controller.listShares().find((x) => x.id === share.id)?.stops_at ?? null;
    },
    [CommandId.SetTunnelToken]: async () => {
      const token = await vscode.window.showInputBox({
        title: vscode.l10n.t('Set Tunnel Token'),
        prompt: vscode.l10n.t('The token of your named Cloudflare Tunnel (Zero Trust dashboard → Networks → Tunnels, or {0}). Kept in VS Code secret storage.', '`cloudflared tunnel token <name>`'),
        password: true,
        ignoreFocusOut: true,
        validateInput: (v) => (/^[A-Za-z0-9+/=_-]{40,}$/.test(v.trim()) ? undefined : vscode.l10n.t('That does not look like a tunnel token (a long base64 string).')),
      });
      if (!token) return;
      await deps.secrets.store(TUNNEL_TOKEN_KEY, token.trim());
      log.info('Tunnel token saved in secret storage.');
      vscode.window.setStatusBarMessage(`$(check) ${vscode.l10n.t('Tunnel token saved')}`, 3000);
    },
    [CommandId.ClearTunnelToken]: async () => {
      await deps.secrets.delete(TUNNEL_TOKEN_KEY);
      log.info('Tunnel token removed from secret storage.');
      vscode.window.setStatusBarMessage(`$(check) ${vscode.l10n.t('Tunnel token removed')}`, 3000);
    },
    [CommandId.ShowQr]: () => {
      const input = shareInput(deps);
      if (!input) return void vscode.window.showWarningMessage(vscode.l10n.t('No public URL yet: start the tunnel first.'));
      const url = mcpUrlFor(input, true);
      deps.qr.show(url, input.secret ? vscode.l10n.t('Scan to get the MCP URL (it includes the share secret: show it only to people you trust).') : vscode.l10n.t('Scan to get the public MCP URL. Anyone with it can reach your local server while the tunnel runs.'));
      return url;
    },
  };
  return Object.entries(handlers).map(([id, fn]) => vscode.commands.registerCommand(id, fn as (...args: unknown[]) => unknown));
}

function shareInput(deps: CommandDeps): ReturnType<typeof shareInputOf> {
  return shareInputOf(deps.controller.state);
}

async function copyClientConfig(input: ClientConfigInput | undefined, kind: unknown): Promise<string | undefined> {
  if (!input) return void vscode.window.showWarningMessage(vscode.l10n.t('No public URL yet: start the tunnel first.'));
  const given = typeof kind === 'string' && (CLIENT_KINDS as readonly string[]).includes(kind) ? clientConfig(kind as (typeof CLIENT_KINDS)[number], input) : undefined;
  const config =
    given ??
    (
      await vscode.window.showQuickPick(
        CLIENT_KINDS.map((k) => clientConfig(k, input)).map((c) => ({ label: c.label, detail: c.detail, config: c })),
        { title: vscode.l10n.t('Copy MCP Client Config'), placeHolder: vscode.l10n.t('Which client will connect to the tunnel?') },
      )
    )?.config;
  if (!config) return undefined;
  await vscode.env.clipboard.writeText(config.text);
  vscode.window.setStatusBarMessage(`$(check) ${vscode.l10n.t('Copied the {0} config', config.label)}`, 3000);
  return config.kind;
}

/**
 * The share a command acts on: a tree row's, an id given (keybindings, tests), the only one, or
 * the user's pick. Undefined (after saying why) when there is none.
 */
/** A link's tree row (or `{ shareId, linkId }`): which link. */
function linkIdOf(arg: unknown): string | undefined {
  return arg && typeof arg === 'object' && typeof (arg as TunnelTreeRow).linkId === 'string' ? (arg as TunnelTreeRow).linkId : undefined;
}

async function pickShare(deps: CommandDeps, arg: unknown, title: string, fits: (s: ShareSnapshot) => boolean = () => true): Promise<ShareSnapshot | undefined> {
  const shares = deps.controller.listShares().filter(fits);
  const id = typeof arg === 'string' ? arg : arg && typeof arg === 'object' && 'shareId' in arg && typeof (arg as TunnelTreeRow).shareId === 'string' ? (arg as TunnelTreeRow).shareId : undefined;
  if (id !== undefined) {
    const share = shares.find((x) => x.id === id);
    if (!share) void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: that share is no longer on the tunnel.'));
    return share;
  }
  if (shares.length === 0) return void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: no share fits: start the tunnel (or share a local server) first.'));
  if (shares.length === 1) return shares[0];
  const picked = await vscode.window.showQuickPick(
    shares.map((x) => ({ label: x.name, description: x.access === 'open' ? vscode.l10n.t('open') : vscode.l10n.t('secret'), detail: `${vscode.l10n.t('{0} requests · {1} errors', x.requests, x.errors)}${x.problem ? ` · ${x.problem}` : ''}`, share: x })),
    { title, placeHolder: vscode.l10n.t('Which share?') },
  );
  return picked?.share;
}

/** The status bar's click: the actions that fit the state. */
async function showActions(deps: CommandDeps): Promise<void> {
  const s = deps.controller.state;
  const t = deps.defaultTarget();
  type Pick = vscode.QuickPickItem & { command: CommandId };
  const items: Pick[] = [];
  if (!isLive(s) && s.status !== 'stopping') {
    items.push({ label: `$(play) ${vscode.l10n.t('Start Tunnel')}`, description: `http://${t.host}:${t.port}${t.path}`, command: CommandId.Start });
    items.push({ label: `$(debug-alt) ${vscode.l10n.t('Start Tunnel…')}`, description: vscode.l10n.t('choose port, host and path'), command: CommandId.StartWith });
  }
  if ('url' in s && s.url) {
    items.push({ label: `$(copy) ${vscode.l10n.t('Copy MCP URL')}`, description: maskSharePath(deps.controller.snapshot().mcp_url ?? '', sharePathOf(s)), command: CommandId.CopyMcpUrl });
    items.push({ label: `$(copy) ${vscode.l10n.t('Copy Public URL')}`, description: s.url, command: CommandId.CopyUrl });
    items.push({ label: `$(link-external) ${vscode.l10n.t('Open Public URL')}`, command: CommandId.OpenUrl });
    items.push({ label: `$(json) ${vscode.l10n.t('Copy MCP Client Config…')}`, description: 'VS Code, Claude Code, Claude Desktop, Cursor', command: CommandId.CopyClientConfig });
    items.push({ label: `$(device-mobile) ${vscode.l10n.t('Show QR Code')}`, command: CommandId.ShowQr });
    if (sharePathOf(s)) items.push({ label: `$(refresh) ${vscode.l10n.t('Rotate Share Secret')}`, description: vscode.l10n.t('the old MCP URL stops working at once'), command: CommandId.RotateSecret });
  }
  if (isLive(s)) {
    const n = deps.controller.listShares().length;
    items.push({ label: `$(add) ${vscode.l10n.t('Share Local Server…')}`, description: vscode.l10n.t('another server on this tunnel, with its own secret'), command: CommandId.ShareLocalServer });
    if (n > 1) items.push({ label: `$(close) ${vscode.l10n.t('Stop Share…')}`, description: vscode.l10n.t('{0} shares on this tunnel', n), command: CommandId.StopShare });
  }
  items.push({ label: `$(server-process) ${vscode.l10n.t('Share MCP Server…')}`, description: vscode.l10n.t('one from your mcp.json (stdio servers through the built-in bridge)'), command: 'mcpTunnel.shareMcpServer' as CommandId });
  if (isLive(s) || s.status === 'failed' || s.status === 'restarting') items.push({ label: `$(debug-restart) ${vscode.l10n.t('Restart Tunnel')}`, command: CommandId.Restart });
  if (isLive(s)) items.push({ label: `$(debug-stop) ${vscode.l10n.t('Stop Tunnel')}`, command: CommandId.Stop });
  items.push({ label: `$(output) ${vscode.l10n.t('Show Log')}`, command: CommandId.ShowLog });
  const picked = await vscode.window.showQuickPick(items, { title: vscode.l10n.t('MCP Tunnel — {0}', s.status), placeHolder: vscode.l10n.t('Choose an action') });
  if (picked) await vscode.commands.executeCommand(picked.command);
}


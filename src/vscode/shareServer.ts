/**
 * Share MCP Server… (a server from mcp.json) and Share a Command… (a typed command line): a stdio
 * server becomes a share whose origin is the built-in bridge; an http server on a loopback URL is
 * shared as a port. Always the user's act: agents have no tool for this. Stdio shares are secret.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { isLoopbackHost, validateTarget } from '../core/model/target';
import type { TunnelController } from '../core/tunnelController';
import { loadMcpModule, type McpModule } from '../mcpModule';
import type { BridgeCheck, BridgeOrigin, ConfiguredServer, McpInput, StdioBridge, StdioServerDefinition, VariableContext } from '../bridge/index';
import type { TunnelLog } from './log';

import { RESTART_SHARE, SHARE_COMMAND, SHARE_MCP_SERVER, type SHARE_SERVER_COMMANDS } from './shareServerModule';

/** Where a share's definition came from in mcp.json, as written (to see it change). */
interface ConfigRef {
  name: string;
  source: string;
  written: string;
}

/** A stdio share this window started: what it runs, how to show a note on it, where it came from. */
interface Started {
  def: StdioServerDefinition;
  origin: BridgeOrigin;
  /** Tools the server listed at its check. */
  tools: number | undefined;
  from?: ConfigRef;
  /** The written definition the user was last asked about (asked once per change). */
  offered?: string | undefined;
}

/** By share id. Input values live here (in memory) only, never in settings or the log. */
const started = new Map<string, Started>();

const written = (s: ConfiguredServer): string => JSON.stringify([s.command, s.args ?? [], s.env ?? {}, s.cwd ?? null]);

export interface ShareServerDeps {
  controller: TunnelController;
  log: TunnelLog;
  /** The host's state dir (run records of the stdio servers). */
  stateDir: string;
  /** The user's mcp.json (in the profile folder). */
  userMcpJson: () => string;
  /** Starts (or joins) the tunnel for a port target, with the UI of Start Tunnel; `originHeaders` as in core's ShareOptions. */
  sharePort: (target: { host: string; port: number; path: string }, originHeaders?: Record<string, string>) => Promise<unknown>;
}

interface Found {
  servers: ConfiguredServer[];
  inputs: Map<string, McpInput>;
  problems: string[];
  skippedUntrusted: number;
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return new TextDecoder().decode(await vscode.workspace.fs.readFile(vscode.Uri.file(file)));
  } catch {
    return undefined;
  }
}

/** Every configured server: workspace folders' `.vscode/mcp.json`, the user's mcp.json, the legacy `mcp` setting. */
async function findServers(deps: ShareServerDeps): Promise<Found> {
  const { bridge } = loadMcpModule();
  const found: Found = { servers: [], inputs: new Map(), problems: [], skippedUntrusted: 0 };
  const add = (value: unknown, source: string): void => {
    const c = bridge.readMcpConfig(value, source);
    found.servers.push(...c.servers);
    found.problems.push(...c.problems);
    for (const i of c.inputs) found.inputs.set(i.id, i);
  };
  for (const folder of vscode.workspace.workspaceFolders ?? []) {
    const text = await readText(path.join(folder.uri.fsPath, '.vscode', 'mcp.json'));
    if (text === undefined) continue;
    // A workspace's commands run only when the user trusts it.
    if (!vscode.workspace.isTrusted) {
      found.skippedUntrusted += bridge.readMcpConfig(text, '').servers.length;
      continue;
    }
    add(text, `Workspace ${folder.name} (.vscode/mcp.json)`);
  }
  const user = await readText(deps.userMcpJson());
  if (user !== undefined) add(user, vscode.l10n.t('User mcp.json'));
  const legacy = vscode.workspace.getConfiguration('mcp').inspect('servers');
  if (legacy?.globalValue) add({ servers: legacy.globalValue }, vscode.l10n.t('User settings (mcp)'));
  return found;
}

/** A bridge for `def`, checked (spawn, initialize, tools/list); undefined after saying why. */
async function startChecked(deps: ShareServerDeps, def: StdioServerDefinition): Promise<{ bridge: StdioBridge; check: BridgeCheck } | undefined> {
  const { log } = deps;
  const { bridge: b } = loadMcpModule();
  const cfg = vscode.workspace.getConfiguration('mcpTunnel.stdio');
  await b.reapChildren(deps.stateDir, (m) => log.info(m));
  const bridge = await b.startStdioBridge({
    server: def,
    stateDir: deps.stateDir,
    maxSessions: cfg.get<number>('maxSessions', 16),
    idleTimeoutMs: cfg.get<number>('idleTimeoutMinutes', 30) * 60_000,
    log: (level, m) => (level === 'debug' ? undefined : level === 'info' ? log.info(m) : log.warn(m)),
  });
  const check = await bridge.check();
  if (check.ok) return { bridge, check };
  await bridge.close();
  log.warn(check.message ?? 'the stdio server did not start');
  void vscode.window.showErrorMessage(vscode.l10n.t('MCP Tunnel: {0} Nothing was shared.', check.message ?? vscode.l10n.t('{0} did not start.', def.name)), vscode.l10n.t('Show Log')).then((a) => a && log.show());
  return undefined;
}

/** The bridge for `def`, checked (initialize, tools/list), then shared. Undefined after saying why. */
export async function shareStdio(deps: ShareServerDeps, def: StdioServerDefinition, from?: ConfigRef): Promise<string | undefined> {
  const { controller, log } = deps;
  const { bridge: b } = loadMcpModule();
  const existing = controller.listShares().find((s) => s.kind === 'stdio' && s.command === b.commandLine(def));
  if (existing) {
    vscode.window.setStatusBarMessage(`$(check) ${vscode.l10n.t('{0} is already shared', def.name)}`, 3000);
    return existing.id;
  }
  return vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: vscode.l10n.t('MCP Tunnel: {0}', def.name), cancellable: false }, async (progress) => {
    progress.report({ message: vscode.l10n.t('Starting {0}…', b.commandLine(def)) });
    const ready = await startChecked(deps, def);
    if (!ready) return undefined;
    const { bridge, check } = ready;
    progress.report({ message: vscode.l10n.t('{0} tools; opening the tunnel…', check.tools ?? 0) });
    const origin = b.bridgeOrigin(bridge, check);
    const target = { host: '127.0.0.1', port: bridge.port, path: bridge.path, access: 'secret' as const };
    const state = await controller.start(target, { origin });
    const share = controller.listShares().find((s) => s.kind === 'stdio' && s.command === origin.commandLine);
    if (!share || (state.status !== 'active' && state.status !== 'connecting')) {
      if (state.status === 'failed') void vscode.window.showErrorMessage(vscode.l10n.t('MCP Tunnel: {0}', state.error.message), vscode.l10n.t('Show Log')).then((a) => a && log.show());
      return undefined;
    }
    started.set(share.id, { def, origin, tools: check.tools, ...(from ? { from } : {}) });
    const copyUrl = vscode.l10n.t('Copy MCP URL');
    const copyConfig = vscode.l10n.t('Copy MCP Client Config…');
    void vscode.window
      .showInformationMessage(vscode.l10n.t('Sharing {0} ({1} tools) through the bridge: one process per client session, secret link only.', def.name, check.tools ?? 0), copyUrl, copyConfig)
      .then((a) => {
        if (a === copyUrl) void vscode.commands.executeCommand('mcpTunnel.copyShareMcpUrl', share.id);
        if (a === copyConfig) void vscode.commands.executeCommand('mcpTunnel.copyShareClientConfig', share.id);
      });
    return share.id;
  });
}

/**
 * Restart Share: a stdio share runs its definition anew (as mcp.json has it now, if it came from
 * there), under the same id and secret: links keep working, connected clients start a new
 * session. The old server keeps running if the new one does not start.
 */
async function restartShare(deps: ShareServerDeps, arg: unknown): Promise<boolean> {
  const { controller } = deps;
  const { bridge: b } = loadMcpModule();
  const stdio = controller.listShares().filter((s) => s.kind === 'stdio' && started.has(s.id));
  const wanted = typeof arg === 'string' ? arg : (arg as { shareId?: unknown } | undefined)?.shareId;
  let id = typeof wanted === 'string' ? wanted : stdio.length === 1 ? stdio[0]?.id : undefined;
  if (id === undefined && stdio.length > 1) {
    const picked = await vscode.window.showQuickPick(
      stdio.map((s) => ({ label: s.name, description: s.detail ?? '', detail: s.command ?? '', id: s.id })),
      { title: vscode.l10n.t('Restart Share'), placeHolder: vscode.l10n.t('Which stdio share? Its links stay the same.') },
    );
    id = picked?.id;
  }
  if (id === undefined) {
    if (stdio.length === 0) void vscode.window.showInformationMessage(vscode.l10n.t('MCP Tunnel: no stdio share to restart (Restart Share starts again a server shared with Share MCP Server… or Share a Command…).'));
    return false;
  }
  const entry = started.get(id);
  const share = controller.listShares().find((s) => s.id === id);
  if (!entry || !share) {
    void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: that share is not a stdio share started in this window, or it has stopped.'));
    return false;
  }
  let def = entry.def;
  let from = entry.from;
  if (from) {
    const found = await findServers(deps);
    const server = found.servers.find((x) => x.kind === 'stdio' && x.name === from?.name && x.source === from.source);
    if (server) {
      const next = await resolveInputs(server, found.inputs);
      if (!next) return false;
      def = next;
      from = { ...from, written: written(server) };
    } else {
      void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: "{0}" is no longer in {1}; restarting the definition it was shared with.', from.name, from.source));
    }
  }
  const ready = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: vscode.l10n.t('MCP Tunnel: restarting {0}', def.name), cancellable: false }, () => startChecked(deps, def));
  if (!ready) return false;
  const origin = b.bridgeOrigin(ready.bridge, ready.check);
  if (!controller.replaceOrigin(id, { host: '127.0.0.1', port: ready.bridge.port, path: ready.bridge.path }, origin)) {
    void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: {0} could not be restarted: its share stopped, or another share runs that definition.', def.name));
    return false;
  }
  started.set(id, { def, origin, tools: ready.check.tools, ...(from ? { from } : {}) });
  vscode.window.setStatusBarMessage(`$(check) ${vscode.l10n.t('Restarted {0}: {1} tools; its links are unchanged', def.name, ready.check.tools ?? 0)}`, 5000);
  return true;
}

/**
 * After mcp.json (workspace or user) or the `mcp` setting changed: a share whose definition
 * changed (or went away) says so on the share, and the user is offered Restart Share once per change.
 */
async function definitionsChanged(deps: ShareServerDeps): Promise<void> {
  const live = new Set(deps.controller.listShares().map((s) => s.id));
  for (const id of [...started.keys()]) if (!live.has(id)) started.delete(id);
  const watched = [...started.entries()].filter(([, e]) => e.from);
  if (watched.length === 0) return;
  const found = await findServers(deps);
  for (const [id, e] of watched) {
    const from = e.from as ConfigRef;
    const server = found.servers.find((x) => x.kind === 'stdio' && x.name === from.name && x.source === from.source);
    const now = server ? written(server) : undefined;
    if (now === from.written) {
      e.origin.setNote(undefined);
      continue;
    }
    e.origin.setNote(server ? vscode.l10n.t('changed in {0}: restart to apply', from.source) : vscode.l10n.t('no longer in {0}', from.source));
    if (!server || e.offered === now) continue;
    e.offered = now;
    void vscode.window
      .showInformationMessage(vscode.l10n.t('MCP Tunnel: "{0}" changed in {1}. Restart its share with the new definition? Its links stay the same; connected clients start a new session.', from.name, from.source), vscode.l10n.t('Restart Share'))
      .then((a) => a && vscode.commands.executeCommand(RESTART_SHARE, id));
  }
}

/** Watches the workspace folders' .vscode/mcp.json, the user's mcp.json and the `mcp` setting. */
function watchDefinitions(deps: ShareServerDeps): vscode.Disposable[] {
  let timer: NodeJS.Timeout | undefined;
  const changed = (): void => {
    if (started.size === 0) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => void definitionsChanged(deps).catch((err: unknown) => deps.log.warn(`Could not re-read mcp.json: ${(err as Error).message}`)), 300);
  };
  const watchers = [
    vscode.workspace.createFileSystemWatcher('**/.vscode/mcp.json'),
    vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(vscode.Uri.file(path.dirname(deps.userMcpJson())), 'mcp.json')),
  ];
  for (const w of watchers) {
    w.onDidChange(changed);
    w.onDidCreate(changed);
    w.onDidDelete(changed);
  }
  return [
    ...watchers,
    vscode.workspace.onDidChangeConfiguration((e) => e.affectsConfiguration('mcp') && changed()),
    { dispose: () => timer && clearTimeout(timer) },
  ];
}

function variableContext(server: ConfiguredServer, inputs: Map<string, McpInput>): VariableContext {
  return {
    ...(vscode.workspace.workspaceFolders?.[0] ? { workspaceFolder: vscode.workspace.workspaceFolders[0].uri.fsPath } : {}),
    userHome: os.homedir(),
    env: process.env,
    // Asked now, kept only in the child's definition (or the gate's route): never in settings or the log.
    input: (id) =>
      Promise.resolve(
        vscode.window.showInputBox({ title: `${server.name}: ${id}`, prompt: inputs.get(id)?.description ?? vscode.l10n.t('Value of {0}', `\${input:${id}}`), password: inputs.get(id)?.password ?? true, ignoreFocusOut: true }),
      ),
  };
}

async function resolveInputs(server: ConfiguredServer, inputs: Map<string, McpInput>): Promise<StdioServerDefinition | undefined> {
  const { bridge } = loadMcpModule();
  try {
    return await bridge.resolveServer(server, variableContext(server, inputs));
  } catch (err) {
    void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: {0}', (err as Error).message));
    return undefined;
  }
}

/**
 * An http server's configured headers go to it only if the user ticks them (none is ticked at
 * first): `given` (tests, keybindings) names them instead of the pick. Undefined: cancelled.
 */
async function pickHeaders(server: ConfiguredServer, inputs: Map<string, McpInput>, host: string, given: string[] | undefined): Promise<Record<string, string> | undefined> {
  const names = Object.keys(server.headers ?? {});
  if (names.length === 0) return {};
  let ticked = given?.filter((n) => names.includes(n));
  if (!ticked) {
    const picked = await vscode.window.showQuickPick(
      names.map((n) => {
        const v = server.headers?.[n] ?? '';
        // A variable reference says where the value comes from; a literal value is not shown.
        return { label: n, description: v.includes('${') ? v : `•••• ${vscode.l10n.t('(a value written in the file)')}` };
      }),
      { title: vscode.l10n.t('Share {0}: send its headers?', server.name), placeHolder: vscode.l10n.t('Tick the headers MCP Tunnel adds to each request toward {0} (clients never see them). None: share without them.', host), canPickMany: true, ignoreFocusOut: true },
    );
    if (!picked) return undefined;
    ticked = picked.map((p) => p.label);
  }
  if (ticked.length === 0) return {};
  try {
    return await loadMcpModule().bridge.resolveHeaders(server, ticked, variableContext(server, inputs));
  } catch (err) {
    void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: {0}', (err as Error).message));
    return undefined;
  }
}

/**
 * `share_mcp_server` from an agent: a server from mcp.json by name. A stdio server runs commands
 * on this machine, so this is refused unless the user's machine setting
 * `mcpTunnel.mcp.allowStdioShares` is on (a workspace's value never counts), and then waits for a
 * modal naming the command line, every time. An agent never passes a command line of its own.
 */
async function shareForAgent(deps: ShareServerDeps, name: string): Promise<McpModule.AgentShareResult> {
  const allowed = vscode.workspace.getConfiguration('mcpTunnel.mcp').inspect<boolean>('allowStdioShares');
  if (allowed?.globalValue !== true) {
    return { ok: false, message: 'Agents may not share MCP servers from mcp.json on this machine: a stdio server runs commands here. The user can allow it with the machine setting mcpTunnel.mcp.allowStdioShares (each share is then confirmed in a dialog naming its command line), or share it themselves with "MCP Tunnel: Share MCP Server…".' };
  }
  const found = await findServers(deps);
  const server = found.servers.find((s) => s.name === name);
  if (!server) {
    const names = found.servers.map((s) => s.name);
    return { ok: false, message: `No MCP server named ${JSON.stringify(name)} in mcp.json${names.length ? ` (servers: ${names.join(', ')})` : ''}${found.skippedUntrusted ? '; the workspace is not trusted, so its servers are not listed' : ''}.` };
  }
  if (server.kind !== 'stdio') return { ok: false, message: `"${name}" is an http server: share its port with start_tunnel (${server.url ?? 'no url'}).` };
  const line = [server.command ?? '', ...(server.args ?? [])].join(' ');
  const shareIt = vscode.l10n.t('Share');
  const choice = await vscode.window.showWarningMessage(
    vscode.l10n.t('An agent wants to share the MCP server "{0}" through a public tunnel.', name),
    {
      modal: true,
      detail: vscode.l10n.t('It runs on this machine, one process per client session, for anyone with its secret link:\n\n{0}\n\nFrom {1}. Share it?', line, server.source),
    },
    shareIt,
  );
  deps.log.info(`Agent request to share the stdio server "${name}" (${line}): ${choice === shareIt ? 'allowed' : 'declined'} by the user.`);
  if (choice !== shareIt) return { ok: false, message: `The user declined to share "${name}".` };
  const def = await resolveInputs(server, found.inputs);
  if (!def) return { ok: false, message: `Sharing "${name}" was cancelled (an input it needs was not given).` };
  const id = await shareStdio(deps, def, { name: server.name, source: server.source, written: written(server) });
  const share = id ? deps.controller.listShares().find((s) => s.id === id) : undefined;
  if (!share) return { ok: false, message: `"${name}" could not be shared; the user sees why in the editor (MCP Tunnel log).` };
  return { ok: true, share_id: share.id, name: share.name, command: share.command, tools: started.get(share.id)?.tools ?? null, mcp_url: share.mcp_url };
}

/** What extension.ts registers (under SHARE_SERVER_COMMANDS) and hands the MCP host. */
export interface ShareServer {
  handlers: Record<(typeof SHARE_SERVER_COMMANDS)[number], (...args: unknown[]) => unknown>;
  shareForAgent(name: string): Promise<McpModule.AgentShareResult>;
  dispose(): void;
}

/**
 * This module is its own bundle (dist/shareServer.js), loaded on the first of its commands (or an
 * agent's share_mcp_server), not at activation; so are its mcp.json watchers, which matter only
 * once something was shared from there.
 */
export function createShareServer(deps: ShareServerDeps): ShareServer {
  const watchers = watchDefinitions(deps);
  const handlers: ShareServer['handlers'] = {
    // Optional argument: a share id or its tree row.
    [RESTART_SHARE]: (arg?: unknown) => restartShare(deps, arg),
    // Optional arguments: a server's name (keybindings, tests) instead of the pick, and for an
    // http server `{ headers: [names] }`: which configured headers to send it (instead of asking).
    [SHARE_MCP_SERVER]: async (name?: unknown, opts?: unknown) => {
      const found = await findServers(deps);
      for (const p of found.problems) deps.log.warn(p);
      let server: ConfiguredServer | undefined;
      if (typeof name === 'string') {
        server = found.servers.find((s) => s.name === name);
        if (!server) return void vscode.window.showWarningMessage(found.skippedUntrusted ? vscode.l10n.t('MCP Tunnel: no MCP server named "{0}" in mcp.json (the workspace is not trusted: its servers are not listed).', name) : vscode.l10n.t('MCP Tunnel: no MCP server named "{0}" in mcp.json.', name));
      } else {
        type Item = vscode.QuickPickItem & { server?: ConfiguredServer };
        const items: Item[] = [];
        let source = '';
        for (const s of found.servers) {
          if (s.source !== source) items.push({ label: (source = s.source), kind: vscode.QuickPickItemKind.Separator });
          const detail = s.kind === 'stdio' ? [s.command, ...(s.args ?? [])].join(' ') : (s.url ?? '');
          items.push({ label: s.name, description: s.kind === 'stdio' ? vscode.l10n.t('stdio, through the bridge') : 'http', detail, server: s });
        }
        if (found.servers.length === 0) {
          const more = found.skippedUntrusted ? ` ${vscode.l10n.t("This workspace's {0} server(s) are hidden until you trust it.", found.skippedUntrusted)}` : '';
          const a = await vscode.window.showInformationMessage(`${vscode.l10n.t('MCP Tunnel: no MCP servers found in .vscode/mcp.json, your mcp.json or the mcp setting.')}${more}`, vscode.l10n.t('Share a Command…'));
          if (a) return vscode.commands.executeCommand(SHARE_COMMAND);
          return undefined;
        }
        const picked = await vscode.window.showQuickPick(items, { title: vscode.l10n.t('Share MCP Server'), placeHolder: vscode.l10n.t('Which of your MCP servers? It gets its own secret link.'), matchOnDetail: true });
        server = picked?.server;
      }
      if (!server) return undefined;
      if (server.kind === 'http') {
        let url: URL;
        try {
          url = new URL(server.url ?? '');
        } catch {
          return void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: "{0}" has no valid url.', server.name));
        }
        if (!isLoopbackHost(url.hostname.replace(/^\[|\]$/g, ''))) {
          return void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: "{0}" is at {1}, not on this machine: only local servers (localhost, 127.0.0.1, ::1) can be shared.', server.name, url.host));
        }
        const v = validateTarget({ host: url.hostname.replace(/^\[|\]$/g, ''), port: url.port || (url.protocol === 'https:' ? '443' : '80'), path: url.pathname || '/' });
        if (!v.ok) return void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: {0}', v.message));
        const given = (opts as { headers?: unknown } | undefined)?.headers;
        const headers = await pickHeaders(server, found.inputs, url.host, Array.isArray(given) ? given.filter((g): g is string => typeof g === 'string') : undefined);
        if (!headers) return undefined;
        return deps.sharePort(v.target, Object.keys(headers).length ? headers : undefined);
      }
      const def = await resolveInputs(server, found.inputs);
      return def ? shareStdio(deps, def, { name: server.name, source: server.source, written: written(server) }) : undefined;
    },
    // Optional argument: the command line (tests, keybindings).
    [SHARE_COMMAND]: async (line?: unknown) => {
      const { bridge } = loadMcpModule();
      const text =
        typeof line === 'string'
          ? line
          : await vscode.window.showInputBox({
              title: vscode.l10n.t('Share a Command'),
              prompt: vscode.l10n.t('The command line of a stdio MCP server. It runs on this machine, one process per client session; people with the secret link can use its tools.'),
              placeHolder: 'npx -y @modelcontextprotocol/server-filesystem ~/Documents',
              ignoreFocusOut: true,
              validateInput: (v) => {
                try {
                  return bridge.splitCommandLine(v).length > 0 ? undefined : vscode.l10n.t('Type a command.');
                } catch (err) {
                  return (err as Error).message;
                }
              },
            });
      if (!text) return undefined;
      let words: string[];
      try {
        words = bridge.splitCommandLine(text);
      } catch (err) {
        return void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: {0}', (err as Error).message));
      }
      const [command, ...args] = words;
      if (!command) return undefined;
      const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
      return shareStdio(deps, { name: bridge.defaultServerName(command, args), command, args, ...(cwd ? { cwd } : {}) });
    },
  };
  return {
    handlers,
    shareForAgent: (name) => shareForAgent(deps, name),
    dispose: () => {
      for (const w of watchers) w.dispose();
    },
  };
}

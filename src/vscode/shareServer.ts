/**
 * Share MCP Server… (a server from mcp.json) and Share a Command… (a typed command line): a stdio
 * server becomes a share whose origin is the built-in bridge; an http server on a loopback URL is
 * shared as a port. Always the user's act: agents have no tool for this. Stdio shares are secret.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { isLoopbackHost, validateTarget } from '../core/target';
import type { TunnelController } from '../core/tunnelController';
import { loadMcpModule } from '../mcpModule';
import type { ConfiguredServer, McpInput, StdioServerDefinition } from '../bridge/index';
import type { TunnelLog } from './log';

export const SHARE_MCP_SERVER = 'mcpTunnel.shareMcpServer';
export const SHARE_COMMAND = 'mcpTunnel.shareCommand';

export interface ShareServerDeps {
  controller: TunnelController;
  log: TunnelLog;
  /** The host's state dir (run records of the stdio servers). */
  stateDir: string;
  /** The user's mcp.json (in the profile folder). */
  userMcpJson: () => string;
  /** Starts (or joins) the tunnel for a port target, with the UI of Start Tunnel. */
  sharePort: (target: { host: string; port: number; path: string }) => Promise<unknown>;
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
  if (user !== undefined) add(user, 'User mcp.json');
  const legacy = vscode.workspace.getConfiguration('mcp').inspect('servers');
  if (legacy?.globalValue) add({ servers: legacy.globalValue }, 'User settings (mcp)');
  return found;
}

/** The bridge for `def`, checked (initialize, tools/list), then shared. Undefined after saying why. */
export async function shareStdio(deps: ShareServerDeps, def: StdioServerDefinition): Promise<string | undefined> {
  const { controller, log } = deps;
  const { bridge: b } = loadMcpModule();
  const existing = controller.listShares().find((s) => s.kind === 'stdio' && s.command === b.commandLine(def));
  if (existing) {
    vscode.window.setStatusBarMessage(`$(check) ${def.name} is already shared`, 3000);
    return existing.id;
  }
  const cfg = vscode.workspace.getConfiguration('mcpTunnel.stdio');
  return vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `MCP Tunnel: ${def.name}`, cancellable: false }, async (progress) => {
    progress.report({ message: `Starting ${b.commandLine(def)}…` });
    await b.reapChildren(deps.stateDir, (m) => log.info(m));
    const bridge = await b.startStdioBridge({
      server: def,
      stateDir: deps.stateDir,
      maxSessions: cfg.get<number>('maxSessions', 16),
      idleTimeoutMs: cfg.get<number>('idleTimeoutMinutes', 30) * 60_000,
      log: (level, m) => (level === 'debug' ? undefined : level === 'info' ? log.info(m) : log.warn(m)),
    });
    const check = await bridge.check();
    if (!check.ok) {
      await bridge.close();
      log.warn(check.message ?? 'the stdio server did not start');
      void vscode.window.showErrorMessage(`MCP Tunnel: ${check.message ?? `${def.name} did not start.`} Nothing was shared.`, 'Show Log').then((a) => a && log.show());
      return undefined;
    }
    progress.report({ message: `${check.tools ?? 0} tools; opening the tunnel…` });
    const origin = b.bridgeOrigin(bridge, check);
    const target = { host: '127.0.0.1', port: bridge.port, path: bridge.path, access: 'secret' as const };
    const state = await controller.start(target, { origin });
    const share = controller.listShares().find((s) => s.kind === 'stdio' && s.command === origin.commandLine);
    if (!share || (state.status !== 'active' && state.status !== 'connecting')) {
      if (state.status === 'failed') void vscode.window.showErrorMessage(`MCP Tunnel: ${state.error.message}`, 'Show Log').then((a) => a && log.show());
      return undefined;
    }
    void vscode.window
      .showInformationMessage(`Sharing ${def.name} (${check.tools ?? 0} tools) through the bridge: one process per client session, secret link only.`, 'Copy MCP URL', 'Copy MCP Client Config…')
      .then((a) => {
        if (a === 'Copy MCP URL') void vscode.commands.executeCommand('mcpTunnel.copyShareMcpUrl', share.id);
        if (a === 'Copy MCP Client Config…') void vscode.commands.executeCommand('mcpTunnel.copyShareClientConfig', share.id);
      });
    return share.id;
  });
}

async function resolveInputs(server: ConfiguredServer, inputs: Map<string, McpInput>): Promise<StdioServerDefinition | undefined> {
  const { bridge } = loadMcpModule();
  try {
    return await bridge.resolveServer(server, {
      ...(vscode.workspace.workspaceFolders?.[0] ? { workspaceFolder: vscode.workspace.workspaceFolders[0].uri.fsPath } : {}),
      userHome: os.homedir(),
      env: process.env,
      // Asked now, kept only in the child's definition: never in settings or the log.
      input: (id) =>
        Promise.resolve(
          vscode.window.showInputBox({ title: `${server.name}: ${id}`, prompt: inputs.get(id)?.description ?? `Value of \${input:${id}}`, password: inputs.get(id)?.password ?? true, ignoreFocusOut: true }),
        ),
    });
  } catch (err) {
    void vscode.window.showWarningMessage(`MCP Tunnel: ${(err as Error).message}`);
    return undefined;
  }
}

export function registerShareServerCommands(deps: ShareServerDeps): vscode.Disposable[] {
  return [
    // Optional argument: a server's name (keybindings, tests) instead of the pick.
    vscode.commands.registerCommand(SHARE_MCP_SERVER, async (name?: unknown) => {
      const found = await findServers(deps);
      for (const p of found.problems) deps.log.warn(p);
      let server: ConfiguredServer | undefined;
      if (typeof name === 'string') {
        server = found.servers.find((s) => s.name === name);
        if (!server) return void vscode.window.showWarningMessage(`MCP Tunnel: no MCP server named "${name}" in mcp.json${found.skippedUntrusted ? ' (the workspace is not trusted: its servers are not listed)' : ''}.`);
      } else {
        type Item = vscode.QuickPickItem & { server?: ConfiguredServer };
        const items: Item[] = [];
        let source = '';
        for (const s of found.servers) {
          if (s.source !== source) items.push({ label: (source = s.source), kind: vscode.QuickPickItemKind.Separator });
          const detail = s.kind === 'stdio' ? [s.command, ...(s.args ?? [])].join(' ') : (s.url ?? '');
          items.push({ label: s.name, description: s.kind === 'stdio' ? 'stdio, through the bridge' : 'http', detail, server: s });
        }
        if (found.servers.length === 0) {
          const more = found.skippedUntrusted ? ` This workspace's ${found.skippedUntrusted} server(s) are hidden until you trust it.` : '';
          const a = await vscode.window.showInformationMessage(`MCP Tunnel: no MCP servers found in .vscode/mcp.json, your mcp.json or the mcp setting.${more}`, 'Share a Command…');
          if (a) return vscode.commands.executeCommand(SHARE_COMMAND);
          return undefined;
        }
        const picked = await vscode.window.showQuickPick(items, { title: 'Share MCP Server', placeHolder: 'Which of your MCP servers? It gets its own secret link.', matchOnDetail: true });
        server = picked?.server;
      }
      if (!server) return undefined;
      if (server.kind === 'http') {
        let url: URL;
        try {
          url = new URL(server.url ?? '');
        } catch {
          return void vscode.window.showWarningMessage(`MCP Tunnel: "${server.name}" has no valid url.`);
        }
        if (!isLoopbackHost(url.hostname.replace(/^\[|\]$/g, ''))) {
          return void vscode.window.showWarningMessage(`MCP Tunnel: "${server.name}" is at ${url.host}, not on this machine: only local servers (localhost, 127.0.0.1, ::1) can be shared.`);
        }
        const v = validateTarget({ host: url.hostname.replace(/^\[|\]$/g, ''), port: url.port || (url.protocol === 'https:' ? '443' : '80'), path: url.pathname || '/' });
        if (!v.ok) return void vscode.window.showWarningMessage(`MCP Tunnel: ${v.message}`);
        return deps.sharePort(v.target);
      }
      const def = await resolveInputs(server, found.inputs);
      return def ? shareStdio(deps, def) : undefined;
    }),
    // Optional argument: the command line (tests, keybindings).
    vscode.commands.registerCommand(SHARE_COMMAND, async (line?: unknown) => {
      const { bridge } = loadMcpModule();
      const text =
        typeof line === 'string'
          ? line
          : await vscode.window.showInputBox({
              title: 'Share a Command',
              prompt: 'The command line of a stdio MCP server. It runs on this machine, one process per client session; people with the secret link can use its tools.',
              placeHolder: 'npx -y @modelcontextprotocol/server-filesystem ~/Documents',
              ignoreFocusOut: true,
              validateInput: (v) => {
                try {
                  return bridge.splitCommandLine(v).length > 0 ? undefined : 'Type a command.';
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
        return void vscode.window.showWarningMessage(`MCP Tunnel: ${(err as Error).message}`);
      }
      const [command, ...args] = words;
      if (!command) return undefined;
      const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
      return shareStdio(deps, { name: bridge.defaultServerName(command, args), command, args, ...(cwd ? { cwd } : {}) });
    }),
  ];
}

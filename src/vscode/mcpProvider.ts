/**
 * Hands VS Code's MCP client one HTTP server, "MCP Tunnel", on the same controller as the UI.
 * The SDK and zod live in `dist/mcp.js`, loaded on the first resolve, not at activation.
 */
import * as vscode from 'vscode';
import { joinUrl, localUrlOf, type TunnelApi, type TunnelTarget } from '../core/model/tunnelState';
import { loadMcpModule, type McpModule } from '../mcpModule';
import { ALLOW_HOST_HINT, type TunnelConfig } from './config';
import type { TunnelLog } from './log';
import type { ReachabilityView } from '../core/doctor/monitor';

export const PROVIDER_ID = 'mcpTunnel';
export const SERVER_LABEL = 'MCP Tunnel';

export class TunnelMcpProvider implements vscode.McpServerDefinitionProvider<vscode.McpHttpServerDefinition>, vscode.Disposable {
  private readonly _onDidChange = new vscode.EventEmitter<void>();
  readonly onDidChangeMcpServerDefinitions = this._onDidChange.event;
  private host: McpModule.HttpHost | undefined;
  private hostPromise: Promise<McpModule.HttpHost> | undefined;
  /** Targets the user allowed agents to publish in this window. */
  private readonly consented = new Set<string>();

  constructor(
    private readonly controller: TunnelApi,
    private readonly version: string,
    private readonly config: () => TunnelConfig,
    private readonly log: TunnelLog,
    /** `share_mcp_server` (see shareServer.ts's shareForAgent): the setting, the consent, the check. */
    private readonly shareServer?: (name: string) => Promise<McpModule.AgentShareResult>,
    /** The reachability doctor: `reachable` in get_tunnel_status and tunnel://status. */
    private readonly reachability?: ReachabilityView,
  ) {}

  provideMcpServerDefinitions(): vscode.McpHttpServerDefinition[] {
    // Before the first start the port is unknown; resolve fills in the real address and header.
    return [this.definition(this.host)];
  }

  async resolveMcpServerDefinition(): Promise<vscode.McpHttpServerDefinition> {
    return this.definition(await this.ensureHost());
  }

  /** Starts the loopback HTTP host once; the token stays valid for the life of the extension host. */
  ensureHost(): Promise<McpModule.HttpHost> {
    this.hostPromise ??= (async () => {
      const mcp = loadMcpModule();
      const host = await mcp.startHttpHost(this.controller, {
        serverOptions: {
          version: this.version,
          // Read at each call: a host the user removes is refused at once.
          allowedHosts: () => this.config().allowedHosts,
          howToAllowHost: ALLOW_HOST_HINT,
          confirmStart: (t) => this.confirmStart(t),
          openAccess: 'ask',
          ...(this.shareServer ? { shareServer: this.shareServer } : {}),
          ...(this.reachability ? { reachability: this.reachability } : {}),
          log: (level, message) => this.log.write({ level, message: `[mcp] ${message}` }),
        },
        log: (level, message) => this.log.write({ level, message: `[mcp] ${message}` }),
      });
      this.host = host;
      this.log.info(`MCP server for agents listening on ${host.url} (bearer token required).`);
      return host;
    })();
    this.hostPromise.catch(() => (this.hostPromise = undefined));
    return this.hostPromise;
  }

  private definition(host: McpModule.HttpHost | undefined): vscode.McpHttpServerDefinition {
    const uri = vscode.Uri.parse(host ? host.url : 'http://127.0.0.1/mcp');
    const headers: Record<string, string> = host ? { Authorization: `Bearer ${host.token}` } : {};
    return new vscode.McpHttpServerDefinition(SERVER_LABEL, uri, headers, this.version);
  }

  /**
   * Consent: asked once per window, target and access mode, unless `mcpTunnel.mcp.confirmStart`
   * is off. An agent asking for a weaker mode than the user's setting (`open` when it says
   * `secret`) is always asked: that decision is the user's, not the agent's.
   */
  private async confirmStart(target: TunnelTarget): Promise<boolean> {
    const config = this.config();
    const access = target.access ?? config.target.access;
    const weaker = access === 'open' && config.target.access !== 'open';
    if (!config.mcpConfirmStart && !weaker) return true;
    const local = joinUrl(localUrlOf(target), target.path);
    const key = `${access} ${local}`;
    if (this.consented.has(key)) return true;
    const open = access === 'open';
    const allowLabel = open ? vscode.l10n.t('Allow Open Access') : vscode.l10n.t('Allow');
    const choice = await vscode.window.showWarningMessage(
      open ? vscode.l10n.t('An agent wants to make {0} public, open to anyone with the URL.', local) : vscode.l10n.t('An agent wants to make {0} reachable through a public tunnel.', local),
      {
        modal: true,
        detail: !open
          ? vscode.l10n.t('MCP Tunnel will start a Cloudflare quick tunnel. Only requests carrying its share secret (in the MCP URL the agent receives) reach your server, until the tunnel stops. Allow for this window?')
          : weaker
            ? vscode.l10n.t('MCP Tunnel will start a Cloudflare quick tunnel WITHOUT the access gate: anyone who learns its https://….trycloudflare.com URL reaches your server until the tunnel stops. Your setting (mcpTunnel.access) asks for a share secret; the agent asked for none. Allow for this window?')
            : vscode.l10n.t('MCP Tunnel will start a Cloudflare quick tunnel WITHOUT the access gate: anyone who learns its https://….trycloudflare.com URL reaches your server until the tunnel stops. Allow for this window?'),
      },
      allowLabel,
    );
    const ok = choice === allowLabel;
    this.log.info(`Agent request to expose ${local} (access ${access}): ${ok ? 'allowed' : 'declined'} by the user.`);
    if (ok) this.consented.add(key);
    return ok;
  }

  dispose(): void {
    this._onDidChange.dispose();
    const host = this.host;
    this.host = undefined;
    void host?.close();
  }
}

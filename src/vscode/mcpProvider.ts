/**
 * Hands VS Code's MCP client one HTTP server, "MCP Tunnel", on the same controller as the UI.
 * The SDK and zod live in `dist/mcp.js`, loaded on the first resolve, not at activation.
 */
import * as vscode from 'vscode';
import { joinUrl, localUrlOf, type TunnelApi, type TunnelTarget } from '../core/tunnelState';
import { loadMcpModule, type McpModule } from '../mcpModule';
import type { TunnelConfig } from './config';
import type { TunnelLog } from './log';

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
          allowedHosts: this.config().mcpAllowedHosts,
          confirmStart: (t) => this.confirmStart(t),
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

  /** Consent: asked once per window and target, unless `mcpTunnel.mcp.confirmStart` is off. */
  private async confirmStart(target: TunnelTarget): Promise<boolean> {
    if (!this.config().mcpConfirmStart) return true;
    const local = joinUrl(localUrlOf(target), target.path);
    if (this.consented.has(local)) return true;
    const choice = await vscode.window.showWarningMessage(
      `An agent wants to make ${local} public.`,
      {
        modal: true,
        detail: `MCP Tunnel will start a Cloudflare quick tunnel: a random https://….trycloudflare.com URL that anyone who learns it can reach, until the tunnel stops. Allow for this window?`,
      },
      'Allow',
    );
    const ok = choice === 'Allow';
    this.log.info(`Agent request to expose ${local}: ${ok ? 'allowed' : 'declined'} by the user.`);
    if (ok) this.consented.add(local);
    return ok;
  }

  dispose(): void {
    this._onDidChange.dispose();
    const host = this.host;
    this.host = undefined;
    void host?.close();
  }
}

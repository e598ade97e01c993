// Test-only helper extension for test/e2e/browser.e2e.ts: calls MCP Tunnel's MCP tools through
// vscode.lm.invokeTool, as an agent would (VS Code asks its own confirmation first). No questions:
//   MCP Tunnel E2E: Invoke Tool             -> start_tunnel { port: $MCP_TUNNEL_E2E_ORIGIN_PORT }
//   MCP Tunnel E2E: Get Tunnel Status Tool  -> get_tunnel_status {}
//   MCP Tunnel E2E: Stop Tunnel Tool        -> stop_tunnel {}
//   MCP Tunnel E2E: Start MCP Servers       -> workbench.mcp.startServer '*' (trusting them, as the
//                                              user would), then records the tools VS Code lists
// Each result (or error) is appended as one JSON line to $MCP_TUNNEL_E2E_TOOL_RESULTS (if set) and
// written to the "MCP Tunnel E2E" output channel; errors are also shown as a notification.
// TypeScript (so `npm run lint` and `tsc` cover it); the e2e bundles it to extension.js with esbuild
// and packages it with vsce into the rig: nothing is built into this folder.
import * as fs from 'node:fs';
import * as vscode from 'vscode';

export interface ToolRecord {
  at: string;
  tool: string;
  ok: boolean;
  text?: string;
  error?: string;
}

export function activate(context: vscode.ExtensionContext): void {
  const out = vscode.window.createOutputChannel('MCP Tunnel E2E');
  context.subscriptions.push(out);

  const record = (entry: Omit<ToolRecord, 'at'>): void => {
    const line = JSON.stringify({ at: new Date().toISOString(), ...entry });
    out.appendLine(line);
    const file = process.env['MCP_TUNNEL_E2E_TOOL_RESULTS'];
    if (file) fs.appendFileSync(file, line + '\n');
  };

  const invoke = async (suffix: string, input: Record<string, unknown>): Promise<void> => {
    const tool = vscode.lm.tools.find((t) => t.name.endsWith(suffix));
    if (!tool) {
      const names = vscode.lm.tools.map((t) => t.name).join(', ') || '(none)';
      record({ tool: suffix, ok: false, error: `no tool ending with ${suffix}; tools: ${names}` });
      void vscode.window.showErrorMessage(`MCP Tunnel E2E: no tool ending with ${suffix}.`);
      return;
    }
    try {
      const result = await vscode.lm.invokeTool(tool.name, { input, toolInvocationToken: undefined });
      const text = result.content.map((p) => (p instanceof vscode.LanguageModelTextPart ? p.value : '')).join('');
      record({ tool: tool.name, ok: true, text }); // no notification: keep the screenshots on the extension's own UI
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      record({ tool: tool.name, ok: false, error: message });
      void vscode.window.showErrorMessage(`MCP Tunnel E2E: ${suffix} failed: ${message}`);
    }
  };

  context.subscriptions.push(
    vscode.commands.registerCommand('mcpTunnelE2E.invokeTool', () => invoke('start_tunnel', { port: Number(process.env['MCP_TUNNEL_E2E_ORIGIN_PORT'] ?? 8002) })),
    vscode.commands.registerCommand('mcpTunnelE2E.getStatus', () => invoke('get_tunnel_status', {})),
    vscode.commands.registerCommand('mcpTunnelE2E.stopTunnel', () => invoke('stop_tunnel', {})),
    vscode.commands.registerCommand('mcpTunnelE2E.startMcpServers', async () => {
      try {
        await vscode.commands.executeCommand('workbench.mcp.startServer', '*', { autoTrustChanges: true, waitForLiveTools: true });
        record({ tool: 'startMcpServers', ok: true, text: vscode.lm.tools.map((t) => t.name).join(',') });
      } catch (err) {
        record({ tool: 'startMcpServers', ok: false, error: err instanceof Error ? err.message : String(err) });
      }
    }),
  );
}

export function deactivate(): void {
  // nothing to clean up: subscriptions are disposed by VS Code
}

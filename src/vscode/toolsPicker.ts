/**
 * Choose Shared Tools…: which of a share's tools remote clients may see and call. The list comes
 * from the server itself (asked directly, not through the gate), each tool marked read-only or
 * not as its annotations say; a "Read-only tools only" entry sets the preset. The gate enforces it
 * (core/policy): a call of any other tool is answered "not shared" without reaching the server.
 */
import * as vscode from 'vscode';
import type { TunnelController } from '../core/tunnelController';
import type { ShareSnapshot } from '../core/shares/shares';
import { checkPolicy, describePolicy, type ToolPolicy } from '../core/policy/toolPolicy';
import { loadMcpModule } from '../mcpModule';

type ToolItem = vscode.QuickPickItem & { tool?: string; readOnlyPreset?: true };

/**
 * `given` (tests, keybindings, other extensions): `{ tools?: string[] | null, readOnly?: boolean }`
 * applies that policy without asking (`{ tools: null, readOnly: false }` shares every tool again).
 * Returns the share's policy summary ('' for every tool), or undefined when nothing changed.
 */
export async function chooseShareTools(controller: TunnelController, share: ShareSnapshot, given?: unknown): Promise<string | undefined> {
  if (given && typeof given === 'object' && ('tools' in given || 'readOnly' in given)) {
    const g = given as { tools?: unknown; readOnly?: unknown };
    let policy: ToolPolicy | undefined;
    try {
      policy = checkPolicy({ tools: g.tools, readOnly: g.readOnly });
    } catch (err) {
      void vscode.window.showErrorMessage(`MCP Tunnel: ${(err as Error).message}`);
      return undefined;
    }
    return apply(controller, share, policy);
  }
  const endpoint = controller.localEndpoint(share.id);
  if (!endpoint) return undefined;
  let tools: Awaited<ReturnType<ReturnType<typeof loadMcpModule>['listServerTools']>>;
  try {
    tools = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Asking ${share.name} for its tools…` }, () => loadMcpModule().listServerTools(endpoint));
  } catch (err) {
    void vscode.window.showErrorMessage(`MCP Tunnel: could not list the tools of ${share.name}: ${(err as Error).message}. Is the server running and answering MCP at ${share.local_mcp_url}?`);
    return undefined;
  }
  if (tools.length === 0) {
    void vscode.window.showInformationMessage(`MCP Tunnel: ${share.name} lists no tools: there is nothing to choose.`);
    return undefined;
  }
  const current = share.policy;
  const allowed = (name: string): boolean => !current || current.tools === null || current.tools.includes(name);
  const items: ToolItem[] = [
    { label: '$(shield) Read-only tools only', description: `${tools.filter((t) => t.readOnly).length} of ${tools.length} say readOnlyHint`, detail: 'Also hides any tool the server does not mark read-only, now or later.', picked: current?.read_only === true, readOnlyPreset: true },
    { label: 'Tools', kind: vscode.QuickPickItemKind.Separator },
    ...tools.map(
      (t): ToolItem => ({
        label: t.name,
        description: t.readOnly ? 'read-only' : 'may change things',
        ...(t.description ? { detail: t.description.split('\n')[0]?.slice(0, 160) ?? '' } : {}),
        picked: allowed(t.name),
        tool: t.name,
      }),
    ),
  ];
  const picked = await vscode.window.showQuickPick(items, {
    canPickMany: true,
    title: `Choose Shared Tools — ${share.name}`,
    placeHolder: 'Remote clients see and call only the tools you keep checked; the tunnel refuses the others.',
    ignoreFocusOut: true,
    matchOnDescription: true,
  });
  if (!picked) return undefined;
  const readOnly = picked.some((p) => p.readOnlyPreset);
  const names = picked.flatMap((p) => (p.tool ? [p.tool] : []));
  if (names.length === 0) {
    const ok = await vscode.window.showWarningMessage(`Share no tools of ${share.name}? Clients can still connect, list resources and prompts, but call no tool.`, { modal: true }, 'Share No Tools');
    if (ok !== 'Share No Tools') return undefined;
  }
  const all = names.length === tools.length;
  return apply(controller, share, checkPolicy({ ...(all ? {} : { tools: names }), readOnly }));
}

function apply(controller: TunnelController, share: ShareSnapshot, policy: ToolPolicy | undefined): string | undefined {
  if (!controller.setPolicy(share.id, policy)) {
    void vscode.window.showWarningMessage('MCP Tunnel: that share is no longer on the tunnel.');
    return undefined;
  }
  const summary = describePolicy(policy) ?? '';
  vscode.window.setStatusBarMessage(summary ? `$(shield) ${share.name} shares ${summary} only` : `$(check) ${share.name} shares every tool`, 4000);
  return summary;
}

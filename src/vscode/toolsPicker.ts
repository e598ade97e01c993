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
      void vscode.window.showErrorMessage(vscode.l10n.t('MCP Tunnel: {0}', (err as Error).message));
      return undefined;
    }
    return apply(controller, share, policy);
  }
  const endpoint = controller.localEndpoint(share.id);
  if (!endpoint) return undefined;
  let tools: Awaited<ReturnType<ReturnType<typeof loadMcpModule>['listServerTools']>>;
  try {
    tools = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: vscode.l10n.t('Asking {0} for its tools…', share.name) }, () => loadMcpModule().listServerTools(endpoint));
  } catch (err) {
    void vscode.window.showErrorMessage(vscode.l10n.t('MCP Tunnel: could not list the tools of {0}: {1}. Is the server running and answering MCP at {2}?', share.name, (err as Error).message, share.local_mcp_url ?? ''));
    return undefined;
  }
  if (tools.length === 0) {
    void vscode.window.showInformationMessage(vscode.l10n.t('MCP Tunnel: {0} lists no tools: there is nothing to choose.', share.name));
    return undefined;
  }
  const current = share.policy;
  const allowed = (name: string): boolean => !current || current.tools === null || current.tools.includes(name);
  const items: ToolItem[] = [
    { label: `$(shield) ${vscode.l10n.t('Read-only tools only')}`, description: vscode.l10n.t('{0} of {1} say readOnlyHint', tools.filter((t) => t.readOnly).length, tools.length), detail: vscode.l10n.t('Also hides any tool the server does not mark read-only, now or later.'), picked: current?.read_only === true, readOnlyPreset: true },
    { label: vscode.l10n.t('Tools'), kind: vscode.QuickPickItemKind.Separator },
    ...tools.map(
      (t): ToolItem => ({
        label: t.name,
        description: t.readOnly ? vscode.l10n.t('read-only') : vscode.l10n.t('may change things'),
        ...(t.description ? { detail: t.description.split('\n')[0]?.slice(0, 160) ?? '' } : {}),
        picked: allowed(t.name),
        tool: t.name,
      }),
    ),
  ];
  const picked = await vscode.window.showQuickPick(items, {
    canPickMany: true,
    title: vscode.l10n.t('Choose Shared Tools — {0}', share.name),
    placeHolder: vscode.l10n.t('Remote clients see and call only the tools you keep checked; the tunnel refuses the others.'),
    ignoreFocusOut: true,
    matchOnDescription: true,
  });
  if (!picked) return undefined;
  const readOnly = picked.some((p) => p.readOnlyPreset);
  const names = picked.flatMap((p) => (p.tool ? [p.tool] : []));
  if (names.length === 0) {
    const none = vscode.l10n.t('Share No Tools');
    const ok = await vscode.window.showWarningMessage(vscode.l10n.t('Share no tools of {0}? Clients can still connect, list resources and prompts, but call no tool.', share.name), { modal: true }, none);
    if (ok !== none) return undefined;
  }
  const all = names.length === tools.length;
  return apply(controller, share, checkPolicy({ ...(all ? {} : { tools: names }), readOnly }));
}

function apply(controller: TunnelController, share: ShareSnapshot, policy: ToolPolicy | undefined): string | undefined {
  if (!controller.setPolicy(share.id, policy)) {
    void vscode.window.showWarningMessage(vscode.l10n.t('MCP Tunnel: that share is no longer on the tunnel.'));
    return undefined;
  }
  const summary = describePolicy(policy) ?? '';
  vscode.window.setStatusBarMessage(summary ? `$(shield) ${vscode.l10n.t('{0} shares {1} only', share.name, summary)}` : `$(check) ${vscode.l10n.t('{0} shares every tool', share.name)}`, 4000);
  return summary;
}

/**
 * The Inspector: one webview per share with the calls the gate recorded (core/gate/recorder) as a
 * live table — filter by method, tool, status, link or client; a row opens its request and
 * response; Copy as curl puts the request on the clipboard with the secret masked, or with it
 * when asked. Strict CSP (scripts and styles only from the extension's media folder), no remote
 * resources, the theme's colors. What the page gets is already redacted; the secret only ever
 * goes to the clipboard, on the explicit "with secret" action.
 */
import * as vscode from 'vscode';
import type { RecordedCall } from '../core/gate/recorder';
import type { TunnelController } from '../core/tunnelController';
import type { ShareSnapshot } from '../core/shares/shares';
import { shareUrlPrefix } from '../core/shares/shares';

/** What the page is told about its share. */
interface ShareInfo {
  id: string;
  name: string;
  access: string;
  policy: string | null;
  running: boolean;
}

type FromPage = { type: 'ready' } | { type: 'copyCurl'; id: string; withSecret: boolean } | { type: 'copyJson'; id: string; which: 'request' | 'response' };

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A curl command line for a recorded call: the public URL (its secret masked unless `secret`), the body as recorded (redacted). */
export function curlOf(call: RecordedCall, share: ShareSnapshot, tunnelUrl: string | null, withSecret: boolean): string | undefined {
  if (!share.mcp_url) return undefined;
  const prefix = share.access === 'secret' ? shareUrlPrefix(tunnelUrl, share) : undefined;
  const url = withSecret || !prefix ? share.mcp_url : share.mcp_url.replace(prefix, '/<secret>');
  const parts = ['curl', '-sS', '-N', '-X', call.http_method, shellQuote(url)];
  if (call.http_method === 'POST') parts.push('-H', shellQuote('Content-Type: application/json'));
  parts.push('-H', shellQuote('Accept: application/json, text/event-stream'));
  if (call.session) parts.push('-H', shellQuote(`Mcp-Session-Id: ${call.session}`));
  if (call.request_body !== null) parts.push('--data-raw', shellQuote(call.request_body));
  return parts.join(' ');
}

export class InspectorPanels implements vscode.Disposable {
  private readonly panels = new Map<string, { panel: vscode.WebviewPanel; lastSent: number; ready: boolean }>();
  private readonly subs: vscode.Disposable[] = [];
  private pending: NodeJS.Timeout | undefined;

  constructor(
    private readonly controller: TunnelController,
    private readonly mediaRoot: vscode.Uri,
  ) {
    this.subs.push(
      // Calls may come by the hundred per second: pages are updated at most four times a second.
      controller.onDidRecordActivity(() => {
        if (this.panels.size === 0) return;
        this.pending ??= setTimeout(() => {
          this.pending = undefined;
          for (const id of this.panels.keys()) this.push(id);
        }, 250);
      }),
      controller.onDidChangeShares(() => {
        for (const id of this.panels.keys()) this.post(id, { type: 'share', share: this.info(id) });
      }),
    );
  }

  /** The share's Inspector, opened or brought to the front. */
  open(share: ShareSnapshot): vscode.WebviewPanel {
    const open = this.panels.get(share.id);
    if (open) {
      open.panel.reveal();
      return open.panel;
    }
    const panel = vscode.window.createWebviewPanel('mcpTunnel.inspector', vscode.l10n.t('Inspector: {0}', share.name), vscode.ViewColumn.Active, {
      enableScripts: true,
      localResourceRoots: [this.mediaRoot],
    });
    const entry = { panel, lastSent: 0, ready: false };
    this.panels.set(share.id, entry);
    panel.webview.html = this.html(panel.webview, share);
    panel.onDidDispose(() => this.panels.delete(share.id));
    panel.webview.onDidReceiveMessage((m: FromPage) => this.onMessage(share.id, m));
    return panel;
  }

  /** Open pages' share ids (for tests). */
  openShares(): string[] {
    return [...this.panels.keys()];
  }

  private info(id: string): ShareInfo {
    const sh = this.controller.listShares().find((x) => x.id === id);
    return { id, name: sh?.name ?? id, access: sh?.access ?? 'secret', policy: sh?.policy?.summary ?? null, running: sh !== undefined };
  }

  private post(id: string, message: unknown): void {
    const e = this.panels.get(id);
    if (e?.ready) void e.panel.webview.postMessage(message);
  }

  /** The calls the page has not seen yet (ids grow: `a-<n>`). */
  private push(id: string): void {
    const e = this.panels.get(id);
    if (!e?.ready) return;
    const fresh = this.controller.activity(id).filter((c) => num(c.id) > e.lastSent);
    if (fresh.length === 0) return;
    e.lastSent = num(fresh[fresh.length - 1]?.id ?? 'a-0');
    void e.panel.webview.postMessage({ type: 'calls', calls: fresh });
  }

  private async onMessage(id: string, m: FromPage): Promise<void> {
    const e = this.panels.get(id);
    if (!e) return;
    if (m.type === 'ready') {
      e.ready = true;
      const calls = this.controller.activity(id);
      e.lastSent = num(calls[calls.length - 1]?.id ?? 'a-0');
      void e.panel.webview.postMessage({ type: 'init', share: this.info(id), calls, max: this.controller.recorder?.capacity ?? 0 });
      return;
    }
    const call = this.controller.activity(id).find((c) => c.id === m.id);
    if (!call) return void vscode.window.showWarningMessage('MCP Tunnel: that call is no longer in the inspector (it keeps the last calls only).');
    if (m.type === 'copyJson') {
      const body = m.which === 'request' ? call.request_body : call.response_body;
      if (body === null) return void vscode.window.showWarningMessage('MCP Tunnel: no body was kept for that call (mcpTunnel.inspector.captureBodies is off, or it had none).');
      await vscode.env.clipboard.writeText(body);
      vscode.window.setStatusBarMessage(`$(check) Copied the ${m.which} body (secrets redacted)`, 3000);
      return;
    }
    const share = this.controller.listShares().find((x) => x.id === id);
    const curl = share ? curlOf(call, share, this.controller.snapshot().url, m.withSecret) : undefined;
    if (!curl) return void vscode.window.showWarningMessage('MCP Tunnel: the share has no public URL now (is the tunnel running?).');
    await vscode.env.clipboard.writeText(curl);
    const cut = call.request_truncated_from !== null ? ' The body was cut at the inspector limit.' : '';
    vscode.window.setStatusBarMessage(`$(check) Copied as curl ${m.withSecret ? 'WITH the share secret' : '(secret masked)'}; redacted values stay redacted.${cut}`, 5000);
  }

  private html(webview: vscode.Webview, share: ShareSnapshot): string {
    const css = webview.asWebviewUri(vscode.Uri.joinPath(this.mediaRoot, 'inspector.css'));
    const js = webview.asWebviewUri(vscode.Uri.joinPath(this.mediaRoot, 'inspector.js'));
    const title = share.name.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
    return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src ${webview.cspSource}; script-src ${webview.cspSource};">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="${css.toString()}">
<title>Inspector: ${title}</title>
</head>
<body>
<header>
  <h1 id="title">Inspector: ${title}</h1>
  <span id="meta"></span>
</header>
<div class="bar">
  <input id="filter" type="search" placeholder="Filter: method, tool, status, link, client (e.g. tools/call, echo, 401, Alice)" aria-label="Filter calls">
  <label><input id="errors" type="checkbox"> errors only</label>
  <span id="count" role="status"></span>
</div>
<main>
  <div id="table">
  <table id="calls" aria-label="Calls through this share">
    <thead><tr><th>Time</th><th>Call</th><th>Outcome</th><th class="num">ms</th><th>Client</th><th>From</th><th>Link</th><th class="num">Bytes in / out</th></tr></thead>
    <tbody></tbody>
  </table>
  </div>
  <p id="empty">No calls yet. They appear here as remote clients use this share.</p>
  <section id="detail" hidden>
    <div class="actions">
      <button id="curl" type="button">Copy as curl</button>
      <button id="curlSecret" type="button" class="secondary" title="Puts the share secret on the clipboard">Copy as curl with secret</button>
      <button id="copyReq" type="button" class="secondary">Copy request</button>
      <button id="copyRes" type="button" class="secondary">Copy response</button>
    </div>
    <dl id="facts"></dl>
    <h2>Request</h2><pre id="req"></pre>
    <h2>Response</h2><pre id="res"></pre>
  </section>
</main>
<script src="${js.toString()}"></script>
</body></html>`;
  }

  dispose(): void {
    if (this.pending) clearTimeout(this.pending);
    for (const s of this.subs) s.dispose();
    for (const e of [...this.panels.values()]) e.panel.dispose();
  }
}

function num(id: string): number {
  return Number(id.slice(2)) || 0;
}

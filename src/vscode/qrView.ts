/** "Show QR Code": the public MCP URL as a QR code, in a webview with a strict CSP and no remote resources. */
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import * as vscode from 'vscode';

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);
}

export function qrSvg(text: string): string {
  // dist/qr.js (see qrSvg.ts): a computed require, so the encoder stays out of extension.js.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require(path.join(__dirname, 'qr.js')) as typeof import('./qrSvg');
  return mod.qrSvg(text);
}

/** The page: an <img> of the SVG as a data: URI; no scripts, no network. */
export function qrHtml(url: string, caption: string): string {
  const nonce = randomBytes(16).toString('base64');
  const svg = Buffer.from(qrSvg(url)).toString('base64');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'nonce-${nonce}';">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MCP Tunnel QR code</title>
<style nonce="${nonce}">
  body { font-family: var(--vscode-font-family); color: var(--vscode-foreground); display: flex; flex-direction: column; align-items: center; padding: 24px; }
  img { width: min(360px, 80vw); height: auto; image-rendering: pixelated; background: #fff; padding: 8px; border-radius: 6px; }
  code { user-select: all; word-break: break-all; font-size: 1.05em; }
  p { max-width: 520px; text-align: center; }
</style></head>
<body>
<img src="data:image/svg+xml;base64,${svg}" alt="QR code of ${escapeHtml(url)}">
<p><code>${escapeHtml(url)}</code></p>
<p>${escapeHtml(caption)}</p>
</body></html>`;
}

export class QrPanel implements vscode.Disposable {
  private panel: vscode.WebviewPanel | undefined;
  private shown: string | undefined;

  show(url: string, caption: string): void {
    this.shown = url;
    if (!this.panel) {
      this.panel = vscode.window.createWebviewPanel('mcpTunnel.qr', vscode.l10n.t('MCP Tunnel: QR Code'), vscode.ViewColumn.Active, {
        enableScripts: false,
        localResourceRoots: [],
      });
      this.panel.onDidDispose(() => (this.panel = undefined));
    }
    this.panel.webview.html = qrHtml(url, caption);
    this.panel.reveal();
  }

  /** The tunnel stopped or its URL changed: a stale code must not stay on screen. */
  update(url: string | undefined, caption: string): void {
    if (!this.panel || url === this.shown) return;
    if (url) this.show(url, caption);
    else this.panel.dispose();
  }

  dispose(): void {
    this.panel?.dispose();
  }
}

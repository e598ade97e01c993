/** The status bar item: subscribes to the controller, never polls; the uptime ticks only while live. */
import * as vscode from 'vscode';
import { formatResponses, formatUptime, maskSharePath, msUntilNextUptimeChange, shortHost } from '../core/util/format';
import { isLive, joinUrl, localUrlOf, sharePathOf, snapshotOf, type TunnelApi, type TunnelState, type TunnelTarget } from '../core/model/tunnelState';
import { CommandId } from './commands';

/**
 * The host as the status bar shows it: `<words>` of `<words>.trycloudflare.com`, cut after a whole word
 * (`completely-meadow-bridges…`) rather than in the middle of two (`completely-mea…dges-seasonal`).
 */
export function statusHost(url: string, max = 28): string {
  const host = shortHost(url, Number.MAX_SAFE_INTEGER);
  if (host.length <= max) return host;
  const words = host.split('-');
  let out = words[0] ?? host;
  for (const w of words.slice(1)) {
    if (out.length + 1 + w.length > max - 1) break;
    out += `-${w}`;
  }
  return out.length <= max - 1 ? `${out}…` : shortHost(url, max);
}

export class TunnelStatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private readonly subs: vscode.Disposable[] = [];
  private tick: NodeJS.Timeout | undefined;

  constructor(
    private readonly controller: TunnelApi,
    private readonly defaultTarget: () => TunnelTarget,
  ) {
    this.item = vscode.window.createStatusBarItem('mcpTunnel.status', vscode.StatusBarAlignment.Left, 50);
    this.item.name = vscode.l10n.t('MCP Tunnel');
    this.item.command = CommandId.ShowActions;
    this.subs.push(
      controller.onDidChangeState(() => this.render()),
      controller.onDidChangeShares(() => this.render()),
      controller.onDidChangeMetrics(() => this.renderTooltip(this.controller.state)),
    );
    this.render();
    this.item.show();
  }

  get text(): string {
    return this.item.text;
  }

  /** Re-render (e.g. the default target changed in settings). */
  render(): void {
    const s = this.controller.state;
    const item = this.item;
    item.backgroundColor = undefined;
    let label: string;
    switch (s.status) {
      case 'stopped':
        item.text = `$(cloud) ${vscode.l10n.t('MCP Tunnel')}`;
        label = vscode.l10n.t('MCP Tunnel: stopped. Activate for actions.');
        break;
      case 'starting':
        item.text = `$(loading~spin) ${vscode.l10n.t('Tunnel: starting…')}`;
        label = vscode.l10n.t('MCP Tunnel: starting');
        break;
      case 'connecting':
        item.text = `$(loading~spin) ${vscode.l10n.t('Tunnel: connecting…')}`;
        label = vscode.l10n.t('MCP Tunnel: connecting to the Cloudflare edge');
        break;
      case 'active': {
        const up = formatUptime((Date.now() - s.connectedAt) / 1000);
        const shares = this.controller.listShares();
        // Several shares: their number, and amber while any of them is open.
        if (shares.length > 1) {
          const open = shares.filter((x) => x.access === 'open').length;
          const count = open ? vscode.l10n.t('{0} shares ({1} open)', shares.length, open) : vscode.l10n.t('{0} shares', shares.length);
          item.text = `$(${open ? 'unlock' : 'cloud-upload'}) ${statusHost(s.url)} · ${count} · ${up}`;
          if (open) item.backgroundColor = new vscode.ThemeColor('statusBarItem.warningBackground');
          label = open
            ? vscode.l10n.t('MCP Tunnel active at {0}, up {1}, {2} shares, {3} open to anyone with the URL', shortHost(s.url, 64), up, shares.length, open)
            : vscode.l10n.t('MCP Tunnel active at {0}, up {1}, {2} shares, each with its own secret link', shortHost(s.url, 64), up, shares.length);
        } else if (s.sharePath) {
          item.text = `$(cloud-upload) ${statusHost(s.url)} · ${up}`;
          label = vscode.l10n.t('MCP Tunnel active at {0}, up {1}, secret link required', shortHost(s.url, 64), up);
        } else {
          // No gate: anyone with the URL gets in. Keep that in sight while it runs.
          item.text = `$(unlock) ${statusHost(s.url)} · ${vscode.l10n.t('open')} · ${up}`;
          item.backgroundColor = new vscode.ThemeColor('statusBarItem.warningBackground');
          label = vscode.l10n.t('MCP Tunnel active at {0}, up {1}, open to anyone with the URL', shortHost(s.url, 64), up);
        }
        // "Share for…": the time left until the next share stops by itself.
        const stops = shares.map((x) => (x.stops_at ? Date.parse(x.stops_at) : Infinity)).reduce((a, b) => Math.min(a, b), Infinity);
        if (stops !== Infinity) {
          const left = formatUptime(Math.max(0, stops - Date.now()) / 1000);
          item.text += ` · $(watch) ${left}`;
          label += shares.length > 1 ? vscode.l10n.t('; a share stops by itself in {0}', left) : vscode.l10n.t('; it stops by itself in {0}', left);
        }
        break;
      }
      case 'reconnecting':
        item.text = `$(warning) ${vscode.l10n.t('Tunnel: reconnecting…')}`;
        item.backgroundColor = new vscode.ThemeColor('statusBarItem.warningBackground');
        label = vscode.l10n.t('MCP Tunnel: edge connection lost, reconnecting');
        break;
      case 'stopping':
        item.text = `$(loading~spin) ${vscode.l10n.t('Tunnel: stopping…')}`;
        label = vscode.l10n.t('MCP Tunnel: stopping');
        break;
      case 'failed':
        item.text = `$(error) ${vscode.l10n.t('Tunnel failed')}`;
        item.backgroundColor = new vscode.ThemeColor('statusBarItem.errorBackground');
        label = vscode.l10n.t('MCP Tunnel failed: {0}', s.error.message);
        break;
      case 'restarting':
        item.text = `$(sync~spin) ${vscode.l10n.t('Tunnel: restarting…')}`;
        item.backgroundColor = new vscode.ThemeColor('statusBarItem.errorBackground');
        label = vscode.l10n.t('MCP Tunnel stopped unexpectedly and restarts (attempt {0}): {1}', s.restartAttempt, s.error.message);
        break;
    }
    item.accessibilityInformation = { label, role: 'button' };
    this.renderTooltip(s);
    this.scheduleTick(s);
  }

  private renderTooltip(s: TunnelState): void {
    const md = new vscode.MarkdownString(undefined, true);
    md.isTrusted = { enabledCommands: [CommandId.CopyMcpUrl, CommandId.CopyUrl, CommandId.Start, CommandId.Stop, CommandId.ShowLog] };
    const target = 'target' in s && s.target ? s.target : this.defaultTarget();
    const local = joinUrl(localUrlOf(target), target.path);
    md.appendMarkdown(`**${vscode.l10n.t('MCP Tunnel')}** — ${s.status}\n\n`);
    if ('url' in s && s.url) {
      const sharePath = sharePathOf(s);
      md.appendMarkdown(`${vscode.l10n.t('Public URL: {0}', s.url)}\n\n`);
      md.appendMarkdown(`${vscode.l10n.t('Public MCP URL: {0}', maskSharePath(snapshotOf(s).mcp_url ?? joinUrl(s.url, target.path), sharePath))}\n\n`);
      if (isLive(s)) {
        md.appendMarkdown(
          sharePath
            ? `$(lock) ${vscode.l10n.t('Access: secret link required (the MCP URL you copy carries the secret)')}\n\n`
            : `$(unlock) ${vscode.l10n.t('**Access: open** — anyone with the URL reaches your local server')}\n\n`,
        );
      }
    }
    md.appendMarkdown(`${vscode.l10n.t('Local: {0}', local)}\n\n`);
    if (s.status === 'active' || s.status === 'reconnecting') {
      md.appendMarkdown(vscode.l10n.t('Uptime: {0}', formatUptime((Date.now() - s.connectedAt) / 1000)));
      const edges = s.connections.map((c) => c.location).filter(Boolean);
      if (edges.length) md.appendMarkdown(` · ${vscode.l10n.t('Edge: {0}', edges.join(', '))}`);
      md.appendMarkdown('\n\n');
      const m = this.controller.metrics;
      if (m) md.appendMarkdown(`${vscode.l10n.t('Requests: {0} · Errors: {1} · In flight: {2} · Responses: {3}', m.totalRequests, m.requestErrors, m.concurrentRequests, formatResponses(m.responsesByCode))}\n\n`);
    }
    if (s.status === 'failed' || s.status === 'restarting') md.appendMarkdown(`$(error) ${s.error.message}\n\n`);
    if (s.status === 'connecting') md.appendMarkdown(`${vscode.l10n.t("The URL is issued but does not work until cloudflared connects to Cloudflare's edge.")}\n\n`);
    md.appendMarkdown(vscode.l10n.t('Click for actions.'));
    this.item.tooltip = md;
  }

  private scheduleTick(s: TunnelState): void {
    if (this.tick) clearTimeout(this.tick);
    this.tick = undefined;
    if (s.status !== 'active') return;
    this.tick = setTimeout(() => this.render(), msUntilNextUptimeChange(s.connectedAt, Date.now()));
  }

  dispose(): void {
    if (this.tick) clearTimeout(this.tick);
    for (const d of this.subs) d.dispose();
    this.item.dispose();
  }
}

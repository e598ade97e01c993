/** The tree view: one row per fact of the tunnel. Subscribes to the controller; refreshes are debounced. */
import * as vscode from 'vscode';
import type { RecordedCall } from '../core/gate/recorder';
import { formatResponses, formatUptime, maskSharePath, msUntilNextUptimeChange } from '../core/util/format';
import { isLive, joinUrl, localUrlOf, sharePathOf, type CloudflaredInfo, type TunnelApi, type TunnelTarget } from '../core/model/tunnelState';
import { shareUrlPrefix, type ShareSnapshot } from '../core/shares/shares';
import type { ReachabilityResult } from '../core/doctor/reachability';
import type { ReachabilityView } from '../core/doctor/monitor';

export interface TunnelTreeRow {
  id: string;
  label: string;
  description: string;
  tooltip?: string;
  icon: string;
  color?: string;
  /** What actions apply (package.json `view/item/context`): `copyable`, `openable`, `share …` (a share node), `shareAccessSecret`, `shareLink`, … */
  contextValue?: string;
  /** The value Copy / Open act on. */
  value?: string;
  /** The share this row is (or belongs to): what the share commands act on. */
  shareId?: string;
  /** Rows with children start expanded unless this is set. */
  collapsed?: boolean;
  /** A link's row: which link (with `shareId`). */
  linkId?: string;
  /** Rows under this one (shown expanded). */
  children?: TunnelTreeRow[];
}

export class TunnelTreeProvider implements vscode.TreeDataProvider<TunnelTreeRow>, vscode.Disposable {
  private readonly _onDidChangeTreeData = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this._onDidChangeTreeData.event;
  private readonly subs: vscode.Disposable[] = [];
  private pending: NodeJS.Timeout | undefined;
  private tick: NodeJS.Timeout | undefined;
  /** Set when the view first asks for rows: the cue to look for cloudflared (not at activation). */
  onFirstVisible: (() => void) | undefined;

  constructor(
    private readonly controller: TunnelApi,
    private readonly defaultTarget: () => TunnelTarget,
    private readonly cloudflaredHint: () => CloudflaredInfo | undefined,
    /** Requests the access gate let through and refused (a live tunnel in secret mode). */
    private readonly accessStats: () => { passed: number; rejected: number } | undefined = () => undefined,
    /** The reachability doctor: each share's Internet row. */
    private readonly reachability?: ReachabilityView,
  ) {
    if (reachability) this.subs.push(reachability.onDidChange(() => this.refresh()));
    this.subs.push(
      controller.onDidChangeState(() => this.refresh()),
      controller.onDidChangeMetrics(() => this.refresh()),
      controller.onDidChangeShares(() => this.refresh()),
      // Calls may come by the hundred per second: the Activity rows redraw at most twice a second.
      controller.onDidRecordActivity(() => {
        this.activityPending ??= setTimeout(() => {
          this.activityPending = undefined;
          this.refresh();
        }, 500);
      }),
    );
  }

  private metricsWatch: { dispose(): void } | undefined;
  private activityPending: NodeJS.Timeout | undefined;

  /** The view is shown or hidden: its metrics rows are what makes the controller poll. */
  setVisible(visible: boolean): void {
    if (visible) this.metricsWatch ??= this.controller.watchMetrics();
    else {
      this.metricsWatch?.dispose();
      this.metricsWatch = undefined;
    }
  }

  /** Coalesces bursts of state and metrics events into one redraw. */
  refresh(): void {
    if (this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      this._onDidChangeTreeData.fire();
    }, 50);
  }

  getTreeItem(row: TunnelTreeRow): vscode.TreeItem {
    const item = new vscode.TreeItem(row.label, row.children?.length ? (row.collapsed ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.Expanded) : vscode.TreeItemCollapsibleState.None);
    item.id = row.id;
    item.description = row.description;
    item.tooltip = row.tooltip ?? `${row.label}: ${row.description}`;
    item.iconPath = new vscode.ThemeIcon(row.icon, row.color ? new vscode.ThemeColor(row.color) : undefined);
    if (row.contextValue) item.contextValue = row.contextValue;
    item.accessibilityInformation = { label: `${row.label}: ${row.description}` };
    return item;
  }

  getChildren(element?: TunnelTreeRow): TunnelTreeRow[] {
    if (element) return element.children ?? [];
    if (this.onFirstVisible) {
      const f = this.onFirstVisible;
      this.onFirstVisible = undefined;
      f();
    }
    return this.rows();
  }

  /**
   * The rows for the current state (also what the extension-host tests read): one tunnel node
   * (status, public URL, edge, cloudflared, totals) and under it one node per share.
   */
  rows(): TunnelTreeRow[] {
    const s = this.controller.state;
    this.scheduleTick();
    if (s.status === 'stopped') return []; // the welcome view takes over
    // Without a usable cloudflared the install guidance (a welcome view) says more than an error row.
    if (s.status === 'failed' && (s.error.code === 'not-found' || s.error.code === 'not-executable' || s.error.code === 'not-cloudflared')) return [];
    const snap = this.controller.snapshot();
    const target = 'target' in s && s.target ? s.target : this.defaultTarget();
    const rows: TunnelTreeRow[] = [];
    const statusIcon: Record<string, [string, string?]> = {
      starting: ['loading~spin'],
      connecting: ['loading~spin'],
      active: ['pass-filled', 'testing.iconPassed'],
      reconnecting: ['warning', 'problemsWarningIcon.foreground'],
      stopping: ['loading~spin'],
      failed: ['error', 'problemsErrorIcon.foreground'],
      restarting: ['sync~spin', 'problemsWarningIcon.foreground'],
    };
    const [icon, color] = statusIcon[s.status] ?? ['circle-outline'];
    const statusText: Record<string, string> = {
      starting: vscode.l10n.t('Starting…'),
      connecting: vscode.l10n.t('Connecting to the edge…'),
      active: vscode.l10n.t('Active'),
      reconnecting: vscode.l10n.t('Reconnecting…'),
      stopping: vscode.l10n.t('Stopping…'),
      failed: vscode.l10n.t('Failed'),
      restarting: s.status === 'restarting' ? vscode.l10n.t('Restarting (attempt {0}) at {1}', s.restartAttempt, new Date(s.restartAt).toLocaleTimeString()) : vscode.l10n.t('Restarting'),
    };
    if (s.status === 'failed' || s.status === 'restarting') {
      rows.push({ id: 'error', label: vscode.l10n.t('Error'), description: s.error.message, tooltip: [s.error.message, '', ...s.error.lastLines.slice(-8)].join('\n'), icon: 'info' });
    }
    if (snap.url) rows.push({ id: 'url', label: vscode.l10n.t('Public URL'), description: snap.url, tooltip: vscode.l10n.t('{0}\nThe tunnel\'s address; each share below has its own MCP URL.', snap.url), icon: 'globe', contextValue: sharePathOf(s) ? 'copyable' : 'copyable openable', value: snap.url });
    if (s.status === 'active' || s.status === 'reconnecting') {
      rows.push({ id: 'uptime', label: vscode.l10n.t('Uptime'), description: formatUptime(snap.uptime_seconds), icon: 'clock' });
      if (snap.edge_locations.length) rows.push({ id: 'edge', label: vscode.l10n.t('Edge location'), description: snap.edge_locations.join(', '), icon: 'location' });
    }
    const protocolNote = isLive(s) ? this.controller.protocolNote?.() : undefined;
    if (protocolNote) rows.push({ id: 'protocol', label: vscode.l10n.t('Protocol'), description: protocolNote, tooltip: vscode.l10n.t('{0}. Quick tunnels never fall back from QUIC by themselves, so MCP Tunnel starts them with HTTP/2 here. Set mcpTunnel.protocol to choose yourself.', protocolNote), icon: 'arrow-swap' });
    if (snap.pid) rows.push({ id: 'pid', label: vscode.l10n.t('PID'), description: String(snap.pid), icon: 'symbol-number' });
    const cf = this.controller.cloudflared ?? this.cloudflaredHint();
    if (cf) rows.push({ id: 'cloudflared', label: 'cloudflared', description: `${cf.version}  ${cf.path}`, tooltip: vscode.l10n.t('cloudflared {0} at {1}', cf.version, cf.path), icon: 'package', contextValue: 'copyable', value: cf.path });
    const m = this.controller.metrics;
    if (m) {
      rows.push({ id: 'requests', label: vscode.l10n.t('Requests'), description: vscode.l10n.t('{0} total · {1} errors · {2} in flight', m.totalRequests, m.requestErrors, m.concurrentRequests), icon: 'pulse' });
      rows.push({ id: 'responses', label: vscode.l10n.t('Responses'), description: formatResponses(m.responsesByCode), icon: 'list-ordered' });
    }
    const st = isLive(s) ? this.accessStats() : undefined;
    if (st && st.rejected > 0) {
      rows.push({
        id: 'refused',
        label: vscode.l10n.t('Refused'),
        description: vscode.l10n.t('{0} without a valid secret', st.rejected),
        tooltip: vscode.l10n.t('Requests with no share secret, a wrong one, or a rotated-out one got 401 without reaching any server. Let through: {0}; refused: {1}.', st.passed, st.rejected),
        icon: 'shield',
      });
    }
    // Every share under the tunnel, one node each, whether it is alone or not.
    const shares = isLive(s) ? this.controller.listShares() : [];
    // The Internet row only while active: a check runs only then.
    const active = s.status === 'active';
    const reach = (id: string): ReachabilityResult | undefined => (active ? this.reachability?.result(id) : undefined);
    for (const sh of shares) rows.push(shareNode(sh, snap.url, this.controller.activity(sh.id), reach(sh.id), active));
    if (shares.length === 0) {
      const local = joinUrl(localUrlOf(target), target.path);
      rows.push({ id: 'local', label: vscode.l10n.t('Local target'), description: local, icon: 'server', contextValue: 'copyable', value: local });
    }
    const host = snap.url ? snap.url.replace(/^https:\/\//, '') : undefined;
    const count = shares.length > 1 ? vscode.l10n.t('{0} shares', shares.length) : undefined;
    return [
      {
        id: 'tunnel',
        label: vscode.l10n.t('Tunnel'),
        description: [statusText[s.status] ?? s.status, host, count].filter(Boolean).join(' · '),
        tooltip: [statusText[s.status] ?? s.status, snap.url, count].filter(Boolean).join('\n'),
        icon,
        ...(color ? { color } : {}),
        contextValue: 'tunnel',
        children: rows,
      },
    ];
  }

  /** Every row, depth first (what the extension-host tests search). */
  allRows(): TunnelTreeRow[] {
    const out: TunnelTreeRow[] = [];
    const walk = (rs: TunnelTreeRow[]): void => {
      for (const r of rs) {
        out.push(r);
        if (r.children) walk(r.children);
      }
    };
    walk(this.rows());
    return out;
  }

  /** The share nodes, one per share (what the extension-host tests read). */
  shareRows(): TunnelTreeRow[] {
    return this.rows()[0]?.children?.filter((r) => r.id.startsWith('share:')) ?? [];
  }

  private scheduleTick(): void {
    if (this.tick) clearTimeout(this.tick);
    this.tick = undefined;
    const s = this.controller.state;
    if (s.status !== 'active') return;
    this.tick = setTimeout(() => this._onDidChangeTreeData.fire(), msUntilNextUptimeChange(s.connectedAt, Date.now()));
  }

  dispose(): void {
    this.setVisible(false);
    if (this.pending) clearTimeout(this.pending);
    if (this.activityPending) clearTimeout(this.activityPending);
    if (this.tick) clearTimeout(this.tick);
    for (const d of this.subs) d.dispose();
    this._onDidChangeTreeData.dispose();
  }
}

/** A share: its name and state, and under it the rows a user acts on. */
function shareNode(sh: ShareSnapshot, tunnelUrl: string | null, calls: readonly RecordedCall[], reach: ReachabilityResult | undefined, live: boolean): TunnelTreeRow {
  const secretPath = sh.access === 'secret' ? shareUrlPrefix(tunnelUrl, sh) : undefined;
  const shown = sh.mcp_url ? maskSharePath(sh.mcp_url, secretPath) : vscode.l10n.t('no URL yet');
  const traffic = sh.requests === 1 ? (sh.errors === 1 ? vscode.l10n.t('1 request · 1 error') : vscode.l10n.t('1 request · {0} errors', sh.errors)) : sh.errors === 1 ? vscode.l10n.t('{0} requests · 1 error', sh.requests) : vscode.l10n.t('{0} requests · {1} errors', sh.requests, sh.errors);
  const last = sh.last_request_at ? vscode.l10n.t(' · last {0}', new Date(sh.last_request_at).toLocaleTimeString()) : '';
  const children: TunnelTreeRow[] = [];
  if (sh.command) {
    children.push({ id: `${sh.id}:runs`, label: vscode.l10n.t('Runs'), description: `${sh.detail ? `${sh.detail} · ` : ''}${sh.command}`, tooltip: vscode.l10n.t('{0}\nstdio, one process per client session. GET-stream notifications arrive late through a quick tunnel (cloudflared#1449).', sh.command), icon: 'terminal', contextValue: 'copyable stdioShare', value: sh.command, shareId: sh.id });
  } else {
    children.push({ id: `${sh.id}:local`, label: vscode.l10n.t('Local target'), description: sh.local_mcp_url, icon: 'server', contextValue: 'copyable', value: sh.local_mcp_url, shareId: sh.id });
  }
  children.push(
    { id: `${sh.id}:mcpUrl`, label: vscode.l10n.t('MCP URL'), description: shown, tooltip: secretPath ? vscode.l10n.t('{0}\nThe secret is hidden here; Copy puts the full URL on the clipboard.', shown) : (sh.mcp_url ?? ''), icon: 'plug', contextValue: 'copyable', ...(sh.mcp_url ? { value: sh.mcp_url } : {}), shareId: sh.id },
    sh.access === 'secret'
      ? { id: `${sh.id}:access`, label: vscode.l10n.t('Access'), description: vscode.l10n.t('Secret link required'), tooltip: vscode.l10n.t('Only requests carrying this share\'s secret reach its server: its copied MCP URL and client configs include it. Anything else gets 401 without touching the server. Rotate the secret to cut off everyone who has it.'), icon: 'lock', contextValue: 'shareAccessSecret', shareId: sh.id }
      : { id: `${sh.id}:access`, label: vscode.l10n.t('Access'), description: vscode.l10n.t('Open: anyone with the URL'), tooltip: vscode.l10n.t('Anyone who learns this URL reaches the server. Stop the share and share it again with a secret link to require one.'), icon: 'unlock', color: 'problemsWarningIcon.foreground', shareId: sh.id },
    { id: `${sh.id}:traffic`, label: vscode.l10n.t('Traffic'), description: traffic + last, icon: 'pulse', shareId: sh.id },
  );
  children.push(...shareDetails(sh, calls, reach, live));
  if (sh.problem) children.push({ id: `${sh.id}:problem`, label: vscode.l10n.t('Problem'), description: sh.problem, icon: 'warning', color: 'problemsWarningIcon.foreground', shareId: sh.id });
  const icon = sh.reachable === false ? 'warning' : sh.access === 'open' ? 'unlock' : 'lock';
  const access = sh.access === 'open' ? vscode.l10n.t('open') : vscode.l10n.t('secret');
  return {
    id: `share:${sh.id}`,
    label: sh.name,
    description: `${sh.kind === 'stdio' ? 'stdio · ' : ''}${access} · ${traffic}`,
    tooltip: `${sh.name}: ${shown}\n${traffic}${last}${sh.problem ? `\n${sh.problem}` : ''}`,
    icon,
    ...(sh.reachable === false || sh.access === 'open' ? { color: 'problemsWarningIcon.foreground' } : {}),
    contextValue: ['share', ...(sh.access === 'secret' ? ['shareWithSecret'] : []), ...(sh.kind === 'stdio' ? ['stdioShare'] : [])].join(' '),
    ...(sh.mcp_url ? { value: sh.mcp_url } : {}),
    shareId: sh.id,
    children,
  };
}

/** The rows a share has only when it has them: Tools, Stops, Links, Activity (the same under a share node and for a lone share). */
function shareDetails(sh: ShareSnapshot, calls: readonly RecordedCall[], reach: ReachabilityResult | undefined, live: boolean): TunnelTreeRow[] {
  return [live ? internetNode(sh, reach) : undefined, toolsNode(sh), stopsNode(sh), linksNode(sh), activityNode(sh.id, calls)].filter((r): r is TunnelTreeRow => r !== undefined);
}

/** What the reachability doctor found from the internet side: "Reachable from the internet · 230 ms", or the cause. */
function internetNode(sh: ShareSnapshot, r: ReachabilityResult | undefined): TunnelTreeRow {
  const base = { id: `${sh.id}:internet`, label: 'Internet', contextValue: 'shareReach', shareId: sh.id };
  if (!r) return { ...base, description: 'not checked yet', tooltip: 'Check Tunnel asks the public URL as a client on the internet would.', icon: 'globe' };
  if (r.state === 'checking' || r.state === 'waiting-dns') return { ...base, description: r.state === 'waiting-dns' ? 'waiting for DNS…' : 'checking…', tooltip: r.message, icon: 'sync~spin' };
  const when = `Checked ${new Date(r.checked_at).toLocaleTimeString()}.`;
  if (r.ok) return { ...base, description: r.message, tooltip: `${r.message}\n${when}`, icon: 'pass', color: 'testing.iconPassed' };
  return { ...base, description: r.message, tooltip: `${r.message}${r.fix ? `\n${r.fix}` : ''}\n${when}`, icon: 'warning', color: 'problemsWarningIcon.foreground' };
}

/** What a recorded call was, in a few words: `tools/call echo`. */
function callLabel(c: RecordedCall): string {
  return [c.method ?? c.http_method, c.name].filter(Boolean).join(' ');
}

/** The inspector's last calls on a share, newest first (the Activity node); none before the first call. */
function activityNode(shareId: string, calls: readonly RecordedCall[]): TunnelTreeRow | undefined {
  const last = calls[calls.length - 1];
  if (!last) return undefined;
  const children = calls
    .slice(-5)
    .reverse()
    .map((c): TunnelTreeRow => {
      const failed = c.error_code !== null || c.tool_error || c.status >= 400;
      const outcome = c.error_code !== null ? `error ${c.error_code}` : c.tool_error ? 'tool error' : String(c.status);
      const who = [c.client ?? 'unknown client', c.country].filter(Boolean).join(' · ');
      return {
        id: `${shareId}:activity:${c.id}`,
        label: `${new Date(c.at).toLocaleTimeString()}  ${callLabel(c)}`,
        description: `${outcome} · ${who} · ${c.duration_ms} ms`,
        tooltip: `${callLabel(c)}\n${outcome}, ${c.duration_ms} ms, ${c.bytes_in} B in / ${c.bytes_out} B out\n${who}${c.remote_ip ? ` (${c.remote_ip})` : ''}\nvia ${c.link}${c.header_mismatch ? '\nThe Mcp-Method / Mcp-Name headers disagree with the body.' : ''}`,
        icon: failed ? 'error' : 'arrow-small-right',
        ...(failed ? { color: 'problemsErrorIcon.foreground' } : {}),
        shareId,
      };
    });
  return {
    id: `${shareId}:activity`,
    label: 'Activity',
    description: `${calls.length} call${calls.length === 1 ? '' : 's'} · last ${callLabel(last)}${last.client ? ` by ${last.client}` : ''}`,
    icon: 'history',
    collapsed: true,
    contextValue: 'shareActivity',
    shareId,
    children,
  };
}

/** When a share stops by itself ("Share For…"; none: no row). */
function stopsNode(sh: ShareSnapshot): TunnelTreeRow | undefined {
  if (!sh.stops_at) return undefined;
  const at = Date.parse(sh.stops_at);
  const left = formatUptime(Math.max(0, at - Date.now()) / 1000);
  const description = sh.stop_reason === 'idle' ? `after ${sh.idle_stop_minutes ?? '?'} min without requests · in ${left}` : `in ${left} (at ${new Date(at).toLocaleTimeString()})`;
  return { id: `${sh.id}:stops`, label: 'Stops', description, tooltip: `${sh.name} stops by itself ${description}. Share For… changes it.`, icon: 'watch', contextValue: 'shareLifetime', shareId: sh.id };
}

/** A share's tool policy (none: no row; Choose Shared Tools… is in the share's menu and the palette). */
function toolsNode(sh: ShareSnapshot): TunnelTreeRow | undefined {
  if (!sh.policy) return undefined;
  return {
    id: `${sh.id}:tools`,
    label: 'Tools',
    description: sh.policy.summary === 'no tools' ? 'no tools shared' : `${sh.policy.summary} only`,
    tooltip: `Remote clients see only ${sh.policy.summary} in tools/list; the tunnel answers a call of any other tool itself ("not shared") without passing it to the server.`,
    icon: 'shield',
    contextValue: 'shareTools',
    shareId: sh.id,
  };
}

/** A secret share's recipient links (none: no row; Create Link… is in the share's menu and the palette). */
function linksNode(sh: ShareSnapshot): TunnelTreeRow | undefined {
  if (sh.links.length === 0) return undefined;
  return {
    id: `${sh.id}:links`,
    label: 'Links',
    description: `${sh.links.length} recipient link${sh.links.length === 1 ? '' : 's'}`,
    icon: 'link',
    contextValue: 'shareLinks',
    shareId: sh.id,
    children: sh.links.map((l) => {
      const until = l.expires_at ? `until ${new Date(l.expires_at).toLocaleString()}` : 'no expiry';
      return {
        id: `${sh.id}:link:${l.id}`,
        label: l.label,
        description: until,
        tooltip: `Link "${l.label}" (${until}): its own secret. Copy puts its MCP URL on the clipboard; Revoke makes it answer 401 and cuts its streams.`,
        icon: 'key',
        contextValue: 'copyable shareLink',
        ...(l.mcp_url ? { value: l.mcp_url } : {}),
        shareId: sh.id,
        linkId: l.id,
      };
    }),
  };
}

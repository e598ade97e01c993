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
  /** What inline actions apply: `copyable`, `openable`, `rotatable`, `share` (a share node). */
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

  /** The rows for the current state (also what the extension-host tests read). */
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
      starting: 'Starting…',
      connecting: 'Connecting to the edge…',
      active: 'Active',
      reconnecting: 'Reconnecting…',
      stopping: 'Stopping…',
      failed: 'Failed',
      restarting: s.status === 'restarting' ? `Restarting (attempt ${s.restartAttempt}) at ${new Date(s.restartAt).toLocaleTimeString()}` : 'Restarting',
    };
    rows.push({ id: 'status', label: 'Status', description: statusText[s.status] ?? s.status, icon, ...(color ? { color } : {}) });
    if (s.status === 'failed' || s.status === 'restarting') {
      rows.push({ id: 'error', label: 'Error', description: s.error.message, tooltip: [s.error.message, '', ...s.error.lastLines.slice(-8)].join('\n'), icon: 'info' });
    }
    const sharePath = sharePathOf(s);
    if (isLive(s)) {
      if (sharePath) {
        const st = this.accessStats();
        const refused = st && st.rejected > 0 ? ` · ${st.rejected} refused` : '';
        rows.push({
          id: 'access',
          label: 'Access',
          description: `Secret link required${refused}`,
          tooltip:
            'Only requests carrying the share secret reach your server: the copied MCP URL and client configs include it. ' +
            `Anything else gets 401 without touching your server.${st ? ` Let through: ${st.passed}; refused: ${st.rejected}.` : ''} Rotate the secret to cut off everyone who has it.`,
          icon: 'lock',
          contextValue: 'rotatable',
        });
      } else {
        rows.push({
          id: 'access',
          label: 'Access',
          description: 'Open: anyone with the URL',
          tooltip: 'This tunnel has no access gate: anyone who learns the public URL reaches your local server. Restart it with mcpTunnel.access set to "secret" to require the share secret.',
          icon: 'unlock',
          color: 'problemsWarningIcon.foreground',
        });
      }
    }
    if (snap.url) {
      rows.push({ id: 'url', label: 'Public URL', description: snap.url, icon: 'globe', contextValue: sharePath ? 'copyable' : 'copyable openable', value: snap.url });
      const mcpUrl = snap.mcp_url ?? '';
      const shown = maskSharePath(mcpUrl, sharePath);
      rows.push({ id: 'mcpUrl', label: 'Public MCP URL', description: shown, tooltip: sharePath ? `${shown}\nThe share secret is hidden here; Copy puts the full URL on the clipboard.` : mcpUrl, icon: 'plug', contextValue: 'copyable', value: mcpUrl });
    }
    const primary = this.controller.listShares()[0];
    if (primary?.kind === 'stdio' && primary.command) {
      // A stdio server through the bridge: what runs matters, not the bridge's loopback port.
      rows.push({
        id: 'local',
        label: primary.name,
        description: `stdio${primary.detail ? ` · ${primary.detail}` : ''}`,
        tooltip: `${primary.command}\nRuns on this machine, one process per client session (ends after idle). Notifications that travel only on the GET stream arrive late through a quick tunnel (cloudflared#1449); POST streams flow.`,
        icon: 'terminal',
        contextValue: 'copyable stdioShare',
        value: primary.command,
        shareId: primary.id,
      });
    } else {
      const local = joinUrl(localUrlOf(target), target.path);
      rows.push({ id: 'local', label: 'Local target', description: local, icon: 'server', contextValue: 'copyable', value: local });
    }
    if (snap.pid) rows.push({ id: 'pid', label: 'PID', description: String(snap.pid), icon: 'symbol-number' });
    if (s.status === 'active' || s.status === 'reconnecting') {
      rows.push({ id: 'uptime', label: 'Uptime', description: formatUptime(snap.uptime_seconds), icon: 'clock' });
      if (snap.edge_locations.length) rows.push({ id: 'edge', label: 'Edge location', description: snap.edge_locations.join(', '), icon: 'location' });
    }
    const protocolNote = isLive(s) ? this.controller.protocolNote?.() : undefined;
    if (protocolNote) rows.push({ id: 'protocol', label: 'Protocol', description: protocolNote, tooltip: `${protocolNote}. Quick tunnels never fall back from QUIC by themselves, so MCP Tunnel starts them with HTTP/2 here. Set mcpTunnel.protocol to choose yourself.`, icon: 'arrow-swap' });
        const cf = this.controller.cloudflared ?? this.cloudflaredHint();
    if (cf) rows.push({ id: 'cloudflared', label: 'cloudflared', description: `${cf.version}  ${cf.path}`, tooltip: `cloudflared ${cf.version} at ${cf.path}`, icon: 'package', contextValue: 'copyable', value: cf.path });
    const m = this.controller.metrics;
    if (m) {
      rows.push({ id: 'requests', label: 'Requests', description: `${m.totalRequests} total · ${m.requestErrors} errors · ${m.concurrentRequests} in flight`, icon: 'pulse' });
      rows.push({ id: 'responses', label: 'Responses', description: formatResponses(m.responsesByCode), icon: 'list-ordered' });
    }
    // One tunnel, several shares: each with its own node (the rows above describe the first).
    const shares = isLive(s) ? this.controller.listShares() : [];
    // The Internet row only while active: a check runs only then.
    const active = s.status === 'active';
    const reach = (id: string): ReachabilityResult | undefined => (active ? this.reachability?.result(id) : undefined);
    if (shares.length > 1) rows.push({ id: 'shares', label: 'Shares', description: `${shares.length} on this tunnel`, icon: 'layers', children: shares.map((sh) => shareNode(sh, snap.url, this.controller.activity(sh.id), reach(sh.id), active)) });
    else if (shares[0]) rows.push(...shareDetails(shares[0], this.controller.activity(shares[0].id), reach(shares[0].id), active));
    return rows;
  }

  /** The share nodes' rows (what the extension-host tests read). */
  shareRows(): TunnelTreeRow[] {
    return this.rows().find((r) => r.id === 'shares')?.children ?? [];
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
  const shown = sh.mcp_url ? maskSharePath(sh.mcp_url, secretPath) : 'no URL yet';
  const traffic = `${sh.requests} request${sh.requests === 1 ? '' : 's'} · ${sh.errors} error${sh.errors === 1 ? '' : 's'}`;
  const last = sh.last_request_at ? ` · last ${new Date(sh.last_request_at).toLocaleTimeString()}` : '';
  const children: TunnelTreeRow[] = [
    { id: `${sh.id}:mcpUrl`, label: 'MCP URL', description: shown, tooltip: secretPath ? `${shown}\nThe secret is hidden here; Copy puts the full URL on the clipboard.` : (sh.mcp_url ?? ''), icon: 'plug', contextValue: 'copyable', ...(sh.mcp_url ? { value: sh.mcp_url } : {}), shareId: sh.id },
    sh.access === 'secret'
      ? { id: `${sh.id}:access`, label: 'Access', description: 'Secret link required', icon: 'lock', contextValue: 'shareAccessSecret', shareId: sh.id }
      : { id: `${sh.id}:access`, label: 'Access', description: 'Open: anyone with the URL', icon: 'unlock', color: 'problemsWarningIcon.foreground', shareId: sh.id },
    { id: `${sh.id}:traffic`, label: 'Traffic', description: traffic + last, icon: 'pulse', shareId: sh.id },
  ];
  if (sh.command) children.unshift({ id: `${sh.id}:runs`, label: 'Runs', description: `${sh.detail ? `${sh.detail} · ` : ''}${sh.command}`, tooltip: `${sh.command}\nstdio, one process per client session. GET-stream notifications arrive late through a quick tunnel (cloudflared#1449).`, icon: 'terminal', contextValue: 'copyable stdioShare', value: sh.command, shareId: sh.id });
  children.push(...shareDetails(sh, calls, reach, live));
  if (sh.problem) children.push({ id: `${sh.id}:problem`, label: 'Problem', description: sh.problem, icon: 'warning', color: 'problemsWarningIcon.foreground', shareId: sh.id });
  const icon = sh.reachable === false ? 'warning' : sh.access === 'open' ? 'unlock' : 'lock';
  return {
    id: `share:${sh.id}`,
    label: sh.name,
    description: `${sh.kind === 'stdio' ? 'stdio · ' : ''}${sh.access === 'open' ? 'open' : 'secret'} · ${traffic}`,
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

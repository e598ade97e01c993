/**
 * Ready-to-paste MCP client configurations for a public MCP URL. With a share secret, each client
 * gets it where it can take it: an Authorization header where the client supports headers, the
 * secret path (`https://host/<secret>/mcp`) where it only takes a URL.
 */

import { shareUrlPrefix, type ShareSnapshot } from './shares';
import { sharePathOf, type TunnelState } from '../model/tunnelState';

export type ClientKind = 'vscode' | 'claude-code' | 'claude-desktop' | 'cursor' | 'url';

export interface ClientConfigInput {
  /** Public base URL, e.g. `https://words.trycloudflare.com`. */
  url: string;
  /** MCP endpoint path on the local server, e.g. `/mcp`. */
  path: string;
  /** The access gate's share secret, when the tunnel is in secret mode. */
  secret?: string;
  /** Server name in the client's config. */
  name?: string;
}

export interface ClientConfig {
  kind: ClientKind;
  label: string;
  /** Where the snippet goes. */
  detail: string;
  text: string;
}

function join(base: string, ...parts: string[]): string {
  return base.replace(/\/+$/, '') + parts.map((p) => (p.startsWith('/') ? p : `/${p}`)).join('');
}

/** `https://host/mcp`, or `https://host/<secret>/mcp` for URL-only clients. */
export function mcpUrlFor(input: ClientConfigInput, withSecretPath: boolean): string {
  return withSecretPath && input.secret ? join(input.url, input.secret, input.path) : join(input.url, input.path);
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function clientConfig(kind: ClientKind, input: ClientConfigInput): ClientConfig {
  const name = input.name ?? 'tunneled-mcp';
  const headerUrl = mcpUrlFor(input, false);
  const headers = input.secret ? { Authorization: `Bearer ${input.secret}` } : undefined;
  switch (kind) {
    case 'vscode':
      return {
        kind,
        label: 'VS Code (mcp.json)',
        detail: 'Add to .vscode/mcp.json or your user mcp.json',
        text: JSON.stringify({ servers: { [name]: { type: 'http', url: headerUrl, ...(headers ? { headers } : {}) } } }, null, 2),
      };
    case 'claude-code':
      return {
        kind,
        label: 'Claude Code',
        detail: 'Run in a terminal',
        text: ['claude mcp add --transport http', shellQuote(name), shellQuote(headerUrl), ...(headers ? ['--header', shellQuote(`Authorization: Bearer ${input.secret}`)] : [])].join(' '),
      };
    case 'cursor':
      return {
        kind,
        label: 'Cursor (.cursor/mcp.json)',
        detail: 'Add to .cursor/mcp.json',
        text: JSON.stringify({ mcpServers: { [name]: { url: headerUrl, ...(headers ? { headers } : {}) } } }, null, 2),
      };
    case 'claude-desktop':
      // Claude Desktop's config starts local commands only: bridge with mcp-remote, secret in the URL.
      return {
        kind,
        label: 'Claude Desktop (claude_desktop_config.json)',
        detail: 'Uses the mcp-remote bridge (npx); the secret is in the URL path',
        text: JSON.stringify({ mcpServers: { [name]: { command: 'npx', args: ['-y', 'mcp-remote', mcpUrlFor(input, true)] } } }, null, 2),
      };
    case 'url':
      return {
        kind,
        label: 'Plain URL',
        detail: input.secret ? 'For clients that take only a URL: the secret is in the path' : 'The public MCP URL',
        text: mcpUrlFor(input, true),
      };
  }
}

export const CLIENT_KINDS: readonly ClientKind[] = ['vscode', 'claude-code', 'claude-desktop', 'cursor', 'url'];

/**
 * What the configs and the QR code share for one share of the tunnel: the tunnel URL (plus an
 * open share's public-name prefix), its path and (a secret share) its secret.
 */
export function shareInputOfShare(tunnelUrl: string | undefined, share: ShareSnapshot): ClientConfigInput | undefined {
  const prefix = shareUrlPrefix(tunnelUrl, share);
  if (!tunnelUrl || prefix === undefined) return undefined;
  const path = share.local_mcp_url.slice(share.local_url.length) || '/';
  // One name per share, so configs for two shares can sit side by side in one client.
  const name = `tunneled-mcp-${/:(\d+)$/.exec(share.local_url)?.[1] ?? share.id}`;
  return share.access === 'secret' ? { url: tunnelUrl, path, secret: prefix.replace(/^\//, ''), name } : { url: tunnelUrl + prefix, path, name };
}

/** The same for one recipient's link of a share: its own secret, and a name of its own. */
export function shareInputOfLink(tunnelUrl: string | undefined, share: ShareSnapshot, linkId: string): ClientConfigInput | undefined {
  const base = shareInputOfShare(tunnelUrl, share);
  const link = share.links.find((l) => l.id === linkId);
  if (!base || !tunnelUrl || !link?.mcp_url?.startsWith(`${tunnelUrl}/`)) return undefined;
  const secret = link.mcp_url.slice(tunnelUrl.length + 1).split('/')[0] ?? '';
  const slug = link.label.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 24) || link.id;
  return { ...base, secret, name: `${base.name ?? 'tunneled-mcp'}-${slug}` };
}

/** What the configs and the QR code share for a state: its URL, path and (behind the gate) secret. */
export function shareInputOf(s: TunnelState): ClientConfigInput | undefined {
  if (!('url' in s) || !s.url || !('target' in s) || !s.target) return undefined;
  const secret = sharePathOf(s)?.replace(/^\//, '');
  return { url: s.url, path: s.target.path, ...(secret ? { secret } : {}) };
}

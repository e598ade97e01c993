/** Small pure formatters shared by the status bar, the tree and the CLI. */

/** `42s`, `5m`, `1h 05m`, `2d 3h`. */
export function formatUptime(seconds: number, withSeconds = false): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return withSeconds ? `${s}s` : '<1m';
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** Milliseconds until the displayed uptime changes (minute resolution): no per-second redraws. */
export function msUntilNextUptimeChange(connectedAt: number, now: number): number {
  const elapsed = Math.max(0, now - connectedAt);
  const unit = elapsed < 24 * 3600_000 ? 60_000 : 3600_000;
  return unit - (elapsed % unit) + 50;
}

/** `https://seasonal-example-words-here.trycloudflare.com` → `seasonal-example-words-here`, capped in the middle. */
export function shortHost(url: string, max = 28): string {
  let host: string;
  try {
    host = new URL(url).hostname;
  } catch {
    host = url;
  }
  host = host.replace(/\.trycloudflare\.com$/, '');
  if (host.length <= max) return host;
  const keep = max - 1;
  return `${host.slice(0, Math.ceil(keep / 2))}…${host.slice(host.length - Math.floor(keep / 2))}`;
}

/** `200×10, 404×2` sorted by code. */
export function formatResponses(byCode: Record<string, number>): string {
  const parts = Object.entries(byCode)
    .filter(([, n]) => n > 0)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([code, n]) => `${code}×${n}`);
  return parts.length ? parts.join(', ') : 'none';
}

/**
 * A shared URL with its share secret hidden, for display (screens get shared and screenshotted):
 * `https://host/<secret>/mcp` → `https://host/••••••/mcp`. Copy actions use the real URL.
 */
export function maskSharePath(url: string, sharePath: string | undefined): string {
  if (!sharePath || sharePath.length < 2) return url;
  return url.split(sharePath).join('/••••••');
}

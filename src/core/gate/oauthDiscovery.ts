/**
 * Servers that bring their own OAuth (MCP authorization, RFC 9728 / RFC 8414) behind the gate.
 *
 * A client finds the authorization server from the resource's own words: the `resource_metadata`
 * of a 401's `WWW-Authenticate`, or the well-known document it derives from the MCP URL by
 * inserting `/.well-known/oauth-protected-resource` between host and path. Behind the tunnel both
 * go wrong: the origin names itself `http://localhost:8002`, and the derived URL puts the share
 * secret after the well-known prefix, where no route looks for it. This module holds the pure
 * parts of the fix: where a discovery request goes, and how what the origin says about itself is
 * mapped onto the public URL (`http://localhost:8002/x` → `https://<host>/<secret>/x`).
 */

/** The discovery documents routed with the share secret after their well-known prefix. */
const DOCS = ['oauth-protected-resource', 'oauth-authorization-server', 'openid-configuration'] as const;
const WELL_KNOWN = '/.well-known/';

/** A discovery request's parts: `/.well-known/<doc>` and what followed it (`/<secret>/mcp?x`). */
export interface DiscoveryForm {
  doc: string;
  inner: string;
}

/** `/.well-known/oauth-protected-resource/<secret>/mcp` → `{ doc: '/.well-known/oauth-protected-resource', inner: '/<secret>/mcp' }`. */
export function discoveryForm(target: string): DiscoveryForm | undefined {
  if (!target.startsWith(WELL_KNOWN)) return undefined;
  for (const name of DOCS) {
    const doc = WELL_KNOWN + name;
    if (target.length > doc.length + 1 && target.startsWith(doc) && target.charCodeAt(doc.length) === 0x2f /* / */) {
      return { doc, inner: target.slice(doc.length) };
    }
  }
  return undefined;
}

/** The origin path of a discovery request: the document, then what followed the secret (`/mcp`; a lone `/` is dropped). */
export function discoveryOriginPath(doc: string, rest: string): string {
  return doc + (rest === '/' ? '' : rest.startsWith('/?') ? rest.slice(1) : rest);
}

/** True when the origin path asks for a discovery document (its answer is read and rewritten). */
export function isDiscoveryPath(path: string): boolean {
  if (!path.startsWith(WELL_KNOWN)) return false;
  return DOCS.some((name) => {
    const doc = WELL_KNOWN + name;
    if (!path.startsWith(doc)) return false;
    const next = path.charCodeAt(doc.length);
    return Number.isNaN(next) || next === 0x2f || next === 0x3f /* ? */;
  });
}

/**
 * What stood between the public host and the origin path in the request: `/<secret>` (the secret
 * path, or a discovery request's secret), `/<public name>` (a named open share), or '' (a bearer
 * secret, a lone open share).
 */
export function publicPrefixOf(target: string, originPath: string): string {
  if (target === originPath) return '';
  const form = discoveryForm(target);
  if (form && isDiscoveryPath(originPath)) {
    const slash = form.inner.indexOf('/', 1);
    const q = form.inner.indexOf('?');
    const end = [slash, q].filter((i) => i > 0).reduce((a, b) => Math.min(a, b), form.inner.length);
    return form.inner.slice(0, end);
  }
  if (target.endsWith(originPath)) return target.slice(0, target.length - originPath.length);
  // `/<secret>` alone reaches the origin as `/`; `/<secret>?q` as `/?q`.
  if (originPath.startsWith('/') && target.endsWith(originPath.slice(1))) return target.slice(0, target.length - originPath.length + 1);
  return '';
}

/** How URLs naming the origin become public ones. */
export interface PublicMapping {
  /** `scheme://host:port` forms the origin may name itself by, lower case (`http://localhost:8002`). */
  originBases: ReadonlySet<string>;
  /** `https://<public host>`. */
  publicOrigin: string;
  /** See `publicPrefixOf`. */
  prefix: string;
}

/** The `scheme://authority` forms under which a local origin names itself. */
export function originBasesOf(host: string, port: number, hostHeader: string): Set<string> {
  const bases = new Set<string>();
  const names = new Set([host.toLowerCase(), 'localhost', '127.0.0.1', '[::1]', hostHeader.toLowerCase().replace(/:\d+$/, '')]);
  for (const name of names) {
    const h = name.includes(':') && !name.startsWith('[') ? `[${name}]` : name;
    for (const scheme of ['http', 'https']) bases.add(`${scheme}://${h}:${port}`);
    if (port === 80) bases.add(`http://${h}`);
    if (port === 443) bases.add(`https://${h}`);
  }
  return bases;
}

const ABSOLUTE = /^(https?:\/\/[^/?#]+)(.*)$/is;

/** The public form of a URL that names the origin (absolute, or an absolute path); undefined when it names something else. */
export function mapUrl(url: string, m: PublicMapping): string | undefined {
  if (url.startsWith('/') && !url.startsWith('//')) return carriesPrefix(url, m.prefix) ? undefined : withPrefix(url, m.prefix);
  const parts = ABSOLUTE.exec(url);
  if (!parts?.[1]) return undefined;
  const base = parts[1].toLowerCase();
  const rest = parts[2] ?? '';
  if (m.originBases.has(base)) return m.publicOrigin + withPrefix(rest, m.prefix);
  // The origin saw the public Host (host header "public", or X-Forwarded-Host) and named it: add
  // the secret where it is missing, and https where it said http.
  const pub = m.publicOrigin.toLowerCase();
  if (base !== pub && base !== pub.replace(/^https:/, 'http:')) return undefined;
  const carries = carriesPrefix(rest, m.prefix);
  if (carries && base === pub) return undefined;
  return m.publicOrigin + (carries ? rest : withPrefix(rest, m.prefix));
}

/** The path already starts with the prefix (or a discovery document's path does, after its well-known part). */
function carriesPrefix(path: string, prefix: string): boolean {
  const starts = (p: string): boolean => p === prefix || p.startsWith(`${prefix}/`) || p.startsWith(`${prefix}?`);
  if (prefix === '' || starts(path)) return true;
  const form = discoveryForm(path);
  return form !== undefined && starts(form.inner);
}

/** A path with the public prefix: after the well-known prefix for a discovery document (RFC 9728 §3.1), else in front. */
function withPrefix(path: string, prefix: string): string {
  if (prefix === '') return path;
  if (isDiscoveryPath(path)) {
    const doc = DOCS.map((n) => WELL_KNOWN + n).find((d) => path.startsWith(d)) ?? '';
    return doc + prefix + path.slice(doc.length);
  }
  return prefix + path;
}

/** A loopback or single-label host: a URL naming it is unreachable from the internet. */
function isLocalOnly(base: string): boolean {
  const host = base.replace(/^https?:\/\//i, '').replace(/:\d+$/, '').replace(/^\[|\]$/g, '').toLowerCase();
  return host === 'localhost' || host.endsWith('.localhost') || /^127\./.test(host) || host === '::1' || host === '0.0.0.0' || !host.includes('.');
}

/**
 * A discovery document with every URL naming the origin rewritten to its public form. `unmapped`:
 * the local-only origins (`http://localhost:9000`) it names that the tunnel does not carry.
 */
export function rewriteDocument(doc: unknown, m: PublicMapping): { doc: unknown; changed: boolean; unmapped: string[] } {
  const unmapped = new Set<string>();
  let changed = false;
  const visit = (v: unknown, depth: number): unknown => {
    if (typeof v === 'string') {
      const mapped = ABSOLUTE.test(v) ? mapUrl(v, m) : undefined;
      if (mapped !== undefined) {
        changed = true;
        return mapped;
      }
      const base = ABSOLUTE.exec(v)?.[1];
      if (base && isLocalOnly(base)) unmapped.add(base.toLowerCase());
      return v;
    }
    if (depth > 4 || v === null || typeof v !== 'object') return v;
    if (Array.isArray(v)) return v.map((x) => visit(x, depth + 1));
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = visit(x, depth + 1);
    return out;
  };
  const result = visit(doc, 0);
  return { doc: result, changed, unmapped: [...unmapped] };
}

/** `WWW-Authenticate` with its quoted URL parameters (`resource_metadata="…"`) in public form. */
export function rewriteChallenge(value: string, m: PublicMapping): string {
  return value.replace(/(\b[A-Za-z_]+=")((?:https?:\/\/|\/)[^"]*)(")/g, (all, open: string, url: string, close: string) => {
    const mapped = mapUrl(url, m);
    return mapped === undefined ? all : open + mapped + close;
  });
}

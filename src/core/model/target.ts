/**
 * Validation of a tunnel target (host, port, path) coming from an agent, the CLI or the UI.
 *
 * A tunnel publishes its target to the internet, so the host must be loopback unless the user
 * allowed it explicitly: an agent must not be able to publish an intranet address or a cloud
 * metadata endpoint (169.254.169.254) through a public URL.
 */
import { ACCESS_MODES, DEFAULT_TARGET, type AccessMode, type TunnelTarget } from './tunnelState';

/** Longest accepted `path`. */
export const MAX_TARGET_PATH_LENGTH = 2048;

/** Raw, untrusted input: any field may be missing or of the wrong type. */
export interface TargetInput {
  port?: unknown;
  host?: unknown;
  path?: unknown;
  /** `secret` or `open`; absent means the caller's default. */
  access?: unknown;
}

export interface ValidateTargetOptions {
  /** Non-loopback hosts the user explicitly allowed (hostnames or IP addresses). */
  allowedHosts?: readonly string[];
  /** How the user allows another host here, for the refusal (e.g. "add it to the setting mcpTunnel.allowedHosts"). */
  howToAllow?: string;
}

export type TargetValidation =
  | { ok: true; target: TunnelTarget }
  | { ok: false; field: 'port' | 'host' | 'path' | 'access'; message: string };

const LOOPBACK_DESCRIPTION = 'localhost, 127.0.0.1 (any 127.x.x.x) or ::1';

/**
 * Check and normalize a target. Missing fields take the defaults of `DEFAULT_TARGET`
 * (`localhost:8002/mcp`). A port may be an integer or a string of digits (CLI arguments). The
 * returned host is canonical: lowercase, IPv4 in dotted decimal, IPv6 compressed without brackets.
 * Failure messages name the field, what was given and what is allowed.
 */
export function validateTarget(input: TargetInput, options: ValidateTargetOptions = {}): TargetValidation {
  const port = validatePort(input.port);
  if (typeof port === 'string') return { ok: false, field: 'port', message: port };
  const host = validateHost(input.host, options.allowedHosts ?? [], options.howToAllow);
  if (!host.ok) return { ok: false, field: 'host', message: host.message };
  const path = validatePath(input.path);
  if (!path.ok) return { ok: false, field: 'path', message: path.message };
  const access = input.access;
  if (access !== undefined && access !== null && !(ACCESS_MODES as readonly unknown[]).includes(access)) {
    return {
      ok: false,
      field: 'access',
      message: `Invalid access ${describe(access)}: access must be "secret" (only requests carrying the share secret reach the server; the default) or "open" (anyone with the URL).`,
    };
  }
  return { ok: true, target: { host: host.value, port, path: path.value, ...(access ? { access: access as AccessMode } : {}) } };
}

/** True if `host` (any spelling: `[::1]`, `127.1`, `LOCALHOST`) names a loopback address. */
export function isLoopbackHost(host: string): boolean {
  const canonical = canonicalHost(host);
  return canonical !== undefined && isCanonicalLoopback(canonical);
}

/**
 * The canonical form of a hostname or IP address (see `validateTarget`), or undefined if `host`
 * is not a plain hostname or IP address (ports, user info, paths and spaces are rejected).
 */
export function canonicalHost(host: string): string | undefined {
  // The loopback names nearly every target uses, already canonical: no URL parser (its first use costs ~1 ms at activation).
  if (host === 'localhost' || host === '127.0.0.1' || host === '::1') return host;
  if (host === '[::1]') return '::1';
  if (host.length === 0 || host.length > 255 || !/^[A-Za-z0-9.\-:[\]]+$/.test(host)) return undefined;
  const bracketed = host.startsWith('[') && host.endsWith(']');
  const inner = bracketed ? host.slice(1, -1) : host;
  if (inner.includes('[') || inner.includes(']')) return undefined;
  if (inner.includes(':')) {
    // IPv6 literal: let the WHATWG URL parser validate and compress it.
    const parsed = parseHostname(`[${inner}]`);
    return parsed?.startsWith('[') ? parsed.slice(1, -1) : undefined;
  }
  if (bracketed) return undefined;
  const parsed = parseHostname(inner);
  if (parsed === undefined) return undefined;
  // After URL parsing an IPv4 address is dotted decimal (`127.1` and `0x7f.0.0.1` become
  // `127.0.0.1`); anything else must be a DNS name made of labels.
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(parsed) && !/^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$/.test(parsed)) {
    return undefined;
  }
  return parsed;
}

/** Same host (canonically), port and path, and the same access mode unless either leaves it unset. */
export function sameTarget(a: TunnelTarget, b: TunnelTarget): boolean {
  return (
    a.port === b.port &&
    a.path === b.path &&
    (canonicalHost(a.host) ?? a.host) === (canonicalHost(b.host) ?? b.host) &&
    (a.access === undefined || b.access === undefined || a.access === b.access)
  );
}

function parseHostname(host: string): string | undefined {
  try {
    const url = new URL(`http://${host}/`);
    return url.host === url.hostname ? url.hostname : undefined;
  } catch {
    return undefined;
  }
}

function isCanonicalLoopback(canonical: string): boolean {
  return canonical === 'localhost' || canonical === '::1' || /^127\.\d+\.\d+\.\d+$/.test(canonical);
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  if (typeof value === 'number') return String(value);
  return value === null ? 'null' : typeof value;
}

/** The port, or an error message. */
function validatePort(value: unknown): number | string {
  if (value === undefined || value === null) return DEFAULT_TARGET.port;
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (Number.isInteger(n) && n >= 1 && n <= 65535) return n;
  return `Invalid port ${describe(value)}: port must be an integer from 1 to 65535 (the TCP port of the local server), e.g. ${DEFAULT_TARGET.port}.`;
}

function validateHost(value: unknown, allowedHosts: readonly string[], howToAllow = 'add them to the allowed hosts'): { ok: true; value: string } | { ok: false; message: string } {
  if (value === undefined || value === null) return { ok: true, value: DEFAULT_TARGET.host };
  const allowedList = allowedHosts.length > 0 ? `${LOOPBACK_DESCRIPTION}, or one of the allowed hosts (${allowedHosts.join(', ')})` : LOOPBACK_DESCRIPTION;
  if (typeof value !== 'string') {
    return { ok: false, message: `Invalid host ${describe(value)}: host must be a string. Allowed: ${allowedList}.` };
  }
  const canonical = canonicalHost(value);
  if (canonical === undefined) {
    return {
      ok: false,
      message: `Invalid host ${describe(value)}: host must be a bare hostname or IP address (no scheme, port, path or spaces). Allowed: ${allowedList}.`,
    };
  }
  if (isCanonicalLoopback(canonical)) return { ok: true, value: canonical };
  if (allowedHosts.some((h) => canonicalHost(h) === canonical)) return { ok: true, value: canonical };
  return {
    ok: false,
    message:
      `Host ${describe(value)} is not allowed: host must be a loopback address (${allowedList}). ` +
      'A tunnel makes the target public, so other hosts (intranet addresses, cloud metadata such as 169.254.169.254) ' +
      `can only be exposed if the user chooses to: ${howToAllow}.`,
  };
}

function validatePath(value: unknown): { ok: true; value: string } | { ok: false; message: string } {
  if (value === undefined || value === null) return { ok: true, value: DEFAULT_TARGET.path };
  const rule = `path must start with "/", contain no whitespace or control characters and be at most ${MAX_TARGET_PATH_LENGTH} characters, e.g. "${DEFAULT_TARGET.path}"`;
  if (typeof value !== 'string') return { ok: false, message: `Invalid path ${describe(value)}: ${rule}.` };
  if (value.length > MAX_TARGET_PATH_LENGTH) {
    return { ok: false, message: `Invalid path (${value.length} characters, too long): ${rule}.` };
  }
  if (!value.startsWith('/')) return { ok: false, message: `Invalid path ${describe(value)} (does not start with "/"): ${rule}.` };
  if (/[\s\u0000-\u001f\u007f-\u009f]/.test(value)) {
    return { ok: false, message: `Invalid path ${describe(value)} (contains whitespace or control characters): ${rule}.` };
  }
  return { ok: true, value };
}

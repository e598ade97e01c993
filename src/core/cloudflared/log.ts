/**
 * Pure parser for cloudflared's stderr (zerolog console lines, zerolog JSON lines, and the bare
 * urfave/cli fatal lines), plus helpers for `--version` output and for turning a failed run into
 * a user-facing cause. No I/O. See shared/reference/cloudflared.md §1, §2, §5, §10.
 */

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'panic';

export interface LogLine {
  /** Level from the zerolog line; bare (non-zerolog) lines are 'error' if they look fatal, else 'info'. */
  level: LogLevel;
  /** ANSI stripped, trimmed. */
  message: string;
  /** key=value (quoted values unquoted), or the JSON object's other fields as strings. */
  fields: Record<string, string>;
  /** ISO time if present. */
  time?: string | undefined;
  /** True for non-zerolog lines (urfave/cli fatal errors, help text). */
  bare: boolean;
  /** The raw line exceeded the cap and was cut. */
  truncated?: boolean;
}

export type DownReason = 'unregistered' | 'terminated' | 'lost' | 'serve-error' | 'retrying' | 'dial-failed';

export type CloudflaredEvent =
  /** Only from the box after "Your quick Tunnel has been created!" (or the older "Your free tunnel has started!"). */
  | { kind: 'url'; url: string }
  /** From "Starting metrics server on <addr>/metrics". */
  | { kind: 'metrics'; address: string }
  | { kind: 'registered'; connIndex: number; connection?: string; location?: string; ip?: string; protocol?: string }
  | { kind: 'down'; reason: DownReason; connIndex?: number; retryIn?: string; error?: string }
  /** "Initiating graceful shutdown due to signal X". */
  | { kind: 'shutdown'; signal?: string }
  /** Bare fatal lines and FTL/PNC lines. */
  | { kind: 'fatal'; message: string }
  /** "Version 2023.7.3" / "Version 2026.1.2 (Checksum …)" / "cloudflared version X". */
  | { kind: 'version'; version: string };

export interface ParsedLine {
  line: LogLine;
  events: CloudflaredEvent[];
}

export interface LogParserOptions {
  /** Hint only: lines starting with '{' are tried as JSON anyway, and bare lines stay text in JSON mode. */
  json?: boolean;
  /** Longest line kept, in UTF-16 code units; the rest of a longer line is dropped. Default 16 KiB. */
  maxLineLength?: number;
}

export const DEFAULT_MAX_LINE_LENGTH = 16 * 1024;

// ---------------------------------------------------------------------------------------------
// Regular expressions (§10)

const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g;
// Other C0 controls (except tab) and DEL: binary noise; never shown to a user.
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/g;
const LINE = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})) (TRC|DBG|INF|WRN|ERR|FTL|PNC|\?\?\?)(?: (.*))?$/;
/** A `key=value` token at a given position (sticky). Value: Go-quoted string or a run of non-spaces. */
const FIELD_AT = /(\w+)=("(?:[^"\\]|\\.)*"|\S*)/y;
const NON_SPACE_AT = /\S+/y;
const BANNER = /Your quick Tunnel has been created!|Your free tunnel has started!/i;
const BOX_BORDER = /^\+-{3,}\+$/;
const BOX_LINE = /^\|.*\|$/;
const BOX_URL = /https:\/\/[^\s|"'<>]+/i;
const METRICS = /^Starting metrics server on (\S+)\/metrics/;
const REGISTERED = /^Registered tunnel connection\b/;
const REGISTERED_OLD = /^Connection (\S+) registered\b/;
const SHUTDOWN = /^Initiating graceful shutdown(?: due to signal (\w+))?/;
const RETRYING = /^Retrying connection in up to (\S+)/;
const VERSION_LOG = /^Version (\S+)/;
const VERSION_OUT = /^cloudflared(?:\.exe)? version (\S+)/im;
const VERSION_TOKEN = /^(?:v?(\d+\.\d+(?:\.\d+)?)\S*|DEV)$/;
/** Bare (non-zerolog) lines that are the error cloudflared exits with. */
const FATAL_BARE =
  /^(?:failed to (?:request|unmarshal|read|parse|build|create) quick Tunnel|Could not lookup srv records|Incorrect Usage|initial tunnel connection failed|You did not specify any valid additional argument|panic:|fatal error:|error parsing |Error: |error: )/i;
/** Lines after the banner in which a URL must appear before we give up on that box. */
const BOX_MAX_LINES = 12;

const LEVELS: Record<string, LogLevel> = {
  TRC: 'trace',
  DBG: 'debug',
  INF: 'info',
  WRN: 'warn',
  ERR: 'error',
  FTL: 'fatal',
  PNC: 'panic',
  '???': 'info',
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  warn: 'warn',
  warning: 'warn',
  error: 'error',
  fatal: 'fatal',
  panic: 'panic',
};

// ---------------------------------------------------------------------------------------------
// One line

/** Removes ANSI sequences, CR and other control characters. */
export function stripAnsi(s: string): string {
  return s.replace(ANSI, '').replace(CONTROL, '');
}

/** Parse one already-split line (stateless; box tracking needs {@link CloudflaredLogParser}). */
export function parseLogLine(raw: string): LogLine {
  const clean = stripAnsi(raw).trim();
  if (clean.startsWith('{')) {
    const j = parseJsonLine(clean);
    if (j) return j;
  }
  const m = LINE.exec(clean);
  if (m) {
    const [, time, lvl, rest = ''] = m;
    const { message, fields } = splitFields(rest);
    return { level: LEVELS[lvl ?? ''] ?? 'info', message, fields, time, bare: false };
  }
  return { level: FATAL_BARE.test(clean) ? 'error' : 'info', message: clean, fields: {}, bare: true };
}

function parseJsonLine(text: string): LogLine | undefined {
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return undefined;
  const rec = obj as Record<string, unknown>;
  if (typeof rec.message !== 'string' && typeof rec.level !== 'string') return undefined;
  const fields: Record<string, string> = {};
  for (const [k, v] of Object.entries(rec)) {
    if (k === 'level' || k === 'time' || k === 'message') continue;
    fields[k] = typeof v === 'string' ? stripAnsi(v) : v === undefined ? '' : safeStringify(v);
  }
  const line: LogLine = {
    level: typeof rec.level === 'string' ? (LEVELS[rec.level.toLowerCase()] ?? 'info') : 'info',
    message: typeof rec.message === 'string' ? stripAnsi(rec.message).trim() : '',
    fields,
    bare: false,
  };
  if (typeof rec.time === 'string') line.time = rec.time;
  else if (typeof rec.time === 'number') line.time = new Date(rec.time * (rec.time < 1e12 ? 1000 : 1)).toISOString();
  return line;
}

function safeStringify(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/**
 * Splits "message k=v k2="v 2"" into the message and the trailing run of fields. The fields are
 * the longest run of `key=value` tokens that reaches the end of the line, so `=` inside the
 * message ("Retrying connection in up to 1s connIndex=0") or a message without fields
 * ("Settings: map[a:b c:d]") are handled. Linear in the line length.
 */
function splitFields(rest: string): { message: string; fields: Record<string, string> } {
  let runStart = -1;
  let run: [string, string][] = [];
  let i = 0;
  const n = rest.length;
  while (i < n) {
    // skip whitespace
    while (i < n && isSpace(rest.charCodeAt(i))) i++;
    if (i >= n) break;
    const tokenStart = i;
    FIELD_AT.lastIndex = i;
    const f = FIELD_AT.exec(rest);
    if (f && (FIELD_AT.lastIndex >= n || isSpace(rest.charCodeAt(FIELD_AT.lastIndex)))) {
      if (runStart < 0) {
        runStart = tokenStart;
        run = [];
      }
      run.push([f[1] ?? '', f[2] ?? '']);
      i = FIELD_AT.lastIndex;
      continue;
    }
    // A quoted value followed by more non-space text: retry as an unquoted token.
    if (f) {
      NON_SPACE_AT.lastIndex = tokenStart;
      const w = NON_SPACE_AT.exec(rest);
      const word = w ? w[0] : '';
      const eq = word.indexOf('=');
      if (eq > 0 && /^\w+$/.test(word.slice(0, eq))) {
        if (runStart < 0) {
          runStart = tokenStart;
          run = [];
        }
        run.push([word.slice(0, eq), word.slice(eq + 1)]);
        i = tokenStart + word.length;
        continue;
      }
    }
    runStart = -1;
    NON_SPACE_AT.lastIndex = tokenStart;
    const w = NON_SPACE_AT.exec(rest);
    i = w ? NON_SPACE_AT.lastIndex : tokenStart + 1;
  }
  const fields: Record<string, string> = {};
  if (runStart < 0) return { message: rest.trim(), fields };
  for (const [k, v] of run) fields[k] = unquote(v);
  return { message: rest.slice(0, runStart).trim(), fields };
}

function isSpace(c: number): boolean {
  return c === 32 || c === 9;
}

/** Unquotes a Go `%q` string (JSON-compatible in the common case); returns others unchanged. */
export function unquote(v: string): string {
  if (v.length < 2 || !v.startsWith('"') || !v.endsWith('"')) return v;
  try {
    const parsed: unknown = JSON.parse(v);
    if (typeof parsed === 'string') return parsed;
  } catch {
    // Go escapes that JSON lacks: \a \v \xNN \UNNNNNNNN \'
  }
  return goUnquote(v.slice(1, -1));
}

function goUnquote(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c !== '\\' || i + 1 >= s.length) {
      out += c;
      continue;
    }
    const e = s[++i];
    switch (e) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case 'a': out += '\x07'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'v': out += '\v'; break;
      case 'x':
      case 'u':
      case 'U': {
        const len = e === 'x' ? 2 : e === 'u' ? 4 : 8;
        const hex = s.slice(i + 1, i + 1 + len);
        const cp = /^[0-9a-fA-F]+$/.test(hex) && hex.length === len ? parseInt(hex, 16) : NaN;
        if (Number.isFinite(cp) && cp <= 0x10ffff) {
          out += String.fromCodePoint(cp);
          i += len;
        } else {
          out += '\\' + e;
        }
        break;
      }
      default: out += e; // \\ \" \' and anything unknown
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Events

function intField(v: string | undefined): number | undefined {
  if (v === undefined || !/^-?\d+$/.test(v.trim())) return undefined;
  return parseInt(v, 10);
}

function versionToken(tok: string): string | undefined {
  const t = tok.replace(/[,;)]+$/, '');
  const m = VERSION_TOKEN.exec(t);
  if (!m) return undefined;
  return m[1] ?? 'DEV';
}

/** Stateless events of one line (everything except the URL, which needs the box state). */
export function lineEvents(line: LogLine): CloudflaredEvent[] {
  const events: CloudflaredEvent[] = [];
  const msg = line.message;
  const f = line.fields;

  if (line.bare) {
    const v = VERSION_OUT.exec(msg);
    if (v) {
      const version = versionToken(v[1] ?? '');
      if (version) events.push({ kind: 'version', version });
    }
    if (FATAL_BARE.test(msg)) events.push({ kind: 'fatal', message: msg });
    return events;
  }

  let m: RegExpExecArray | null;
  if ((m = METRICS.exec(msg))) {
    events.push({ kind: 'metrics', address: m[1] ?? '' });
  } else if (REGISTERED.test(msg) || (m = REGISTERED_OLD.exec(msg))) {
    const ev: Extract<CloudflaredEvent, { kind: 'registered' }> = { kind: 'registered', connIndex: intField(f.connIndex) ?? 0 };
    const connection = f.connection ?? m?.[1];
    if (connection) ev.connection = connection;
    if (f.location) ev.location = f.location;
    if (f.ip) ev.ip = f.ip;
    if (f.protocol) ev.protocol = f.protocol;
    events.push(ev);
  } else if ((m = SHUTDOWN.exec(msg))) {
    events.push(m[1] ? { kind: 'shutdown', signal: m[1] } : { kind: 'shutdown' });
  } else if ((m = VERSION_LOG.exec(msg))) {
    const version = versionToken(m[1] ?? '');
    if (version) events.push({ kind: 'version', version });
  } else {
    const down = downEvent(msg, f);
    if (down) events.push(down);
  }

  if (line.level === 'fatal' || line.level === 'panic') {
    const message = f.error && !msg.includes(f.error) ? (msg ? `${msg}: ${f.error}` : f.error) : msg;
    events.push({ kind: 'fatal', message });
  }
  return events;
}

function downEvent(msg: string, f: Record<string, string>): CloudflaredEvent | undefined {
  let reason: DownReason | undefined;
  let retryIn: string | undefined;
  let m: RegExpExecArray | null;
  if (/^Unregistered tunnel connection\b/.test(msg)) reason = 'unregistered';
  else if (/^Connection (?:\S+ )?terminated\b/.test(msg)) reason = 'terminated';
  else if (/^Lost connection with the edge\b/.test(msg)) reason = 'lost';
  else if (/^Serve tunnel error\b/.test(msg)) reason = 'serve-error';
  else if ((m = RETRYING.exec(msg))) {
    reason = 'retrying';
    retryIn = m[1];
  } else if (
    /^Failed to (?:dial a quic connection|create new quic connection)\b|^Unable to establish connection with Cloudflare edge\b/.test(msg) ||
    (f.error !== undefined && /failed to dial to edge/i.test(f.error) && !/^Initiating shutdown\b/.test(msg))
  ) {
    reason = 'dial-failed';
  }
  if (!reason) return undefined;
  const ev: Extract<CloudflaredEvent, { kind: 'down' }> = { kind: 'down', reason };
  const connIndex = intField(f.connIndex);
  if (connIndex !== undefined) ev.connIndex = connIndex;
  if (retryIn !== undefined) ev.retryIn = retryIn;
  if (f.error) ev.error = f.error;
  return ev;
}

// ---------------------------------------------------------------------------------------------
// Streaming parser

/** Stateful across lines only for the URL box; feed it chunks as they arrive. */
export class CloudflaredLogParser {
  private readonly maxLineLength: number;
  readonly json: boolean;
  private decoder = new TextDecoder('utf-8');
  private decoderDirty = false;
  private partial = '';
  private overflow = false;
  /** Lines seen since the banner headline, or -1 when not inside the banner box. */
  private boxLines = -1;
  private urlFound = false;
  private foundUrl: string | undefined;

  constructor(options: LogParserOptions = {}) {
    const max = options.maxLineLength ?? DEFAULT_MAX_LINE_LENGTH;
    this.maxLineLength = Number.isFinite(max) && max >= 1 ? Math.floor(max) : DEFAULT_MAX_LINE_LENGTH;
    this.json = options.json ?? false;
  }

  /** Characters of the current partial line held in memory (never more than maxLineLength). */
  get bufferedLength(): number {
    return this.partial.length;
  }

  /** The quick-tunnel URL once it was seen. */
  get url(): string | undefined {
    return this.foundUrl;
  }

  /** Feed a chunk (any split; UTF-8 sequences split across chunks decode correctly); returns the complete lines parsed. */
  push(chunk: string | Uint8Array): ParsedLine[] {
    const out: ParsedLine[] = [];
    let text: string;
    if (typeof chunk === 'string') {
      if (this.decoderDirty) {
        this.consume(this.decoder.decode(), out);
        this.decoderDirty = false;
      }
      text = chunk;
    } else {
      text = this.decoder.decode(chunk, { stream: true });
      this.decoderDirty = true;
    }
    this.consume(text, out);
    return out;
  }

  /** Flush a trailing partial line at end of stream. The parser can be reused afterwards. */
  end(): ParsedLine[] {
    const out: ParsedLine[] = [];
    if (this.decoderDirty) {
      this.consume(this.decoder.decode(), out);
      this.decoderDirty = false;
    }
    if (this.partial.length > 0 || this.overflow) out.push(this.finishLine());
    return out;
  }

  /** Parse one already-split line, with box tracking. */
  feedLine(raw: string): ParsedLine {
    return this.parse(raw, false);
  }

  private consume(text: string, out: ParsedLine[]): void {
    let start = 0;
    const n = text.length;
    while (start < n) {
      const nl = text.indexOf('\n', start);
      if (nl < 0) {
        this.append(text, start, n);
        return;
      }
      this.append(text, start, nl);
      out.push(this.finishLine());
      start = nl + 1;
    }
  }

  private append(text: string, from: number, to: number): void {
    if (from >= to) return;
    if (this.overflow) return;
    const room = this.maxLineLength - this.partial.length;
    if (to - from <= room) {
      this.partial += text.slice(from, to);
      return;
    }
    let cut = from + room;
    // Do not leave half a surrogate pair at the cut.
    if (cut > from && isHighSurrogate(text.charCodeAt(cut - 1))) cut--;
    this.partial += text.slice(from, cut);
    this.overflow = true;
  }

  private finishLine(): ParsedLine {
    let raw = this.partial;
    const truncated = this.overflow;
    this.partial = '';
    this.overflow = false;
    if (raw.endsWith('\r')) raw = raw.slice(0, -1);
    return this.parse(raw, truncated);
  }

  private parse(raw: string, truncated: boolean): ParsedLine {
    let line: LogLine;
    try {
      line = parseLogLine(raw);
    } catch {
      line = { level: 'info', message: '', fields: {}, bare: true };
    }
    if (truncated) line.truncated = true;
    const events = lineEvents(line);
    const url = this.trackBox(line);
    if (url) events.unshift({ kind: 'url', url });
    return { line, events };
  }

  /** Box state machine: banner headline → first https URL on a box line → closing border. */
  private trackBox(line: LogLine): string | undefined {
    if (this.urlFound || line.bare) return undefined;
    const msg = line.message;
    if (this.boxLines < 0) {
      const b = BANNER.exec(msg);
      if (!b) return undefined;
      this.boxLines = 0;
      // Tolerate a future banner that carries the URL on the headline line itself.
      return this.takeUrl(msg.slice(b.index + b[0].length));
    }
    this.boxLines++;
    if (BOX_BORDER.test(msg) || this.boxLines > BOX_MAX_LINES) {
      this.boxLines = -1;
      return undefined;
    }
    if (!BOX_LINE.test(msg)) return undefined; // another goroutine's line interleaved
    return this.takeUrl(msg);
  }

  private takeUrl(text: string): string | undefined {
    const m = BOX_URL.exec(text);
    if (!m) return undefined;
    const url = m[0].replace(/[.,;:)\]]+$/, '');
    let host: string;
    try {
      host = new URL(url).hostname.toLowerCase();
    } catch {
      return undefined;
    }
    if (!host || host === 'api.trycloudflare.com') return undefined;
    this.urlFound = true;
    this.boxLines = -1;
    this.foundUrl = url;
    return url;
  }
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

// ---------------------------------------------------------------------------------------------
// Versions

/** "cloudflared version 2026.8.2 (built ...)" → "2026.8.2"; DEV builds → "DEV"; `version --short` output too. */
export function parseVersionOutput(stdout: string): string | undefined {
  const text = stripAnsi(stdout.replace(/\r/g, ''));
  const m = VERSION_OUT.exec(text);
  if (m) return versionToken(m[1] ?? '');
  const short = /^\s*(\d{4}\.\d+\.\d+)\s*$/m.exec(text);
  return short?.[1];
}

/** Compares "2025.6.1"-style versions; negative if a < b. "DEV" counts as newest. */
export function compareVersions(a: string, b: string): number {
  const da = /^dev$/i.test(a.trim());
  const db = /^dev$/i.test(b.trim());
  if (da || db) return da === db ? 0 : da ? 1 : -1;
  const pa = versionParts(a);
  const pb = versionParts(b);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

function versionParts(v: string): number[] {
  const m = /(\d+(?:\.\d+)*)/.exec(v);
  return m?.[1] ? m[1].split('.').map((p) => parseInt(p, 10)) : [];
}

// ---------------------------------------------------------------------------------------------
// Failure classification

export type FailureKind =
  | 'no-network'
  | 'service-unavailable'
  | 'rate-limited'
  | 'edge-unreachable'
  | 'incorrect-usage'
  | 'updated'
  | 'config'
  | 'unknown';

interface Rule {
  kind: FailureKind;
  test: (text: string, line: LogLine) => boolean;
  /** Ignore a match that is followed by a successful registration (the problem was overcome). */
  unlessRegisteredAfter?: boolean;
}

const QUICK_FAIL = /failed to (?:request|unmarshal|read|parse|build|create) quick Tunnel|Error unmarshaling QuickTunnel response|failed to parse quick Tunnel ID/i;
const NET_ERR = /no such host|dial tcp|network is unreachable|no route to host|connection refused|i\/o timeout|server misbehaving|connect: /i;

const RULES: Rule[] = [
  { kind: 'incorrect-usage', test: (t) => /Incorrect Usage|flag provided but not defined|You did not specify any valid additional argument/i.test(t) },
  {
    kind: 'rate-limited',
    test: (t) => /Too Many Requests/i.test(t) || /status(?:_code)?\W{0,3}429\b/i.test(t) || (/\b429\b/.test(t) && /quick ?tunnel/i.test(t)),
  },
  { kind: 'no-network', test: (t) => QUICK_FAIL.test(t) && NET_ERR.test(t) },
  { kind: 'service-unavailable', test: (t) => QUICK_FAIL.test(t) },
  {
    kind: 'edge-unreachable',
    unlessRegisteredAfter: true,
    test: (t) =>
      /failed to dial to edge|initial tunnel connection failed|Could not lookup srv records|Failed to dial a quic connection|Failed to create new quic connection|Unable to establish connection with Cloudflare edge/i.test(t),
  },
  {
    kind: 'config',
    test: (t) =>
      !/was empty/i.test(t) &&
      /Configuration file|error parsing YAML|yaml: |cannot unmarshal .* into|invalid ingress|ingress rules?.*(?:invalid|error|must)|error reading config|config(?:uration)? file .*(?:not found|does not exist|no such file)/i.test(t),
  },
  {
    kind: 'edge-unreachable',
    unlessRegisteredAfter: true,
    test: (t) => /edge discovery: error looking up|error looking up Cloudflare edge/i.test(t),
  },
];

function describe(line: LogLine): string {
  const err = line.fields.error;
  let s = line.message;
  if (err && !s.includes(err)) s = s ? `${s}: ${err}` : err;
  if (!s && line.fields.status_code) s = line.fields.status_code;
  return s.length > 500 ? `${s.slice(0, 497)}...` : s;
}

/**
 * Turns the last lines of a failed run (stderr, plus stdout for "Incorrect Usage") and its exit
 * code into a cause the user can act on. Only bare lines and warn-or-worse lines are considered.
 * Give it the parser's typed lines where you have them: a line kept as text loses its level and
 * fields (a re-parsed `message error=…` is a bare line), and with them the order of events that
 * tells a dial error before a registration from one after it.
 */
export function classifyFailure(lastLines: readonly (string | LogLine)[], exitCode: number | null): { kind: FailureKind; detail?: string } {
  if (exitCode === 10 || exitCode === 11) {
    return { kind: 'updated', detail: exitCode === 11 ? 'cloudflared updated itself and exited (exit code 11)' : 'cloudflared update failed (exit code 10)' };
  }
  const parsed: LogLine[] = [];
  const registered: boolean[] = [];
  for (const raw of lastLines) {
    let line: LogLine;
    try {
      line = typeof raw === 'string' ? parseLogLine(raw) : raw;
    } catch {
      continue;
    }
    parsed.push(line);
    registered.push(!line.bare && (REGISTERED.test(line.message) || REGISTERED_OLD.test(line.message)));
  }
  const relevant = (l: LogLine): boolean => l.bare || l.level === 'warn' || l.level === 'error' || l.level === 'fatal' || l.level === 'panic';
  const lastRegistered = registered.lastIndexOf(true);
  const registeredAfter = (i: number): boolean => lastRegistered > i;

  for (const rule of RULES) {
    for (let i = parsed.length - 1; i >= 0; i--) {
      const line = parsed[i];
      if (!line || !relevant(line)) continue;
      const text = [line.message, ...Object.values(line.fields)].join(' ');
      if (!rule.test(text, line)) continue;
      if (rule.unlessRegisteredAfter && registeredAfter(i)) continue;
      // For a rate limit, prefer the line that names the status.
      if (rule.kind === 'rate-limited' && line.fields.status_code) return { kind: rule.kind, detail: line.fields.status_code };
      return { kind: rule.kind, detail: describe(line) };
    }
  }

  let detail: string | undefined;
  for (let i = parsed.length - 1; i >= 0 && detail === undefined; i--) {
    const l = parsed[i];
    if (l && l.bare && l.level === 'error' && l.message) detail = describe(l);
  }
  for (let i = parsed.length - 1; i >= 0 && detail === undefined; i--) {
    const l = parsed[i];
    if (l && !l.bare && (l.level === 'fatal' || l.level === 'panic' || l.level === 'error')) detail = describe(l);
  }
  for (let i = parsed.length - 1; i >= 0 && detail === undefined; i--) {
    const l = parsed[i];
    if (l && l.bare && l.message) detail = describe(l);
  }
  return detail ? { kind: 'unknown', detail } : { kind: 'unknown' };
}

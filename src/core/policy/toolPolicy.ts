/**
 * A share's tool policy: which of its server's tools a client may see and call. The gate judges
 * every request of a share with a policy before its origin sees it, and every answer before the
 * client does:
 *
 * - `tools/call` of a tool the policy does not let through is answered by the gate with a JSON-RPC
 *   error ("tool X is not shared") and never forwarded; in a batch, the other calls go on.
 * - Every `tools` list in an answer (a `tools/list` result, wherever it comes: a JSON body, an SSE
 *   event, a batch) is cut to the tools the policy lets through. By shape, not by request id: a
 *   server that answers with the wrong id, or slips a list into another answer, is filtered too.
 * - Read-only: only tools whose annotations say `readOnlyHint: true`, as the server's latest list
 *   says (a tool listed twice must say so every time). A tool the server never listed as read-only
 *   is not callable: nothing is let through on trust.
 * - Fail closed: a request body that is not JSON-RPC gets a parse error; a body above the cap gets
 *   413; 2026-07-28 `Mcp-Method` / `Mcp-Name` headers that disagree with the body get 400
 *   (-32020); an answer that cannot be read (not JSON, compressed) is not passed on.
 *
 * Pure: no sockets; the gate feeds it bodies and events.
 */

import { first } from '../util/http';

/** What a share lets through; undefined fields: no limit of that kind. */
export interface ToolPolicy {
  /** Only these tools (by name). */
  tools?: readonly string[];
  /** Only tools whose annotations say `readOnlyHint: true`. */
  readOnly?: boolean;
  /** Request bodies above this many bytes get 413. Default 4 MiB. */
  maxBodyBytes?: number;
}

export const DEFAULT_POLICY_MAX_BODY_BYTES = 4 * 1024 * 1024;

/** JSON-RPC error codes the gate answers with. */
export const PARSE_ERROR = -32700;
export const INVALID_REQUEST = -32600;
export const INVALID_PARAMS = -32602;
/** 2026-07-28: the `Mcp-*` headers disagree with the body. */
export const HEADER_MISMATCH = -32020;

const TOOL_NAME = /^[^\s\u0000-\u001f]{1,128}$/;

/**
 * A policy from outside (a setting, an agent, the CLI), checked: tool names are 1–128 printable
 * characters without spaces, at most 500 of them. Throws a RangeError naming the problem.
 * Undefined when it limits nothing.
 */
export function checkPolicy(input: { tools?: unknown; readOnly?: unknown; maxBodyBytes?: unknown }): ToolPolicy | undefined {
  const out: { tools?: string[]; readOnly?: boolean; maxBodyBytes?: number } = {};
  if (input.tools !== undefined && input.tools !== null) {
    if (!Array.isArray(input.tools)) throw new RangeError('tools must be a list of tool names.');
    if (input.tools.length > 500) throw new RangeError(`tools may name at most 500 tools (got ${input.tools.length}).`);
    const names = input.tools.map((t: unknown) => {
      if (typeof t !== 'string' || !TOOL_NAME.test(t)) throw new RangeError(`"${String(t).slice(0, 60)}" is not a tool name (1 to 128 characters, no spaces).`);
      return t;
    });
    out.tools = [...new Set(names)];
  }
  if (input.readOnly !== undefined && input.readOnly !== null) {
    if (typeof input.readOnly !== 'boolean') throw new RangeError('read_only must be true or false.');
    if (input.readOnly) out.readOnly = true;
  }
  if (input.maxBodyBytes !== undefined) {
    const n = input.maxBodyBytes;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1024 || n > 1024 * 1024 * 1024) throw new RangeError('The body cap must be a whole number of bytes from 1 KiB to 1 GiB.');
    out.maxBodyBytes = n;
  }
  return out.tools !== undefined || out.readOnly ? out : undefined;
}

/**
 * What a share offers, for the UI and the log: `2 tools (echo, get-sum)`, `read-only tools`,
 * `read-only tools of 2 (echo, get-sum)`, `no tools`.
 */
export function describePolicy(p: ToolPolicy | undefined): string | undefined {
  if (!p || (p.tools === undefined && !p.readOnly)) return undefined;
  if (p.tools === undefined) return 'read-only tools';
  if (p.tools.length === 0) return 'no tools';
  const shown = `(${p.tools.slice(0, 4).join(', ')}${p.tools.length > 4 ? ', …' : ''})`;
  if (p.readOnly) return `read-only tools of ${p.tools.length} ${shown}`;
  return `${p.tools.length} tool${p.tools.length === 1 ? '' : 's'} ${shown}`;
}

type Id = string | number | null;

interface Message {
  jsonrpc?: unknown;
  id?: Id;
  method?: unknown;
  params?: unknown;
  result?: unknown;
  error?: unknown;
}

/** What the gate does with a request body. */
export type RequestVerdict =
  /** Refuse it whole (a parse error, a header mismatch): send `status` with `body`. */
  | { kind: 'refuse'; status: number; body: string; reason: string }
  /** Every call in it was refused: answer with `body` (200 JSON), forward nothing. */
  | { kind: 'answer'; body: string; refused: string[] }
  /**
   * Forward `body` (the calls the policy lets through); the gate's own `answers` (refused calls
   * of a batch) go to the client with the origin's.
   */
  | { kind: 'forward'; body: Buffer; answers: Message[]; refused: string[] };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function rpcError(id: Id, code: number, message: string): Message {
  return { jsonrpc: '2.0', id, error: { code, message } };
}

/** One share's judge: the policy, and what the server said of its tools (for read-only). */
export class ToolGuard {
  /** name → read-only, from the server's latest tools lists. */
  private readonly annotated = new Map<string, boolean>();
  private allow: Set<string> | undefined;

  constructor(private _policy: ToolPolicy) {
    this.allow = _policy.tools ? new Set(_policy.tools) : undefined;
  }

  get policy(): ToolPolicy {
    return this._policy;
  }

  set policy(p: ToolPolicy) {
    this._policy = p;
    this.allow = p.tools ? new Set(p.tools) : undefined;
  }

  get maxBodyBytes(): number {
    return this._policy.maxBodyBytes ?? DEFAULT_POLICY_MAX_BODY_BYTES;
  }

  /** May a client call this tool? */
  allows(name: string): boolean {
    if (this.allow && !this.allow.has(name)) return false;
    if (this._policy.readOnly && this.annotated.get(name) !== true) return false;
    return true;
  }

  /** Why `name` is refused, for the client. */
  private refusal(name: string): string {
    if (this.allow && !this.allow.has(name)) return `tool "${name}" is not shared`;
    return this.annotated.has(name) ? `tool "${name}" is not shared: this share is read-only and the server does not mark the tool readOnlyHint` : `tool "${name}" is not shared: this share is read-only and the server has not listed the tool as read-only (call tools/list first)`;
  }

  /** Judges a POST body (already within the cap). `headers` for the 2026-07-28 `Mcp-*` check. */
  judge(body: Buffer, headers: Record<string, string | string[] | undefined> = {}): RequestVerdict {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch (err) {
      const why = `Parse error: the body is not JSON (${(err as Error).message.slice(0, 120)}); a share with a tool policy forwards only JSON-RPC it can check.`;
      return { kind: 'refuse', status: 400, body: JSON.stringify(rpcError(null, PARSE_ERROR, why)), reason: 'a body that is not JSON' };
    }
    const batch = Array.isArray(parsed);
    const list: unknown[] = Array.isArray(parsed) ? (parsed as unknown[]) : [parsed];
    if (list.length === 0 || !list.every(isObject)) {
      return { kind: 'refuse', status: 400, body: JSON.stringify(rpcError(null, INVALID_REQUEST, 'Invalid Request: expected a JSON-RPC message or a batch of them.')), reason: 'a body that is not JSON-RPC' };
    }
    const messages = list as Message[];
    // 2026-07-28: intermediaries that act on the mirrored headers must check them against the body.
    const hMethod = first(headers['mcp-method']);
    const hName = first(headers['mcp-name']);
    const m = messages[0];
    if (!batch && m && (hMethod !== undefined || hName !== undefined)) {
      const p = isObject(m.params) ? m.params : {};
      const bodyName = m.method === 'tools/call' || m.method === 'prompts/get' ? p['name'] : typeof m.method === 'string' && m.method.startsWith('resources/') ? p['uri'] : undefined;
      if ((hMethod !== undefined && hMethod !== m.method) || (hName !== undefined && typeof bodyName === 'string' && hName !== bodyName)) {
        const id = m.id ?? null;
        return { kind: 'refuse', status: 400, body: JSON.stringify(rpcError(id, HEADER_MISMATCH, 'Header mismatch: Mcp-Method / Mcp-Name do not match the body.')), reason: 'Mcp-* headers that disagree with the body' };
      }
    }
    const answers: Message[] = [];
    const kept: Message[] = [];
    const refused: string[] = [];
    for (const m of messages) {
      if (m.method !== 'tools/call') {
        kept.push(m);
        continue;
      }
      const p = isObject(m.params) ? m.params : undefined;
      const name = p?.['name'];
      if (typeof name !== 'string') {
        answers.push(rpcError(m.id ?? null, INVALID_PARAMS, 'Invalid params: tools/call needs a tool name.'));
        refused.push('(no name)');
        continue;
      }
      if (this.allows(name)) {
        kept.push(m);
        continue;
      }
      refused.push(name);
      // A notification (no id) gets no answer, and is not forwarded either.
      if (m.id !== undefined) answers.push(rpcError(m.id, INVALID_PARAMS, this.refusal(name)));
    }
    if (kept.length === 0) {
      if (answers.length === 0) return { kind: 'answer', body: '', refused };
      return { kind: 'answer', body: JSON.stringify(batch ? answers : answers[0]), refused };
    }
    // What was judged is what goes on: written anew, never the client's bytes (a key given twice
    // must not name one tool here and another to the origin's parser).
    return { kind: 'forward', body: Buffer.from(JSON.stringify(batch ? kept : kept[0])), answers, refused };
  }

  /**
   * An answer's message(s), filtered: every `result.tools` list cut to what the policy lets
   * through (and, for read-only, learnt from). Mutates and returns `v`.
   */
  filterValue(v: unknown): unknown {
    if (Array.isArray(v)) {
      for (const m of v) this.filterMessage(m);
    } else {
      this.filterMessage(v);
    }
    return v;
  }

  private filterMessage(m: unknown): void {
    if (!isObject(m) || !isObject(m['result']) || !('tools' in m['result'])) return;
    const result = m['result'];
    const tools = Array.isArray(result['tools']) ? result['tools'] : [];
    // Learn first (a list is the server's word on its tools now), then judge by it.
    const seen = new Map<string, boolean>();
    for (const t of tools) {
      if (!isObject(t) || typeof t['name'] !== 'string') continue;
      const ro = isObject(t['annotations']) && t['annotations']['readOnlyHint'] === true;
      seen.set(t['name'], (seen.get(t['name']) ?? true) && ro);
    }
    for (const [name, ro] of seen) this.annotated.set(name, ro);
    if (this.annotated.size > 10_000) this.annotated.clear();
    result['tools'] = tools.filter((t): boolean => isObject(t) && typeof t['name'] === 'string' && this.allows(t['name']));
  }

  /** A JSON answer body, filtered; undefined when it is not JSON (then it must not pass). */
  filterJson(text: string): string | undefined {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      return undefined;
    }
    // Always written anew, never the server's bytes: a key spelt with escapes (`"\u0074ools"`) or
    // given twice must not mean one thing here and another to the client's parser.
    return JSON.stringify(this.filterValue(v));
  }

  /** A new filter for one SSE response. */
  sse(): SseFilter {
    return new SseFilter(this);
  }
}

/** Largest SSE event the filter holds while waiting for its end. */
const MAX_EVENT_BYTES = 16 * 1024 * 1024;

/**
 * Rewrites an SSE stream event by event: each event's `data` (JSON-RPC) filtered by the guard;
 * an event whose data is not JSON is dropped (it cannot be checked); comments, `id`, `event`
 * and `retry` lines pass as they are.
 */
export class SseFilter {
  private pending = '';
  /** Events dropped because their data was not JSON. */
  dropped = 0;
  constructor(private readonly guard: ToolGuard) {}

  /** Text to send for this chunk (whole events only); throws when one event grows beyond 16 MiB. */
  push(chunk: string): string {
    this.pending += chunk;
    let out = '';
    for (;;) {
      const m = /\r\n\r\n|\n\n|\r\r/.exec(this.pending);
      if (!m) break;
      const block = this.pending.slice(0, m.index);
      this.pending = this.pending.slice(m.index + m[0].length);
      out += this.event(block);
    }
    if (this.pending.length > MAX_EVENT_BYTES) throw new Error('an SSE event larger than 16 MiB');
    return out;
  }

  /** What is left at the end of the stream (an event without its blank line). */
  end(): string {
    const rest = this.pending;
    this.pending = '';
    return rest.trim() === '' ? '' : this.event(rest);
  }

  private event(block: string): string {
    const lines = block.split(/\r\n|\n|\r/);
    const data: string[] = [];
    const other: string[] = [];
    for (const l of lines) {
      if (l.startsWith('data:')) data.push(l.slice(5).replace(/^ /, ''));
      else if (l === 'data') data.push('');
      else other.push(l);
    }
    if (data.length === 0) return `${block}\n\n`;
    // The 2024-11-05 HTTP+SSE transport's first event names the POST URL: not JSON-RPC, no tools.
    if (other.includes('event: endpoint') || other.includes('event:endpoint')) return `${block}\n\n`;
    const text = data.join('\n');
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      this.dropped++;
      return '';
    }
    // Written anew (see filterJson), on one data line.
    return `${[...other, `data: ${JSON.stringify(this.guard.filterValue(v))}`].join('\n')}\n\n`;
  }
}

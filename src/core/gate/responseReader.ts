/**
 * A minimal, strict HTTP/1.1 response reader for the gate's fast path (see `originLink.ts`): the
 * status line and header fields of a response head, and its body's framing (Content-Length,
 * chunked, until close, or none) so the same connection can carry the next exchange. It decodes
 * chunked bodies (the client side re-frames them) and refuses what a lenient reader would guess
 * at: obs-fold, bare CR, bad names, duplicate Content-Length with other values, Content-Length
 * with Transfer-Encoding, a chunk size that is not hex. Pure: no sockets, no timers.
 */

/** A response head as read: status, reason, and the header fields in order (name as sent). */
export interface ResponseHead {
  status: number;
  reason: string;
  /** `[name, value, name, value, …]` as sent (Node's `writeHead` takes this form). */
  raw: string[];
  /** The names lowercased, one per field (`lower[i]` is `raw[2 * i]`'s). */
  lower: string[];
}

/** How the body that follows a head is delimited. */
export type Framing = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'close' };

/** The largest response head the gate reads (Node's own limit is 16 KiB; origins may send more). */
export const MAX_RESPONSE_HEAD_BYTES = 64 * 1024;

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: ([^\r\n]*))?$/;
const BAD_VALUE = /[\0\r\n]/;
const HTTP_PREFIX = Buffer.from('HTTP/', 'latin1');

export class ResponseHeadError extends Error {}

/**
 * Reads one head from `buf` (latin1 bytes). Returns undefined while the head is incomplete,
 * `{ head, size }` once it is whole; throws a ResponseHeadError naming what is wrong.
 */
export function readHead(buf: Buffer): { head: ResponseHead; size: number; http10: boolean } | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) {
    if (buf.length > MAX_RESPONSE_HEAD_BYTES) throw new ResponseHeadError(`its response head is over ${MAX_RESPONSE_HEAD_BYTES / 1024} KiB`);
    // A head that cannot be HTTP is refused at once rather than waited for.
    if (buf.length >= 5 && !buf.subarray(0, 5).equals(HTTP_PREFIX)) throw new ResponseHeadError('it did not answer with HTTP/1.x');
    return undefined;
  }
  if (end > MAX_RESPONSE_HEAD_BYTES) throw new ResponseHeadError(`its response head is over ${MAX_RESPONSE_HEAD_BYTES / 1024} KiB`);
  if (buf.length < 5 || !buf.subarray(0, 5).equals(HTTP_PREFIX)) throw new ResponseHeadError('it did not answer with HTTP/1.x');
  const lines = buf.toString('latin1', 0, end).split('\r\n');
  const m = STATUS_LINE.exec(lines[0] ?? '');
  if (!m) throw new ResponseHeadError('its status line is not "HTTP/1.x <3-digit status> <reason>"');
  const raw: string[] = [];
  const lower: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (line.startsWith(' ') || line.startsWith('\t')) throw new ResponseHeadError('it folded a header line (obs-fold)');
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    if (!TOKEN.test(name)) throw new ResponseHeadError('a header line has no valid field name');
    const value = line.slice(colon + 1).trim();
    if (BAD_VALUE.test(value)) throw new ResponseHeadError(`the header ${name} holds a bare CR or NUL`);
    raw.push(name, value);
    lower.push(name.toLowerCase());
  }
  return { head: { status: Number(m[2]), reason: m[3] ?? '', raw, lower }, size: end + 4, http10: m[1] === '0' };
}

/** The framing of a response's body (RFC 9112 §6.3), given the request method. Throws on a contradiction. */
export function framingOf(head: ResponseHead, method: string): Framing {
  if (method === 'HEAD' || head.status === 204 || head.status === 304 || (head.status >= 100 && head.status < 200)) return { kind: 'none' };
  let te: string | undefined;
  let cl: string | undefined;
  for (let i = 0; i < head.lower.length; i++) {
    const lower = head.lower[i];
    const v = head.raw[2 * i + 1] ?? '';
    if (lower === 'transfer-encoding') te = te === undefined ? v : `${te}, ${v}`;
    else if (lower === 'content-length') {
      for (const part of v.split(',')) {
        const p = part.trim();
        if (!/^\d{1,15}$/.test(p)) throw new ResponseHeadError(`its Content-Length "${v.slice(0, 40)}" is not a number`);
        if (cl !== undefined && cl !== p) throw new ResponseHeadError('it sent two different Content-Length values');
        cl = p;
      }
    }
  }
  if (te !== undefined) {
    if (cl !== undefined) throw new ResponseHeadError('it sent both Content-Length and Transfer-Encoding');
    const codings = te.split(',').map((t) => t.trim().toLowerCase()).filter((t) => t !== '');
    // Chunked last: the body is chunked (other codings are the client's to undo). Otherwise: until close.
    return codings[codings.length - 1] === 'chunked' ? { kind: 'chunked' } : { kind: 'close' };
  }
  if (cl !== undefined) return Number(cl) === 0 ? { kind: 'none' } : { kind: 'length', length: Number(cl) };
  return { kind: 'close' };
}

/**
 * Cuts a body out of the bytes that follow its head: `push(chunk)` hands back the body bytes in it
 * (`onData`), and returns the bytes past the body's end once it is complete (`done` is then
 * true), or undefined while more is needed. A close-delimited body is complete only at `end()`.
 */
export class BodyReader {
  done = false;
  private left: number;
  /** chunked: where in a chunk we are. */
  private state: 'size' | 'data' | 'data-crlf' | 'trailer' = 'size';
  private line = '';

  constructor(
    readonly framing: Framing,
    private readonly onData: (chunk: Buffer) => void,
  ) {
    this.left = framing.kind === 'length' ? framing.length : 0;
    if (framing.kind === 'none') this.done = true;
  }

  /** The bytes past the body (the start of the next response), once done; throws on bad chunking. */
  push(buf: Buffer): Buffer | undefined {
    if (this.done) return buf;
    switch (this.framing.kind) {
      case 'length': {
        if (buf.length <= this.left) {
          this.left -= buf.length;
          if (buf.length > 0) this.onData(buf);
          if (this.left === 0) {
            this.done = true;
            return EMPTY;
          }
          return undefined;
        }
        const body = buf.subarray(0, this.left);
        this.left = 0;
        this.done = true;
        this.onData(body);
        return buf.subarray(body.length);
      }
      case 'close':
        if (buf.length > 0) this.onData(buf);
        return undefined;
      case 'chunked':
        return this.chunked(buf);
      default:
        return buf;
    }
  }

  /** The connection ended: true if that completes the body (close-delimited), false if it cut it short. */
  end(): boolean {
    if (this.framing.kind === 'close') this.done = true;
    return this.done;
  }

  private chunked(buf: Buffer): Buffer | undefined {
    let i = 0;
    while (i < buf.length) {
      if (this.state === 'data') {
        const n = Math.min(this.left, buf.length - i);
        this.onData(buf.subarray(i, i + n));
        this.left -= n;
        i += n;
        if (this.left === 0) this.state = 'data-crlf';
        continue;
      }
      // size, data-crlf and trailer lines: read one line (at most 4 KiB of it).
      const nl = buf.indexOf(10, i);
      const upto = nl < 0 ? buf.length : nl;
      this.line += buf.toString('latin1', i, upto);
      if (this.line.length > 4096) throw new ResponseHeadError('a chunk-size or trailer line of its body is over 4 KiB');
      if (nl < 0) return undefined;
      i = nl + 1;
      if (!this.line.endsWith('\r')) throw new ResponseHeadError('its chunked body has a line without CRLF');
      const line = this.line.slice(0, -1);
      this.line = '';
      if (this.state === 'data-crlf') {
        if (line !== '') throw new ResponseHeadError('a chunk of its body is longer than its size says');
        this.state = 'size';
      } else if (this.state === 'size') {
        const m = /^([0-9A-Fa-f]{1,12})[ \t]*(?:;.*)?$/.exec(line);
        if (!m?.[1]) throw new ResponseHeadError('its chunked body has a chunk size that is not hex');
        const size = parseInt(m[1], 16);
        if (size === 0) this.state = 'trailer';
        else {
          this.left = size;
          this.state = 'data';
        }
      } else if (line === '') {
        // The empty line after the trailers (dropped, as the slow path drops them) ends the body.
        this.done = true;
        return buf.subarray(i);
      }
    }
    return undefined;
  }
}

const EMPTY = Buffer.alloc(0);

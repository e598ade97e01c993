/**
 * The gate's fast path to an origin: one raw TCP connection per client connection, carrying that
 * client's exchanges one after another (so responses stay in the client's order), with no
 * `http.request` object per request. The request head is the gate's own text (written after Node's
 * server parser vetted the client's request); the body is streamed with the framing Node parsed
 * (Content-Length as is, chunked re-chunked); the response is read by `responseReader.ts`.
 *
 * A reused connection the origin closed while idle (its keep-alive timeout) fails before any byte
 * of an answer: a request without a body is then sent once more on a new connection.
 */
import { connect, type Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { BodyReader, framingOf, readHead, ResponseHeadError, type Framing, type ResponseHead } from './responseReader';

export interface LinkExchange {
  method: string;
  /** The request head, `… HTTP/1.1\r\n…\r\n\r\n` (latin1). */
  head: string;
  /** How the client's body goes on: none, as is (Content-Length), or re-chunked. */
  body: 'none' | 'length' | 'chunked';
  /** The body's source (Node's parsed, de-chunked request). */
  req: IncomingMessage;
  /** The final (non-1xx) response head; a throw is an error of the exchange. */
  onHead(head: ResponseHead, framing: Framing): void;
  /** false: the client is slow, hold the origin until `resume()`. */
  onData(chunk: Buffer): boolean;
  /** The head went out and no body byte is here yet (an SSE stream): time to flush the head. */
  onWait(): void;
  onEnd(): void;
  /** Before the head (`answered` false): the gate answers 502. After: the client's response is cut. */
  onError(err: Error, answered: boolean): void;
}

interface Pending {
  x: LinkExchange;
  retried: boolean;
  detach?: () => void;
}

const EMPTY = Buffer.alloc(0);

/** Why an origin's connection ended before its answer did (for the 502 and the share's warning). */
export class OriginClosedError extends Error {
  readonly code = 'ECONNRESET';
}

export class OriginLink {
  private socket: Socket | undefined;
  /** The socket served an exchange before this one. */
  private reused = false;
  private readonly queue: Pending[] = [];
  private current: Pending | undefined;
  private buf: Buffer = EMPTY;
  private reader: BodyReader | undefined;
  private gotBytes = false;
  private requestDone = false;
  private responseDone = false;
  private closeAfter = false;
  private destroyed = false;

  constructor(
    readonly host: string,
    readonly port: number,
  ) {}

  /** No exchange under way or waiting. */
  get idle(): boolean {
    return this.current === undefined && this.queue.length === 0;
  }

  /** Queues an exchange; returns its abort (which drops the connection if it is under way). */
  send(x: LinkExchange): () => void {
    const p: Pending = { x, retried: false };
    this.queue.push(p);
    if (!this.current) this.next();
    return () => this.abort(p);
  }

  /** The client took what was written: read the origin's answer on. */
  resume(): void {
    this.socket?.resume();
  }

  /** Drops the connection and everything queued (the client connection is gone). */
  destroy(): void {
    this.destroyed = true;
    this.queue.length = 0;
    this.current?.detach?.();
    this.current = undefined;
    this.drop();
  }

  private abort(p: Pending): void {
    if (this.current === p) {
      p.detach?.();
      this.current = undefined;
      this.drop();
      this.next();
      return;
    }
    const i = this.queue.indexOf(p);
    if (i >= 0) this.queue.splice(i, 1);
  }

  private drop(): void {
    const s = this.socket;
    this.socket = undefined;
    this.buf = EMPTY;
    this.reader = undefined;
    s?.destroy();
  }

  private next(): void {
    if (this.destroyed || this.current) return;
    const p = this.queue.shift();
    if (!p) return;
    this.current = p;
    this.start(p);
  }

  private start(p: Pending): void {
    this.gotBytes = false;
    this.requestDone = p.x.body === 'none';
    this.responseDone = false;
    this.closeAfter = false;
    this.buf = EMPTY;
    this.reader = undefined;
    let s = this.socket;
    if (s && !s.destroyed && s.writable) {
      this.reused = true;
    } else {
      this.reused = false;
      s = this.open();
    }
    s.cork();
    s.write(p.x.head, 'latin1');
    if (p.x.body !== 'none') this.pipeBody(p, s);
    process.nextTick(() => s.uncork());
  }

  private open(): Socket {
    const s = connect({ host: this.host, port: this.port, noDelay: true });
    this.socket = s;
    s.on('data', (chunk: Buffer) => {
      if (this.socket === s) this.onData(chunk);
    });
    const gone = (err?: Error): void => {
      if (this.socket !== s) return;
      this.socket = undefined;
      s.destroy();
      this.onGone(err);
    };
    s.on('error', (err) => gone(err));
    s.on('end', () => gone());
    s.on('close', () => gone());
    return s;
  }

  private pipeBody(p: Pending, s: Socket): void {
    const { req, body } = p.x;
    const onData = (d: Buffer): void => {
      const ok = body === 'chunked' ? (s.write(`${d.length.toString(16)}\r\n`, 'latin1'), s.write(d), s.write('\r\n', 'latin1')) : s.write(d);
      if (!ok) req.pause();
    };
    const onDrain = (): void => void req.resume();
    const onEnd = (): void => {
      if (body === 'chunked') s.write('0\r\n\r\n', 'latin1');
      this.requestDone = true;
      this.finish();
    };
    req.on('data', onData);
    req.once('end', onEnd);
    s.on('drain', onDrain);
    p.detach = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      s.off('drain', onDrain);
    };
  }

  private onData(chunk: Buffer): void {
    const p = this.current;
    if (!p || this.responseDone) {
      // Bytes nobody asked for: the connection cannot be trusted for the next exchange.
      this.closeAfter = true;
      if (!p) this.drop();
      return;
    }
    this.gotBytes = true;
    let rest: Buffer | undefined;
    try {
      if (!this.reader) {
        this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
        for (;;) {
          const r = readHead(this.buf);
          if (!r) return;
          this.buf = this.buf.subarray(r.size);
          const { head } = r;
          if (head.status === 101) throw new ResponseHeadError('it switched protocols (101) for a request that asked for no upgrade');
          if (head.status < 200) continue; // 100 Continue, 103 Early Hints: not relayed
          const framing = framingOf(head, p.x.method);
          if (r.http10 || framing.kind === 'close' || connectionClose(head)) this.closeAfter = true;
          p.x.onHead(head, framing);
          if (this.current !== p) return; // aborted by onHead
          this.reader = new BodyReader(framing, (d) => {
            if (!p.x.onData(d)) this.socket?.pause();
          });
          const after = this.buf;
          this.buf = EMPTY;
          rest = this.reader.push(after);
          if (rest === undefined && after.length === 0) p.x.onWait();
          break;
        }
      } else {
        rest = this.reader.push(chunk);
      }
    } catch (err) {
      this.fail(p, err instanceof Error ? err : new Error(String(err)), this.reader !== undefined);
      return;
    }
    if (rest === undefined || this.current !== p) return;
    if (rest.length > 0) this.closeAfter = true;
    this.responseDone = true;
    p.x.onEnd();
    this.finish();
  }

  /** The exchange is over when both its response and its request body are. */
  private finish(): void {
    const p = this.current;
    if (!p || !this.responseDone) return;
    if (!this.requestDone) {
      // The origin answered before the body ended: that connection cannot carry another request.
      this.closeAfter = true;
    }
    p.detach?.();
    this.current = undefined;
    if (this.closeAfter) this.drop();
    this.next();
  }

  private onGone(err: Error | undefined): void {
    this.buf = EMPTY;
    const p = this.current;
    if (!p) return;
    if (this.reader) {
      if (this.responseDone) return;
      if (this.reader.end()) {
        this.responseDone = true;
        this.reader = undefined;
        p.x.onEnd();
        this.finish();
        return;
      }
      this.reader = undefined;
      this.fail(p, err ?? new OriginClosedError('the local server closed the connection in the middle of its answer'), true);
      return;
    }
    if (this.reused && !this.gotBytes && p.x.body === 'none' && !p.retried) {
      // The origin had closed the idle connection: once more on a fresh one.
      p.retried = true;
      this.start(p);
      return;
    }
    this.fail(p, err ?? new OriginClosedError('the local server closed the connection without answering'), false);
  }

  private fail(p: Pending, err: Error, answered: boolean): void {
    p.detach?.();
    if (this.current === p) this.current = undefined;
    this.drop();
    p.x.onError(err, answered);
    this.next();
  }
}

function connectionClose(head: ResponseHead): boolean {
  for (let i = 0; i < head.lower.length; i++) {
    if (head.lower[i] === 'connection' && /(?:^|,)\s*close\s*(?:,|$)/i.test(head.raw[2 * i + 1] ?? '')) return true;
  }
  return false;
}

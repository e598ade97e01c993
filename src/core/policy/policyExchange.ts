/**
 * A tool policy on the wire: the gate's two steps for a share that has one. `readJudged` reads a
 * request body whole (up to the cap), has the guard judge it, and either answers the client itself
 * or hands on the body to forward; `relayFiltered` sends the origin's answer through the guard
 * (JSON bodies whole, SSE event by event). Node's `http` only; no state of its own.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { readCapped, sendJson as send } from '../util/http';
import { INVALID_REQUEST, type RequestVerdict, type ToolGuard } from './toolPolicy';

type Forward = Extract<RequestVerdict, { kind: 'forward' }>;

/** Largest JSON answer the gate reads to filter (a larger one is refused, never passed unread). */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

function mib(n: number): string {
  return n >= 1024 * 1024 ? `${Math.round((n / (1024 * 1024)) * 10) / 10} MiB` : `${Math.round(n / 1024)} KiB`;
}

function rpcErrorBody(message: string, code = INVALID_REQUEST): string {
  return JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } });
}

/**
 * Reads and judges one request of a share with a policy. Not a POST: `forward(undefined)` at once
 * (GET streams and DELETE have no body to judge; their answers are still filtered). Otherwise the
 * gate answers what the policy refuses (413, 415, 400, or the refused calls' errors) and calls
 * `forward` with the verdict for the rest. `note` gets one line per refusal, for the log.
 */
export function readJudged(req: IncomingMessage, res: ServerResponse, guard: ToolGuard, expectsContinue: boolean, forward: (verdict: Forward | undefined) => void, note: (line: string) => void): void {
  if ((req.method ?? 'GET') !== 'POST') {
    forward(undefined);
    return;
  }
  const cap = guard.maxBodyBytes;
  const tooLarge = (): void => {
    note(`refused a request body over ${mib(cap)} (tool policy)`);
    send(res, 413, rpcErrorBody(`Request body too large: a share with a tool policy reads every body, up to ${mib(cap)}.`), { connection: 'close' });
  };
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > cap) {
    tooLarge();
    return;
  }
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
    note(`refused a ${encoding}-encoded request body (tool policy)`);
    send(res, 415, rpcErrorBody(`Unsupported Media Type: a share with a tool policy must read the body, and it is ${encoding}-encoded. Send it uncompressed.`), { connection: 'close' });
    return;
  }
  const noteRefused = (names: string[]): void => note(`answered tools/call of ${names.map((n) => `"${n}"`).join(', ')} itself: not shared (tool policy)`);
  if (expectsContinue) res.writeContinue();
  readCapped(req, cap).then((body) => {
    if (res.destroyed) return;
    if (body === undefined) {
      tooLarge();
      return;
    }
    const verdict = guard.judge(body, req.headers);
    switch (verdict.kind) {
      case 'refuse':
        note(`refused ${verdict.reason} (tool policy)`);
        send(res, verdict.status, verdict.body);
        return;
      case 'answer':
        noteRefused(verdict.refused);
        if (verdict.body === '') {
          res.writeHead(202, { 'content-length': 0 });
          res.end();
        } else {
          send(res, 200, verdict.body);
        }
        return;
      case 'forward':
        if (verdict.refused.length) noteRefused(verdict.refused);
        forward(verdict);
    }
  }, () => res.destroy());
}

/**
 * Sends the origin's answer `ures` on `res` through the guard: SSE event by event (the gate's own
 * `answers` first), a JSON body whole (with the answers merged into a batch), anything else as it
 * is (an error page, a 202). An answer that cannot be read — compressed, not JSON, an endless
 * event — is not passed on: 502, or the stream is cut. `cut` ends both sides.
 */
export function relayFiltered(ures: IncomingMessage, res: ServerResponse, guard: ToolGuard, answers: readonly unknown[], headers: OutgoingHttpHeaders, cut: () => void, note: (line: string) => void): void {
  const status = ures.statusCode ?? 502;
  const type = String(ures.headers['content-type'] ?? '').toLowerCase();
  const encoding = ures.headers['content-encoding'];
  const unreadable = (why: string): void => {
    ures.resume();
    note(`did not pass an answer of the local server: ${why} (tool policy)`);
    send(res, 502, rpcErrorBody(`Bad Gateway: the local server's answer could not be checked against this share's tool policy (${why}).`, -32603), { connection: 'close' });
  };
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
    unreadable(`it is ${encoding}-encoded`);
    return;
  }
  const out = { ...headers };
  delete out['content-length'];
  delete out['content-md5'];
  delete out['etag'];
  if (type.includes('text/event-stream')) {
    const filter = guard.sse();
    res.writeHead(status, ures.statusMessage, out);
    res.flushHeaders();
    for (const a of answers) res.write(`data: ${JSON.stringify(a)}\n\n`);
    ures.setEncoding('utf8');
    ures.on('data', (chunk: string) => {
      let text: string;
      try {
        text = filter.push(chunk);
      } catch (err) {
        note(`cut an SSE stream: ${(err as Error).message} (tool policy)`);
        cut();
        return;
      }
      if (text) res.write(text);
    });
    ures.on('end', () => {
      if (filter.dropped) note(`dropped ${filter.dropped} SSE event(s) that were not JSON (tool policy)`);
      res.end(filter.end());
    });
    return;
  }
  const json = type.includes('json');
  if (!json && !(answers.length > 0 && status === 202)) {
    // Not an MCP answer (an HTTP error page, a 202 without body): nothing in it to filter.
    res.writeHead(status, ures.statusMessage, headers);
    ures.pipe(res);
    return;
  }
  // A stream error is the gate's `cut`: nothing more to do here.
  readCapped(ures, MAX_ANSWER_BYTES).then((answer) => {
    if (res.destroyed) return;
    if (answer === undefined) {
      unreadable(`it is larger than ${mib(MAX_ANSWER_BYTES)}`);
      return;
    }
    let body = '';
    if (json && answer.length > 0) {
      const filtered = guard.filterJson(answer.toString('utf8'));
      if (filtered === undefined) {
        unreadable('it is not JSON');
        return;
      }
      body = filtered;
    }
    if (answers.length > 0) {
      const theirs: unknown[] = body === '' ? [] : ([] as unknown[]).concat(JSON.parse(body) as unknown);
      body = JSON.stringify([...theirs, ...answers]);
    }
    out['content-type'] = json ? (headers['content-type'] ?? 'application/json') : 'application/json';
    out['content-length'] = Buffer.byteLength(body);
    res.writeHead(answers.length > 0 && status === 202 ? 200 : status, out);
    res.end(body);
  }, () => undefined);
}

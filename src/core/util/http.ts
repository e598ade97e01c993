/** Small node:http helpers the gate and its tool policy share. */
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';

/** A header's first value. */
export function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** A JSON answer the gate makes itself (never cached); nothing when the response is already under way. */
export function sendJson(res: ServerResponse, status: number, body: string, extra: OutgoingHttpHeaders = {}): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra });
  res.end(body);
}

/**
 * The origin of the load tests, in its own process: `GET /sse` answers an event stream (headers
 * at once, the first event on the next tick, a second one 20 ms later, then the end: a proxy that
 * buffers shows up as +20 ms); `GET /work?ms=N` spends N ms of CPU first, like a server doing some
 * work per request; any other path answers a small JSON body at once. Sends `{ port }` over IPC.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

const BODY = JSON.stringify({ jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'ok' }] } });

const server = createServer((req, res) => {
  if (req.url?.startsWith('/sse')) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    setImmediate(() => {
      res.write('event: message\ndata: {"n":1}\n\n');
      setTimeout(() => res.end('event: message\ndata: {"n":2}\n\n'), 20);
    });
    return;
  }
  req.resume();
  const work = /^\/work\?ms=(\d+(?:\.\d+)?)/.exec(req.url ?? '');
  if (work) {
    const until = performance.now() + Number(work[1]);
    while (performance.now() < until) {
      // busy: CPU the request costs the origin
    }
  }
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BODY) });
  res.end(BODY);
});
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  process.send?.({ port: (server.address() as AddressInfo).port });
});
process.on('disconnect', () => process.exit(0));

/** Who is at the other end of a loopback connection (the gate's trust in Cf-* headers). */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as net from 'node:net';
import { describe, it } from 'node:test';
import { peerIsProcess, socketInode } from '../../src/core/supervisor/socketOwner';

const TABLE = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 11111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 22222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 33333 1 0000000000000000 20 4 30 10 -1`;

describe('socket owner', () => {
  it('finds the client end of a connection in /proc/net/tcp by its ports', () => {
    assert.equal(socketInode(TABLE, 0xc350, 0x1f90), '22222');
    assert.equal(socketInode(TABLE, 0x1f90, 0xc350), '33333');
    assert.equal(socketInode(TABLE, 1, 2), undefined);
  });

  it('tells this process from another one holding the other end', { skip: process.platform !== 'linux' ? 'reads /proc' : false }, async () => {
    const server = net.createServer((s) => s.on('error', () => undefined));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const mine = await new Promise<net.Socket>((r) => {
        const s = net.connect(port, '127.0.0.1', () => r(s));
      });
      const mineLocal = mine.localPort ?? 0;
      assert.equal(await peerIsProcess(process.pid, mineLocal, port), true);
      // Another process connects; its connection is not ours.
      const child = spawn(process.execPath, ['-e', `const s=require('net').connect(${port},'127.0.0.1',()=>console.log(s.localPort));setTimeout(()=>{},5000)`], { stdio: ['ignore', 'pipe', 'inherit'] });
      const theirPort = await new Promise<number>((r) => child.stdout.once('data', (d: Buffer) => r(Number(d.toString().trim()))));
      assert.equal(await peerIsProcess(process.pid, theirPort, port), false);
      assert.equal(await peerIsProcess(child.pid ?? 0, theirPort, port), true);
      assert.equal(await peerIsProcess(child.pid ?? 0, mineLocal, port), false);
      child.kill();
      mine.destroy();
    } finally {
      server.close();
    }
  });
});

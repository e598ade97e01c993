/**
 * Which process is at the other end of a loopback TCP connection: the gate trusts what cloudflared
 * says of a client (`Cf-Connecting-Ip`, `Cf-Ipcountry`) only on connections cloudflared itself
 * opened. Any local process can reach the gate's port and claim any address; only the kernel knows
 * who it is. Linux: the connection's socket inode from `/proc/net/tcp{,6}`, then whether it is
 * among the process's open files (`/proc/<pid>/fd`). Elsewhere: unknown (never trusted).
 */
import { promises as fs } from 'node:fs';

/** The inode of the socket whose local port is `localPort` and remote port `remotePort`, if any. */
export function socketInode(table: string, localPort: number, remotePort: number): string | undefined {
  const want = (p: number): string => p.toString(16).toUpperCase().padStart(4, '0');
  const local = want(localPort);
  const remote = want(remotePort);
  for (const line of table.split('\n')) {
    const f = line.trim().split(/\s+/);
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
    if (f.length < 10 || !f[1] || !f[2]) continue;
    if (f[1].slice(f[1].lastIndexOf(':') + 1) === local && f[2].slice(f[2].lastIndexOf(':') + 1) === remote) return f[9];
  }
  return undefined;
}

/**
 * Does process `pid` hold the client end of a connection to our `serverPort` from its `clientPort`?
 * `undefined` when it cannot be told (not Linux, /proc unreadable); false when it is another process.
 */
export async function peerIsProcess(pid: number, clientPort: number, serverPort: number): Promise<boolean | undefined> {
  if (process.platform !== 'linux' || !Number.isInteger(pid) || pid <= 0) return undefined;
  let inode: string | undefined;
  try {
    for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
      inode = socketInode(await fs.readFile(file, 'utf8').catch(() => ''), clientPort, serverPort);
      if (inode) break;
    }
    if (!inode || inode === '0') return false;
    const want = `socket:[${inode}]`;
    const dir = `/proc/${pid}/fd`;
    const fds = await fs.readdir(dir);
    for (const fd of fds) {
      const link = await fs.readlink(`${dir}/${fd}`).catch(() => '');
      if (link === want) return true;
    }
    return false;
  } catch {
    return undefined;
  }
}

/**
 * Our stdio bridge in its own process, as the peers run in theirs: `startStdioBridge` on the
 * server the bench names (argv: command, args…), and the access gate in front of it with the
 * bridge's token as the route's origin Authorization, as a stdio share runs in the extension host.
 * Sends `{ bridgePort, token, gatePort, secret }` over IPC; exits when the bench goes away.
 */
import { startStdioBridge } from '../../src/bridge/stdioBridge';
import { startAccessGate } from '../../src/core/gate/accessGate';

async function main(): Promise<void> {
  const [command, ...args] = process.argv.slice(2);
  if (!command) throw new Error('usage: bridgeChild <command> [args…]');
  const bridge = await startStdioBridge({ server: { name: 'bench', command, args }, log: () => undefined });
  const token = bridge.accessToken ?? '';
  const gate = await startAccessGate({ origin: { host: '127.0.0.1', port: bridge.port }, originAuthorization: `Bearer ${token}` });
  const secret = gate.routeSecretPath(gate.routeIds()[0] ?? '')?.slice(1) ?? '';
  process.send?.({ bridgePort: bridge.port, token, gatePort: gate.port, secret });
  process.on('disconnect', () => {
    void Promise.allSettled([gate.close(), bridge.close()]).then(() => process.exit(0));
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`bridgeChild: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

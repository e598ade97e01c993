/**
 * Our stdio bridge in its own process, as the peers run in theirs: `startStdioBridge` on the
 * server the bench names (argv: command, args…), and the access gate in front of it handing
 * requests to the bridge in-process, as a stdio share runs in the extension host.
 * Sends `{ bridgePort, token, gatePort, secret }` over IPC; exits when the bench goes away.
 */
import { startStdioBridge } from '../../src/bridge/stdioBridge';
import { startAccessGate } from '../../src/core/gate/accessGate';

async function main(): Promise<void> {
  const [command, ...args] = process.argv.slice(2);
  if (!command) throw new Error('usage: bridgeChild <command> [args…]');
  const bridge = await startStdioBridge({ server: { name: 'bench', command, args }, log: () => undefined });
  const token = bridge.accessToken ?? '';
  // As a stdio share runs: the gate hands requests to the bridge in-process (no loopback hop).
  const gate = await startAccessGate({ origin: { host: '127.0.0.1', port: bridge.port }, handler: (req, res) => bridge.handle(req, res) });
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

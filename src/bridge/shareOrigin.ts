/** A running bridge as a share's origin (core's `ShareOrigin`): the controller closes it with the share. */
import type { ShareOrigin } from '../core/shares/shares';
import { Emitter } from '../core/util/events';
import type { BridgeCheck, StdioBridge } from './stdioBridge';
import type { StdioServerDefinition } from './child';

/** What a stdio share runs, as a key: the same definition twice is the same share. */
export function stdioShareKey(def: StdioServerDefinition): string {
  return JSON.stringify([def.command, def.args, def.cwd ?? null, Object.entries(def.env ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))]);
}

/** A bridge's origin, plus a note the share shows after its detail (e.g. "changed in mcp.json"). */
export interface BridgeOrigin extends ShareOrigin {
  setNote(note: string | undefined): void;
}

export function bridgeOrigin(bridge: StdioBridge, check: BridgeCheck): BridgeOrigin {
  const changed = new Emitter<unknown>();
  let note: string | undefined;
  const sub = bridge.onDidChange((e) => changed.fire(e));
  return {
    kind: 'stdio',
    name: bridge.server.name,
    commandLine: bridge.commandLine,
    key: stdioShareKey(bridge.server),
    ...(bridge.accessToken ? { authorization: `Bearer ${bridge.accessToken}` } : {}),
    // In this process the gate calls the bridge directly; the token guards its loopback port.
    handler: (req, res) => bridge.handle(req, res),
    detail: () => {
      const n = bridge.sessionCount();
      const parts = [check.tools !== undefined ? `${check.tools} tool${check.tools === 1 ? '' : 's'}` : undefined, `${n} session${n === 1 ? '' : 's'}`];
      return [...parts, note].filter(Boolean).join(' · ');
    },
    setNote: (next) => {
      if (next === note) return;
      note = next;
      changed.fire(undefined);
    },
    onDidChange: changed.event,
    close: async () => {
      sub.dispose();
      changed.dispose();
      await bridge.close();
    },
  };
}

/**
 * The access gate, loaded on the first start rather than at activation (it is a quarter of what
 * activation would otherwise parse). In a bundle (dist/extension.js, dist/cli.js) it is
 * dist/gate.js beside it (esbuild.mjs builds it; a computed require, so esbuild leaves the gate out
 * of the bundle that calls this); from source (the tests) it is accessGate.ts itself.
 */
import * as path from 'node:path';
import type * as Gate from './accessGate';

let loaded: typeof Gate | undefined;

export function gateModule(): typeof Gate {
  if (!loaded) {
    const file = path.join(__dirname, __filename.endsWith('.ts') ? 'accessGate' : 'gate.js');
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- the lazy load this file exists for
    loaded = require(file) as typeof Gate;
  }
  return loaded;
}

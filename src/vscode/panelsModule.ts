/**
 * Loads dist/panels.js (the Inspector page, Choose Shared Tools…) on first use: a computed
 * require, so esbuild leaves it out of dist/extension.js.
 */
import * as path from 'node:path';
import type * as vscode from 'vscode';
import type { ShareSnapshot } from '../core/shares/shares';
import type { TunnelController } from '../core/tunnelController';
import type * as Panels from './panels';

export function loadPanels(): typeof Panels {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(path.join(__dirname, 'panels.js')) as typeof Panels;
}

/** The Inspector pages, made on the first Open Inspector. */
export class LazyInspector implements vscode.Disposable {
  private real: Panels.InspectorPanels | undefined;

  constructor(
    private readonly controller: TunnelController,
    private readonly mediaRoot: vscode.Uri,
  ) {}

  open(share: ShareSnapshot): void {
    this.real ??= new (loadPanels().InspectorPanels)(this.controller, this.mediaRoot);
    this.real.open(share);
  }

  dispose(): void {
    this.real?.dispose();
  }
}

/** The "MCP Tunnel" log channel: cloudflared's lines at their own level, and our events. */
import * as vscode from 'vscode';
import type { TunnelLogEntry } from '../core/tunnelController';

export class TunnelLog implements vscode.Disposable {
  readonly channel: vscode.LogOutputChannel;

  constructor() {
    this.channel = vscode.window.createOutputChannel('MCP Tunnel', { log: true });
  }

  /** Writes one entry; cloudflared's lines are prefixed so they stand apart from ours. */
  write(e: Pick<TunnelLogEntry, 'level' | 'message'> & { source?: TunnelLogEntry['source'] }): void {
    const msg = e.source === 'cloudflared' ? `[cloudflared] ${e.message}` : e.message;
    switch (e.level) {
      case 'trace':
        this.channel.trace(msg);
        break;
      case 'debug':
        this.channel.debug(msg);
        break;
      case 'info':
        this.channel.info(msg);
        break;
      case 'warn':
        this.channel.warn(msg);
        break;
      default:
        this.channel.error(msg);
    }
  }

  info(msg: string): void {
    this.channel.info(msg);
  }
  warn(msg: string): void {
    this.channel.warn(msg);
  }

  show(): void {
    this.channel.show(true);
  }

  dispose(): void {
    this.channel.dispose();
  }
}

/**
 * A TunnelController that also counts the listeners of its public events, for leak checks. The
 * count is a test's concern, so it lives here and not on the production class.
 */
import { TunnelController } from '../../src/core/tunnelController';

export class ObservedTunnelController extends TunnelController {
  /** Listener counts of the public events. */
  get listenerCounts(): { state: number; metrics: number; log: number; restart: number } {
    return { state: this._onDidChangeState.listenerCount, metrics: this._onDidChangeMetrics.listenerCount, log: this._onDidLog.listenerCount, restart: this._onDidRestart.listenerCount };
  }
}

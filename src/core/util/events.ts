/**
 * Emitter / Event / Disposable with the same shape as vscode's, so core objects plug straight
 * into UI code (`context.subscriptions.push(controller.onDidChangeState(...))`) without the
 * core importing `vscode`.
 */

export interface Disposable {
  dispose(): void;
}

/** A function to subscribe to an event; returns the subscription. */
export type Event<T> = (listener: (e: T) => unknown, thisArgs?: unknown, disposables?: Disposable[]) => Disposable;

export class Emitter<T> implements Disposable {
  private listeners = new Set<(e: T) => unknown>();
  private disposed = false;

  /** Listeners that threw are reported here instead of breaking the emitter's other listeners. */
  constructor(private readonly onListenerError: (err: unknown) => void = (err) => console.error(err)) {}

  readonly event: Event<T> = (listener, thisArgs, disposables) => {
    if (this.disposed) return { dispose() {} };
    const bound = thisArgs === undefined ? listener : listener.bind(thisArgs);
    this.listeners.add(bound);
    const sub = { dispose: () => void this.listeners.delete(bound) };
    disposables?.push(sub);
    return sub;
  };

  fire(e: T): void {
    for (const l of [...this.listeners]) {
      try {
        l(e);
      } catch (err) {
        this.onListenerError(err);
      }
    }
  }

  /** Number of live listeners (used by leak checks). */
  get listenerCount(): number {
    return this.listeners.size;
  }

  dispose(): void {
    this.disposed = true;
    this.listeners.clear();
  }
}

/** Collects disposables and disposes them in reverse order. */
export class DisposableStore implements Disposable {
  private items: Disposable[] = [];
  add<T extends Disposable>(d: T): T {
    this.items.push(d);
    return d;
  }
  dispose(): void {
    const items = this.items.reverse();
    this.items = [];
    for (const d of items) {
      try {
        d.dispose();
      } catch {
        // keep disposing the rest
      }
    }
  }
}

/**
 * A minimal stand-in for the `vscode` module, enough to `activate()` the bundled extension in a
 * plain Node process: `installVscodeStub()` makes `require('vscode')` return it (through
 * Module._resolveFilename and the require cache). Anything the stub does not implement resolves
 * to a no-op and is recorded in `missing`, so a new API call in the extension does not break the
 * benchmark (it shows up in its notes instead).
 */
import Module from 'node:module';
import * as path from 'node:path';

type Listener<T> = (e: T) => unknown;

export interface StubDisposable {
  dispose(): void;
}

class Disposable implements StubDisposable {
  constructor(private readonly fn: () => void = () => undefined) {}
  static from(...ds: StubDisposable[]): Disposable {
    return new Disposable(() => ds.forEach((d) => d.dispose()));
  }
  dispose(): void {
    this.fn();
  }
}

class EventEmitter<T> {
  private listeners = new Set<Listener<T>>();
  readonly event = (listener: Listener<T>, thisArg?: unknown, disposables?: StubDisposable[]): StubDisposable => {
    const bound: Listener<T> = (e) => listener.call(thisArg, e);
    this.listeners.add(bound);
    const d = new Disposable(() => this.listeners.delete(bound));
    disposables?.push(d);
    return d;
  };
  fire(e: T): void {
    for (const l of [...this.listeners]) l(e);
  }
  dispose(): void {
    this.listeners.clear();
  }
}

class ThemeColor {
  constructor(readonly id: string) {}
}
class ThemeIcon {
  constructor(
    readonly id: string,
    readonly color?: ThemeColor,
  ) {}
}
class MarkdownString {
  isTrusted: unknown = false;
  supportThemeIcons: boolean;
  constructor(
    public value = '',
    supportThemeIcons = false,
  ) {
    this.supportThemeIcons = supportThemeIcons;
  }
  appendMarkdown(s: string): this {
    this.value += s;
    return this;
  }
  appendText(s: string): this {
    this.value += s;
    return this;
  }
  appendCodeblock(s: string): this {
    this.value += `\n\`\`\`\n${s}\n\`\`\`\n`;
    return this;
  }
}
class TreeItem {
  constructor(
    readonly label: unknown,
    readonly collapsibleState?: number,
  ) {}
}
class Uri {
  private constructor(
    readonly scheme: string,
    readonly fsPath: string,
    private readonly text: string,
  ) {}
  static parse(s: string): Uri {
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(s)?.[1] ?? 'file';
    return new Uri(scheme, scheme === 'file' ? s.replace(/^file:\/\//, '') : '', s);
  }
  static file(p: string): Uri {
    return new Uri('file', p, `file://${p}`);
  }
  static joinPath(base: Uri, ...parts: string[]): Uri {
    return Uri.file(path.join(base.fsPath, ...parts));
  }
  toString(): string {
    return this.text;
  }
}
class McpHttpServerDefinition {
  constructor(
    readonly label: string,
    readonly uri: Uri,
    readonly headers: Record<string, string> = {},
    readonly version?: string,
  ) {}
}

export interface StubOptions {
  /** Settings, keyed by full name (`mcpTunnel.defaultPort`). */
  settings?: Record<string, unknown>;
}

export interface VscodeStub {
  /** The module object `require('vscode')` returns. */
  api: Record<string, unknown>;
  /** `namespace.member` names the extension used that the stub does not implement. */
  missing: Set<string>;
  /** Commands registered through `commands.registerCommand`. */
  commands: Map<string, (...args: unknown[]) => unknown>;
}

const PASSTHROUGH = new Set<string | symbol>(['then', '__esModule', 'default', 'constructor', 'prototype', 'toJSON', 'inspect', 'length', 'name']);

/** Something callable and constructible that returns a disposable: the stand-in for unknown API. */
function anything(): unknown {
  return function Anything() {
    return { dispose: () => undefined };
  };
}

/** A prototype that answers every unknown property with `anything()` and records its name. */
function fallback(ns: string, missing: Set<string>): object {
  return new Proxy(Object.create(null) as object, {
    get(_t, prop) {
      if (typeof prop === 'symbol' || PASSTHROUGH.has(prop)) return undefined;
      if (prop in Object.prototype) return (Object.prototype as Record<string, unknown>)[prop];
      missing.add(`${ns}.${prop}`);
      return anything();
    },
  });
}

function withFallback<T extends object>(ns: string, obj: T, missing: Set<string>): T {
  Object.setPrototypeOf(obj, fallback(ns, missing));
  return obj;
}

export function createVscodeStub(options: StubOptions = {}): VscodeStub {
  const missing = new Set<string>();
  const commands = new Map<string, (...args: unknown[]) => unknown>();
  const settings = options.settings ?? {};
  const configEvent = new EventEmitter<unknown>();
  const noop = (): void => undefined;
  const resolved = <T>(v?: T): Promise<T | undefined> => Promise.resolve(v);

  const outputChannel = (name: string) =>
    withFallback(
      'OutputChannel',
      {
        name,
        append: noop,
        appendLine: noop,
        replace: noop,
        clear: noop,
        show: noop,
        hide: noop,
        dispose: noop,
        trace: noop,
        debug: noop,
        info: noop,
        warn: noop,
        error: noop,
        logLevel: 2,
        onDidChangeLogLevel: new EventEmitter<number>().event,
      },
      missing,
    );

  const window = withFallback(
    'window',
    {
      createOutputChannel: outputChannel,
      createStatusBarItem: () =>
        withFallback(
          'StatusBarItem',
          { text: '', tooltip: undefined, command: undefined, name: '', backgroundColor: undefined, accessibilityInformation: undefined, show: noop, hide: noop, dispose: noop },
          missing,
        ),
      createTreeView: () =>
        withFallback(
          'TreeView',
          { visible: false, onDidChangeVisibility: new EventEmitter<unknown>().event, onDidChangeSelection: new EventEmitter<unknown>().event, reveal: () => resolved(), dispose: noop, message: undefined, title: undefined, description: undefined, badge: undefined },
          missing,
        ),
      showWarningMessage: () => resolved(),
      showInformationMessage: () => resolved(),
      showErrorMessage: () => resolved(),
      showQuickPick: () => resolved(),
      showInputBox: () => resolved(),
      showOpenDialog: () => resolved(),
      setStatusBarMessage: () => new Disposable(),
      withProgress: <R>(_o: unknown, task: (p: { report: () => void }, t: unknown) => Promise<R>) => task({ report: noop }, { isCancellationRequested: false, onCancellationRequested: new EventEmitter<unknown>().event }),
      registerTreeDataProvider: () => new Disposable(),
    },
    missing,
  );

  const api: Record<string, unknown> = withFallback(
    'vscode',
    {
      window,
      // English only, as VS Code does with no language pack: `{0}` and `{name}` filled in.
      l10n: withFallback(
        'l10n',
        {
          t: (first: string | { message: string; args?: unknown[] | Record<string, unknown> }, ...rest: unknown[]): string => {
            const message = typeof first === 'string' ? first : first.message;
            const given = typeof first === 'string' ? (rest.length === 1 && typeof rest[0] === 'object' && rest[0] !== null ? rest[0] : rest) : (first.args ?? []);
            const args = given as Record<string, unknown>;
            return message.replace(/\{([^}]+)\}/g, (m, k: string) => (k in args ? String(args[k]) : m));
          },
          bundle: undefined,
          uri: undefined,
        },
        missing,
      ),
      commands: withFallback(
        'commands',
        {
          registerCommand: (id: string, fn: (...args: unknown[]) => unknown) => {
            commands.set(id, fn);
            return new Disposable(() => commands.delete(id));
          },
          executeCommand: (id: string, ...args: unknown[]) => resolved(commands.get(id)?.(...args)),
        },
        missing,
      ),
      workspace: withFallback(
        'workspace',
        {
          getConfiguration: (section?: string) =>
            withFallback(
              'WorkspaceConfiguration',
              {
                get: <T>(key: string, def?: T): T | undefined => {
                  const full = section ? `${section}.${key}` : key;
                  return full in settings ? (settings[full] as T) : def;
                },
                has: (key: string) => (section ? `${section}.${key}` : key) in settings,
                inspect: () => undefined,
                update: () => resolved(),
              },
              missing,
            ),
          onDidChangeConfiguration: configEvent.event,
          createFileSystemWatcher: () => {
            const never = new EventEmitter<unknown>().event;
            return { onDidChange: never, onDidCreate: never, onDidDelete: never, dispose: noop };
          },
          isTrusted: true,
          workspaceFolders: undefined,
        },
        missing,
      ),
      lm: withFallback('lm', { registerMcpServerDefinitionProvider: () => new Disposable() }, missing),
      env: withFallback(
        'env',
        {
          clipboard: { writeText: () => resolved(), readText: () => resolved('') },
          openExternal: () => resolved(true),
          asExternalUri: (u: unknown) => resolved(u),
          appName: 'bench',
          uiKind: 1,
          remoteName: undefined,
        },
        missing,
      ),
      EventEmitter,
      Disposable,
      ThemeColor,
      ThemeIcon,
      MarkdownString,
      TreeItem,
      Uri,
      McpHttpServerDefinition,
      RelativePattern: class {
        constructor(
          readonly base: unknown,
          readonly pattern: string,
        ) {}
      },
      TreeItemCollapsibleState: { None: 0, Collapsed: 1, Expanded: 2 },
      StatusBarAlignment: { Left: 1, Right: 2 },
      ProgressLocation: { SourceControl: 1, Window: 10, Notification: 15 },
      ConfigurationTarget: { Global: 1, Workspace: 2, WorkspaceFolder: 3 },
      ViewColumn: { Active: -1, Beside: -2, One: 1 },
      LogLevel: { Off: 0, Trace: 1, Debug: 2, Info: 3, Warning: 4, Error: 5 },
    },
    missing,
  );
  return { api, missing, commands };
}

/** Where the stub lives in the require cache (not a real file). */
export const STUB_ID = path.join(path.sep, '__bench__', 'vscode-stub.js');

interface ModuleInternals {
  _resolveFilename(request: string, parent: unknown, ...rest: unknown[]): string;
}

/** Makes `require('vscode')` return `stub.api` from now on in this process. */
export function installVscodeStub(stub: VscodeStub): void {
  const M = Module as unknown as ModuleInternals & typeof Module;
  const original = M._resolveFilename.bind(M);
  M._resolveFilename = (request: string, parent: unknown, ...rest: unknown[]) => (request === 'vscode' ? STUB_ID : original(request, parent, ...rest));
  const m = new Module(STUB_ID);
  m.filename = STUB_ID;
  m.loaded = true;
  m.exports = stub.api;
  require.cache[STUB_ID] = m;
}

/** A minimal ExtensionContext. */
export function fakeContext(storageDir: string, version: string, missing: Set<string>): Record<string, unknown> {
  const memento = () => ({ get: <T>(_k: string, d?: T) => d, update: () => Promise.resolve(), keys: () => [] as string[], setKeysForSync: () => undefined });
  return withFallback(
    'ExtensionContext',
    {
      subscriptions: [] as StubDisposable[],
      globalStorageUri: Uri.file(storageDir),
      storageUri: Uri.file(storageDir),
      logUri: Uri.file(storageDir),
      extensionUri: Uri.file(storageDir),
      extensionPath: storageDir,
      globalState: memento(),
      workspaceState: memento(),
      secrets: { get: () => Promise.resolve(undefined), store: () => Promise.resolve(), delete: () => Promise.resolve(), onDidChange: new EventEmitter<unknown>().event },
      extension: { id: 'mcp-tunnel.mcp-tunnel', packageJSON: { version } },
      extensionMode: 1,
      asAbsolutePath: (p: string) => path.join(storageDir, p),
    },
    missing,
  );
}

/**
 * The servers a user already configured for VS Code: `.vscode/mcp.json`, the user's `mcp.json`
 * and the legacy `mcp` setting (`{ servers: { name: { type, command, args, env, cwd } | { type,
 * url, headers } }, inputs: [...] }`, JSON with comments). Pure: the VS Code room reads the files
 * and asks for `${input:…}` values; this parses, lists and substitutes.
 */
import { parse as parseJsonc, printParseErrorCode, type ParseError } from 'jsonc-parser';
import type { StdioServerDefinition } from './child';

export interface ConfiguredServer {
  name: string;
  /** Where it was found (`Workspace (.vscode/mcp.json)`, `User mcp.json`, `Settings (mcp)`). */
  source: string;
  kind: 'stdio' | 'http';
  /** stdio: as written (variables not substituted yet). */
  command?: string;
  args?: string[];
  env?: Record<string, string>;
  cwd?: string;
  /** http / sse. */
  url?: string;
  /** http / sse: the headers the client sends (variables not substituted yet). */
  headers?: Record<string, string>;
}

export interface McpInput {
  id: string;
  description?: string;
  password?: boolean;
}

export interface McpConfig {
  servers: ConfiguredServer[];
  inputs: McpInput[];
  /** Entries skipped, each with why. */
  problems: string[];
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const strings = (v: unknown): string[] | undefined => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : undefined);

/** Parses one mcp.json (or the `mcp` setting's object). Bad entries are skipped with a reason. */
export function readMcpConfig(textOrObject: unknown, source: string): McpConfig {
  const problems: string[] = [];
  let root: unknown = textOrObject;
  if (typeof textOrObject === 'string') {
    const errors: ParseError[] = [];
    root = parseJsonc(textOrObject, errors, { allowTrailingComma: true });
    const e = errors[0];
    if (e) problems.push(`${source}: not valid JSON (${printParseErrorCode(e.error)} at offset ${e.offset}); fix the file to see its servers.`);
  }
  const servers: ConfiguredServer[] = [];
  const inputs: McpInput[] = [];
  if (!isRecord(root)) return { servers, inputs, problems };
  const all = isRecord(root['servers']) ? root['servers'] : {};
  for (const [name, raw] of Object.entries(all)) {
    if (!isRecord(raw)) {
      problems.push(`${source}: server "${name}" is not an object.`);
      continue;
    }
    const type = typeof raw['type'] === 'string' ? raw['type'] : typeof raw['command'] === 'string' ? 'stdio' : typeof raw['url'] === 'string' ? 'http' : undefined;
    if (type === 'stdio') {
      if (typeof raw['command'] !== 'string' || raw['command'] === '') {
        problems.push(`${source}: server "${name}" has no command.`);
        continue;
      }
      const env = isRecord(raw['env']) ? Object.fromEntries(Object.entries(raw['env']).filter((e): e is [string, string] => typeof e[1] === 'string' || typeof e[1] === 'number').map(([k, v]) => [k, String(v)])) : undefined;
      servers.push({
        name,
        source,
        kind: 'stdio',
        command: raw['command'],
        args: strings(raw['args']) ?? [],
        ...(env ? { env } : {}),
        ...(typeof raw['cwd'] === 'string' ? { cwd: raw['cwd'] } : {}),
      });
    } else if ((type === 'http' || type === 'sse') && typeof raw['url'] === 'string') {
      const headers = isRecord(raw['headers']) ? Object.fromEntries(Object.entries(raw['headers']).filter((e): e is [string, string] => typeof e[1] === 'string')) : {};
      servers.push({ name, source, kind: 'http', url: raw['url'], ...(Object.keys(headers).length ? { headers } : {}) });
    } else {
      problems.push(`${source}: server "${name}" is neither stdio (command) nor http (url).`);
    }
  }
  if (Array.isArray(root['inputs'])) {
    for (const i of root['inputs']) {
      if (isRecord(i) && typeof i['id'] === 'string') {
        inputs.push({ id: i['id'], ...(typeof i['description'] === 'string' ? { description: i['description'] } : {}), ...(i['password'] === true ? { password: true } : {}) });
      }
    }
  }
  return { servers, inputs, problems };
}

export interface VariableContext {
  /** Undefined: no folder is open. */
  workspaceFolder?: string | undefined;
  userHome: string;
  env: NodeJS.ProcessEnv;
  /** Asks the user for `${input:id}` (undefined: cancelled). Called once per id. */
  input: (id: string) => Promise<string | undefined>;
}

/** Thrown when a value cannot be substituted (cancelled input, no workspace folder, unknown variable). */
export class VariableError extends Error {}

const VARIABLE = /\$\{([^}]+)\}/g;

/**
 * The server's definition with `${workspaceFolder}`, `${userHome}`, `${env:NAME}` and
 * `${input:id}` substituted (each input asked once). Input values are never logged here.
 */
export async function resolveServer(server: ConfiguredServer, ctx: VariableContext): Promise<StdioServerDefinition> {
  if (server.kind !== 'stdio' || !server.command) throw new VariableError(`"${server.name}" is not a stdio server.`);
  const sub = substituter(server, ctx);
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(server.env ?? {})) env[k] = await sub(v);
  const args: string[] = [];
  for (const a of server.args ?? []) args.push(await sub(a));
  return {
    name: server.name,
    command: await sub(server.command),
    args,
    ...(server.env ? { env } : {}),
    ...(server.cwd ? { cwd: await sub(server.cwd) } : ctx.workspaceFolder ? { cwd: ctx.workspaceFolder } : {}),
  };
}

/** The named headers of an http server, variables substituted as for `resolveServer`. */
export async function resolveHeaders(server: ConfiguredServer, names: readonly string[], ctx: VariableContext): Promise<Record<string, string>> {
  const sub = substituter(server, ctx);
  const out: Record<string, string> = {};
  for (const name of names) {
    const v = server.headers?.[name];
    if (v !== undefined) out[name] = await sub(v);
  }
  return out;
}

function substituter(server: ConfiguredServer, ctx: VariableContext): (value: string) => Promise<string> {
  const answers = new Map<string, string>();
  return async (value: string): Promise<string> => {
    let out = '';
    let last = 0;
    for (const m of value.matchAll(VARIABLE)) {
      out += value.slice(last, m.index);
      last = (m.index ?? 0) + m[0].length;
      const v = m[1] ?? '';
      if (v === 'workspaceFolder') {
        if (!ctx.workspaceFolder) throw new VariableError(`"${server.name}" uses \${workspaceFolder}, but no folder is open.`);
        out += ctx.workspaceFolder;
      } else if (v === 'userHome') out += ctx.userHome;
      else if (v.startsWith('env:')) out += ctx.env[v.slice(4)] ?? '';
      else if (v.startsWith('input:')) {
        const id = v.slice(6);
        let answer = answers.get(id);
        if (answer === undefined) {
          answer = await ctx.input(id);
          if (answer === undefined) throw new VariableError(`Sharing "${server.name}" was cancelled: it needs the input "${id}".`);
          answers.set(id, answer);
        }
        out += answer;
      } else throw new VariableError(`"${server.name}" uses \${${v}}, which MCP Tunnel cannot fill in (it knows workspaceFolder, userHome, env:NAME and input:id).`);
    }
    return out + value.slice(last);
  };
}

/**
 * A typed command line split into words, as a POSIX shell would for plain words and quotes
 * (`'…'`, `"…"`, backslash escapes); no expansion, no pipes. Throws on an open quote.
 */
export function splitCommandLine(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < line.length; i++) {
    const ch = line.charAt(i);
    if (quote === "'") {
      if (ch === "'") quote = undefined;
      else word += ch;
    } else if (quote === '"') {
      if (ch === '"') quote = undefined;
      else if (ch === '\\' && i + 1 < line.length && '"\\$`'.includes(line.charAt(i + 1))) word += line.charAt(++i);
      else word += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (ch === '\\' && i + 1 < line.length) {
      word += line.charAt(++i);
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += ch;
      inWord = true;
    }
  }
  if (quote) throw new Error(`The command line has an unclosed ${quote} quote.`);
  if (inWord) words.push(word);
  return words;
}

/**
 * Names and command lines for stdio servers: plain string work, apart from `child.ts` so that a
 * caller needing only these (the CLI) does not bundle the MCP SDK's stdio framing and its zod
 * schemas.
 */
import type { StdioServerDefinition } from './child';

/**
 * A name for a stdio server: the package (`server-filesystem` for `npx -y
 * @modelcontextprotocol/server-filesystem /tmp`, or a script under node_modules), else the
 * script's or the command's base name.
 */
export function defaultServerName(cmd: string, args: string[]): string {
  const baseOf = (p: string): string => p.split(/[\\/]/).pop() ?? p;
  const base = baseOf(cmd);
  if (!/^(npx|uvx|bunx|pnpm|npm|yarn|docker|node|python3?|deno|bun|uv)(\.exe|\.cmd)?$/i.test(base)) return base;
  const arg = args.find((a) => !a.startsWith('-') && !['run', 'dlx', 'exec', 'x', '--'].includes(a));
  if (!arg) return base;
  const inModules = /node_modules[\\/]((?:@[^\\/]+[\\/])?[^\\/]+)/.exec(arg);
  if (inModules?.[1]) return baseOf(inModules[1]);
  if (!/[\\/]/.test(arg) || arg.startsWith('@')) return baseOf(arg).replace(/@[^@]*$/, '') || base;
  // A script path: its file name, or its folder's for index.js-like names under dist/, build/…
  const parts = arg.split(/[\\/]/).filter(Boolean);
  let name = (parts.pop() ?? '').replace(/\.(m?js|cjs|py|ts)$/, '');
  while (/^(index|main|server|cli|dist|build|lib|src|bin|out)$/.test(name) && parts.length > 0) name = parts.pop() ?? name;
  return name || base;
}

/** `npx -y @scope/pkg /tmp`: a command line for messages (arguments with spaces quoted). */
export function commandLine(def: Pick<StdioServerDefinition, 'command' | 'args'>): string {
  return [def.command, ...def.args].map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

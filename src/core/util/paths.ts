/** Per-user folder for run records when no host (VS Code) gives us one: the CLI. */
import * as os from 'node:os';
import * as path from 'node:path';

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string {
  if (env['MCP_TUNNEL_STATE_DIR']) return env['MCP_TUNNEL_STATE_DIR'];
  const home = env['HOME'] ?? os.homedir();
  if (platform === 'win32') return path.join(env['LOCALAPPDATA'] ?? path.join(home, 'AppData', 'Local'), 'mcp-tunnel');
  if (platform === 'darwin') return path.join(home, 'Library', 'Application Support', 'mcp-tunnel');
  return path.join(env['XDG_STATE_HOME'] ?? path.join(home, '.local', 'state'), 'mcp-tunnel');
}

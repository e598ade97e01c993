/** Reading the user's mcp.json (JSON with comments), substituting variables, splitting a typed command line. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readMcpConfig, resolveHeaders, resolveServer, splitCommandLine, VariableError } from '../../src/bridge/mcpConfig';

const MCP_JSON = `{
  // the user's servers
  "inputs": [{ "type": "promptString", "id": "api-key", "description": "API key", "password": true }],
  "servers": {
    "fs": { "type": "stdio", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "\${workspaceFolder}", "\${userHome}/notes"] },
    "weather": { "command": "node", "args": ["build/index.js"], "env": { "API_KEY": "\${input:api-key}", "REGION": "\${env:REGION}", "AGAIN": "\${input:api-key}" } },
    "remote": { "type": "http", "url": "http://localhost:3000/mcp", "headers": { "X-Api-Key": "\${input:api-key}", "X-Team": "docs", "bad": 1 } },
    "broken": { "type": "stdio" },
    "odd": 42,
  },
}`;

describe('mcp.json', () => {
  it('lists stdio and http servers (comments and trailing commas allowed), skipping bad entries with a reason', () => {
    const c = readMcpConfig(MCP_JSON, 'Workspace');
    assert.deepEqual(c.servers.map((s) => [s.name, s.kind]), [['fs', 'stdio'], ['weather', 'stdio'], ['remote', 'http']]);
    assert.equal(c.servers[2]?.url, 'http://localhost:3000/mcp');
    assert.deepEqual(c.inputs, [{ id: 'api-key', description: 'API key', password: true }]);
    assert.equal(c.problems.length, 2);
    assert.match(c.problems.join('\n'), /"broken" has no command/);
    assert.match(readMcpConfig('{ "servers": ', 'User mcp.json').problems[0] ?? '', /User mcp.json: not valid JSON/);
  });

  it('substitutes workspaceFolder, userHome, env:NAME and input:id (asked once per id); cwd defaults to the folder', async () => {
    const [first, second] = readMcpConfig(MCP_JSON, 'Workspace').servers;
    assert.ok(first && second, 'two servers');
    const asked: string[] = [];
    const ctx = { workspaceFolder: '/w', userHome: '/home/me', env: { REGION: 'eu' }, input: (id: string) => {
      asked.push(id);
      return Promise.resolve<string | undefined>('k-123');
    } };
    const fs = await resolveServer(first, ctx);
    assert.deepEqual(fs, { name: 'fs', command: 'npx', args: ['-y', '@modelcontextprotocol/server-filesystem', '/w', '/home/me/notes'], cwd: '/w' });
    const weather = await resolveServer(second, ctx);
    assert.deepEqual(weather.env, { API_KEY: 'k-123', REGION: 'eu', AGAIN: 'k-123' });
    assert.deepEqual(asked, ['api-key']);
    await assert.rejects(resolveServer(second, { ...ctx, input: () => Promise.resolve(undefined) }), (e: unknown) => e instanceof VariableError && /cancelled.*api-key/.test(e.message));
    await assert.rejects(resolveServer(first, { ...ctx, workspaceFolder: undefined }), /no folder is open/);
    await assert.rejects(resolveServer({ ...first, args: ['${command:x}'] }, ctx), /cannot fill in/);
  });

  it("an http server's headers: read as written (strings only), resolved only for the names asked", async () => {
    const remote = readMcpConfig(MCP_JSON, 'Workspace').servers.find((s) => s.name === 'remote');
    assert.ok(remote);
    assert.deepEqual(remote.headers, { 'X-Api-Key': '${input:api-key}', 'X-Team': 'docs' });
    const asked: string[] = [];
    const ctx = { userHome: '/home/me', env: {}, input: (id: string) => (asked.push(id), Promise.resolve('k-1')) };
    assert.deepEqual(await resolveHeaders(remote, ['X-Team'], ctx), { 'X-Team': 'docs' });
    assert.deepEqual(asked, [], 'an input only for a header that is sent');
    assert.deepEqual(await resolveHeaders(remote, ['X-Api-Key', 'X-Team', 'Missing'], ctx), { 'X-Api-Key': 'k-1', 'X-Team': 'docs' });
    assert.deepEqual(asked, ['api-key']);
  });

  it('splits a typed command line like a shell (quotes, escapes), and refuses an open quote', () => {
    assert.deepEqual(splitCommandLine(`npx -y @modelcontextprotocol/server-filesystem "/tmp/my files" 'a b' c\\ d`), ['npx', '-y', '@modelcontextprotocol/server-filesystem', '/tmp/my files', 'a b', 'c d']);
    assert.deepEqual(splitCommandLine('  uvx   mcp-server-fetch  '), ['uvx', 'mcp-server-fetch']);
    assert.deepEqual(splitCommandLine(`node -e "console.log(\\"x\\")" ''`), ['node', '-e', 'console.log("x")', '']);
    assert.throws(() => splitCommandLine('npx "unclosed'), /unclosed " quote/);
  });
});

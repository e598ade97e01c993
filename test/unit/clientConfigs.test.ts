import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CLIENT_KINDS, clientConfig, mcpUrlFor, shareInputOf } from '../../src/core/shares/clientConfigs';

const open = { url: 'https://a-b-c-d.trycloudflare.com', path: '/mcp' };
const secret = { ...open, secret: 's3cr3t-XYZ_abc' };

describe('client configs', () => {
  it('without a secret every client gets the plain MCP URL and no header', () => {
    for (const k of CLIENT_KINDS) {
      const c = clientConfig(k, open);
      assert.ok(c.text.includes('https://a-b-c-d.trycloudflare.com/mcp'), `${k}: ${c.text}`);
      assert.ok(!c.text.includes('Authorization'), k);
    }
  });

  it('with a secret: a header where the client supports headers, the secret path otherwise', () => {
    const vs = JSON.parse(clientConfig('vscode', secret).text) as { servers: Record<string, { type: string; url: string; headers: Record<string, string> }> };
    assert.deepEqual(vs.servers['tunneled-mcp'], { type: 'http', url: 'https://a-b-c-d.trycloudflare.com/mcp', headers: { Authorization: 'Bearer s3cr3t-XYZ_abc' } });
    assert.equal(clientConfig('claude-code', secret).text, "claude mcp add --transport http tunneled-mcp https://a-b-c-d.trycloudflare.com/mcp --header 'Authorization: Bearer s3cr3t-XYZ_abc'");
    const cur = JSON.parse(clientConfig('cursor', secret).text) as { mcpServers: Record<string, { url: string; headers: Record<string, string> }> };
    assert.equal(cur.mcpServers['tunneled-mcp']?.headers['Authorization'], 'Bearer s3cr3t-XYZ_abc');
    const desk = JSON.parse(clientConfig('claude-desktop', secret).text) as { mcpServers: Record<string, { args: string[] }> };
    assert.deepEqual(desk.mcpServers['tunneled-mcp']?.args, ['-y', 'mcp-remote', 'https://a-b-c-d.trycloudflare.com/s3cr3t-XYZ_abc/mcp']);
    assert.equal(clientConfig('url', secret).text, 'https://a-b-c-d.trycloudflare.com/s3cr3t-XYZ_abc/mcp');
  });

  it('joins without doubled slashes and quotes names for the shell', () => {
    assert.equal(mcpUrlFor({ url: 'https://x.trycloudflare.com/', path: 'mcp' }, false), 'https://x.trycloudflare.com/mcp');
    assert.match(clientConfig('claude-code', { ...open, name: "it's mine" }).text, /'it'\\''s mine'/);
  });

  it('shareInputOf: the secret comes from the state\'s share path (the gate), none when open or stopped', () => {
    const base = { target: { host: 'localhost', port: 8002, path: '/mcp' }, startedAt: 0, pid: 1, url: open.url, connectedAt: 0, connections: [] };
    assert.deepEqual(shareInputOf({ status: 'active', ...base }), open);
    assert.deepEqual(shareInputOf({ status: 'active', ...base, sharePath: '/s3cr3t-XYZ_abc' }), secret);
    assert.equal(shareInputOf({ status: 'stopped' }), undefined);
  });
});

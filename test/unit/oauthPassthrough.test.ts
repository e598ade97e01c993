/**
 * Servers that bring their own OAuth, behind the tunnel: the MCP SDK's own authorization server
 * and bearer auth on one origin, the SDK client's own OAuth flow (discovery, registration,
 * authorization, token, a tools/call with the token) through the fake cloudflared and the gate,
 * and a second share without OAuth on the same tunnel at the same time.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError, type OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';
import { TunnelController, type TunnelLogEntry } from '../../src/core/tunnelController';
import { get, startStrictOrigin, type Origin } from '../support/origins';
import { startOAuthOrigin, type OAuthOrigin } from '../fixtures/oauthOrigin';
import { fakeRunOptions } from '../support/fakeRuns';
import { publicPath, readFakeState, waitFor } from '../support/proc';

/** The SDK client's storage, in memory; the "browser" is the test, which follows the authorization URL itself. */
class MemoryOAuthProvider implements OAuthClientProvider {
  readonly redirectUrl = 'http://localhost:9/callback';
  readonly clientMetadata: OAuthClientMetadata = {
    client_name: 'tunnel test client',
    redirect_uris: [this.redirectUrl],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
  };
  info: OAuthClientInformationMixed | undefined;
  saved: OAuthTokens | undefined;
  verifier = '';
  authorizationUrl: URL | undefined;
  clientInformation(): OAuthClientInformationMixed | undefined {
    return this.info;
  }
  saveClientInformation(info: OAuthClientInformationMixed): void {
    this.info = info;
  }
  tokens(): OAuthTokens | undefined {
    return this.saved;
  }
  saveTokens(tokens: OAuthTokens): void {
    this.saved = tokens;
  }
  redirectToAuthorization(url: URL): void {
    this.authorizationUrl = url;
  }
  saveCodeVerifier(v: string): void {
    this.verifier = v;
  }
  codeVerifier(): string {
    return this.verifier;
  }
}

let work: string;
let oauth: OAuthOrigin;
let plain: Origin;
let controller: TunnelController;
const logs: TunnelLogEntry[] = [];

describe('an MCP server with its own OAuth behind the tunnel (SDK server auth, SDK client flow, fake cloudflared)', { concurrency: false }, () => {
  let publicPort = 0;
  let publicOrigin = '';
  let oauthMcpUrl = '';
  let secret = '';
  /** Every URL the client fetched, in public form. */
  const fetched: string[] = [];
  /** `https://<host>/…` goes to the fake's loopback public port, as the internet would reach the edge. */
  const viaTunnel: FetchLike = (url, init) => {
    const u = String(url);
    fetched.push(u);
    assert.ok(u.startsWith(publicOrigin), `the client only ever talks to the public URL (got ${u.replace(secret, '<secret>')})`);
    return fetch(`http://127.0.0.1:${publicPort}${u.slice(publicOrigin.length)}`, init);
  };

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'mcpt-oauth-'));
    oauth = await startOAuthOrigin();
    plain = await startStrictOrigin();
    controller = new TunnelController({ ...fakeRunOptions(work, 0, { FAKE_CLOUDFLARED_SCENARIO: 'ok' }), metricsIntervalMs: 0 });
    controller.onDidLog((e) => logs.push(e));
    assert.equal((await controller.start({ host: 'localhost', port: oauth.port, path: '/mcp' })).status, 'active');
    assert.equal((await controller.start({ host: 'localhost', port: plain.port, path: '/mcp' })).status, 'active');
    const fake = await waitFor(() => readFakeState(work, controller.snapshot().pid!), 3000, 'fake state');
    publicPort = fake.publicPort;
    const share = controller.listShares().find((s) => s.local_url.endsWith(`:${oauth.port}`));
    assert.ok(share?.mcp_url);
    oauthMcpUrl = share.mcp_url;
    publicOrigin = new URL(oauthMcpUrl).origin;
    secret = publicPath(oauthMcpUrl).split('/')[1] ?? '';
    assert.match(secret, /^[A-Za-z0-9_-]{32,}$/);
  });
  after(async () => {
    await controller.shutdown(3000);
    await oauth.close();
    await plain.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('the 401 names the public protected-resource document; the documents name the public URL', async () => {
    const first = await viaTunnel(oauthMcpUrl, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{}' });
    assert.equal(first.status, 401, 'the origin asks for its own token');
    const challenge = first.headers.get('www-authenticate') ?? '';
    assert.ok(challenge.includes(`resource_metadata="${publicOrigin}/.well-known/oauth-protected-resource/${secret}/mcp"`), `rewritten: ${challenge.replace(secret, '<secret>')}`);
    assert.ok(!challenge.includes('localhost'), 'nothing local is left in it');

    const prm = (await (await viaTunnel(`${publicOrigin}/.well-known/oauth-protected-resource/${secret}/mcp`)).json()) as { resource: string; authorization_servers: string[] };
    assert.equal(prm.resource, oauthMcpUrl, 'the resource is the public MCP URL');
    assert.deepEqual(prm.authorization_servers, [`${publicOrigin}/${secret}/`]);

    const asm = (await (await viaTunnel(`${publicOrigin}/.well-known/oauth-authorization-server/${secret}`)).json()) as Record<string, string>;
    assert.equal(asm['issuer'], `${publicOrigin}/${secret}/`);
    assert.equal(asm['authorization_endpoint'], `${publicOrigin}/${secret}/authorize`);
    assert.equal(asm['token_endpoint'], `${publicOrigin}/${secret}/token`);
    assert.equal(asm['registration_endpoint'], `${publicOrigin}/${secret}/register`);
    // The same documents by the secret path reach the same origin paths.
    const viaPath = (await (await viaTunnel(`${publicOrigin}/${secret}/.well-known/oauth-authorization-server`)).json()) as Record<string, string>;
    assert.equal(viaPath['issuer'], asm['issuer']);
  });

  it('the root forms of a secret share are refused: they would publish its secret-bearing URL', async () => {
    const before = oauth.paths.length;
    for (const p of ['/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-protected-resource', '/.well-known/oauth-authorization-server']) {
      assert.equal((await get(publicPort, p)).status, 401, p);
    }
    assert.equal(oauth.paths.length, before, 'the origin saw none of them');
  });

  it('the SDK client completes its OAuth flow through the tunnel and calls a tool with its token; the token reaches the origin untouched', async () => {
    const provider = new MemoryOAuthProvider();
    const client1 = new Client({ name: 'oauth-test', version: '1.0.0' });
    await assert.rejects(client1.connect(new StreamableHTTPClientTransport(new URL(oauthMcpUrl), { authProvider: provider, fetch: viaTunnel })), UnauthorizedError);
    const authUrl = provider.authorizationUrl;
    assert.ok(authUrl, 'the client was sent to authorize');
    assert.equal(`${authUrl.origin}${authUrl.pathname}`, `${publicOrigin}/${secret}/authorize`);
    assert.equal(authUrl.searchParams.get('resource'), oauthMcpUrl, 'the token is asked for the public resource');
    assert.ok(provider.info?.client_id, 'registered itself (dynamic client registration through the tunnel)');
    // The "browser": the demo provider approves at once and redirects to the client's callback.
    const approved = await viaTunnel(authUrl.href, { redirect: 'manual' });
    assert.equal(approved.status, 302);
    const location = new URL(approved.headers.get('location') ?? '');
    assert.equal(`${location.origin}${location.pathname}`, provider.redirectUrl, 'a redirect to the client is left alone');
    const code = location.searchParams.get('code');
    assert.ok(code);
    const transport = new StreamableHTTPClientTransport(new URL(oauthMcpUrl), { authProvider: provider, fetch: viaTunnel });
    await transport.finishAuth(code);
    const token = provider.saved?.access_token;
    assert.ok(token, 'got a token');

    const client = new Client({ name: 'oauth-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(oauthMcpUrl), { authProvider: provider, fetch: viaTunnel }));
    const result = await client.callTool({ name: 'whoami', arguments: {} });
    assert.deepEqual(result.content, [{ type: 'text', text: `client ${provider.info.client_id}` }]);
    await client.close();

    assert.ok(oauth.authorizations.includes(`Bearer ${token}`), 'the origin saw the token as the client sent it');
    assert.ok(!oauth.authorizations.some((a) => a?.includes(secret)), 'never the share secret');
    assert.ok(fetched.some((u) => u.startsWith(`${publicOrigin}/.well-known/oauth-protected-resource/${secret}/`)), 'discovery went through the well-known form');
    assert.ok(!logs.some((l) => l.message.includes(secret) || l.message.includes(token)), 'neither secret nor token reached the log');
  });

  it("the origin's token is not a share secret: without the secret path it is refused by the tunnel", async () => {
    const before = oauth.paths.length;
    const r = await viaTunnel(`${publicOrigin}/mcp`, { method: 'POST', headers: { authorization: 'Bearer some-oauth-token-of-the-origin-1234567890', 'content-type': 'application/json' }, body: '{}' });
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate') ?? '', /realm="MCP Tunnel"/);
    assert.equal(oauth.paths.length, before);
  });

  it('the share without OAuth works beside it, with its own secret only', async () => {
    const share = controller.listShares().find((s) => s.local_url.endsWith(`:${plain.port}`));
    assert.ok(share?.mcp_url);
    assert.equal((await get(publicPort, publicPath(share.mcp_url))).status, 200);
    const otherSecret = publicPath(share.mcp_url).split('/')[1];
    assert.equal((await get(publicPort, `/.well-known/oauth-protected-resource/${otherSecret}/mcp`)).status, 200, 'its discovery URL reaches its own origin (which has none to give: the strict origin answers everything)');
    assert.equal((await get(publicPort, `/${secret}/mcp`.replace(secret, otherSecret + 'x'))).status, 401);
  });
});

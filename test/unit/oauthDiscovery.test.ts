/**
 * OAuth discovery behind the gate, piece by piece: where a discovery request goes, how what an
 * origin says about itself is mapped onto the public URL, and what is never routed (a revoked
 * secret in the well-known form, the root forms of a secret share).
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { discoveryForm, discoveryOriginPath, isDiscoveryPath, mapUrl, originBasesOf, publicPrefixOf, rewriteChallenge, rewriteDocument, type PublicMapping } from '../../src/core/gate/oauthDiscovery';
import { closers, logLines, newGate, secretOf, secretsSeen } from '../support/gates';

const S = 'S3cr3tS3cr3tS3cr3tS3cr3tS3cr3t00';
const m: PublicMapping = { originBases: originBasesOf('localhost', 8002, 'localhost:8002'), publicOrigin: 'https://words.trycloudflare.com', prefix: `/${S}` };
const PUB = 'https://words.trycloudflare.com';

describe('oauthDiscovery (pure)', () => {
  it('finds the secret after the well-known prefix, and the origin path of the document', () => {
    assert.deepEqual(discoveryForm(`/.well-known/oauth-protected-resource/${S}/mcp`), { doc: '/.well-known/oauth-protected-resource', inner: `/${S}/mcp` });
    assert.deepEqual(discoveryForm(`/.well-known/openid-configuration/${S}`), { doc: '/.well-known/openid-configuration', inner: `/${S}` });
    assert.equal(discoveryForm('/.well-known/oauth-protected-resource'), undefined);
    assert.equal(discoveryForm('/.well-known/oauth-protected-resourcex/a'), undefined);
    assert.equal(discoveryForm(`/${S}/mcp`), undefined);
    assert.equal(discoveryOriginPath('/.well-known/oauth-authorization-server', '/'), '/.well-known/oauth-authorization-server');
    assert.equal(discoveryOriginPath('/.well-known/oauth-protected-resource', '/mcp'), '/.well-known/oauth-protected-resource/mcp');
    assert.equal(discoveryOriginPath('/.well-known/oauth-authorization-server', '/?x=1'), '/.well-known/oauth-authorization-server?x=1');
    assert.ok(isDiscoveryPath('/.well-known/oauth-authorization-server'));
    assert.ok(isDiscoveryPath('/.well-known/oauth-protected-resource/mcp'));
    assert.ok(!isDiscoveryPath('/.well-known/oauth-authorization-serverx'));
    assert.ok(!isDiscoveryPath('/mcp'));
  });

  it('the public prefix of a request: its secret, its open name, or nothing', () => {
    assert.equal(publicPrefixOf(`/${S}/mcp?a=1`, '/mcp?a=1'), `/${S}`);
    assert.equal(publicPrefixOf(`/${S}`, '/'), `/${S}`);
    assert.equal(publicPrefixOf(`/${S}?q`, '/?q'), `/${S}`);
    assert.equal(publicPrefixOf('/mcp', '/mcp'), '');
    assert.equal(publicPrefixOf('/.well-known/oauth-protected-resource/mcp', '/.well-known/oauth-protected-resource/mcp'), '', 'a root form');
    assert.equal(publicPrefixOf(`/.well-known/oauth-protected-resource/${S}/mcp`, '/.well-known/oauth-protected-resource/mcp'), `/${S}`);
    assert.equal(publicPrefixOf(`/.well-known/oauth-authorization-server/${S}`, '/.well-known/oauth-authorization-server'), `/${S}`);
  });

  it('maps URLs naming the origin (any loopback name, its port) and leaves others alone', () => {
    assert.equal(mapUrl('http://localhost:8002/mcp', m), `${PUB}/${S}/mcp`);
    assert.equal(mapUrl('http://127.0.0.1:8002/', m), `${PUB}/${S}/`);
    assert.equal(mapUrl('http://LOCALHOST:8002', m), `${PUB}/${S}`, 'exactly as it was written, no slash added');
    assert.equal(mapUrl('http://localhost:8002/.well-known/oauth-protected-resource/mcp', m), `${PUB}/.well-known/oauth-protected-resource/${S}/mcp`, 'RFC 9728 form');
    assert.equal(mapUrl('http://localhost:9000/token', m), undefined, 'another port is another server');
    assert.equal(mapUrl('https://auth.example.com/authorize', m), undefined, 'a real authorization server');
    assert.equal(mapUrl('/login?next=1', m), `/${S}/login?next=1`, 'an absolute path keeps the secret');
    assert.equal(mapUrl(`/${S}/login`, m), undefined, 'already has it');
    assert.equal(mapUrl('//evil.example/x', m), undefined);
    // The origin saw the public Host (X-Forwarded-Host) and named it without the secret, or as http.
    assert.equal(mapUrl(`${PUB}/mcp`, m), `${PUB}/${S}/mcp`);
    assert.equal(mapUrl(`http://words.trycloudflare.com/${S}/mcp`, m), `${PUB}/${S}/mcp`);
    assert.equal(mapUrl(`${PUB}/${S}/mcp`, m), undefined);
    assert.equal(mapUrl(`${PUB}/.well-known/oauth-protected-resource/${S}/mcp`, m), undefined);
    const open: PublicMapping = { ...m, prefix: '' };
    assert.equal(mapUrl('http://localhost:8002/mcp', open), `${PUB}/mcp`);
    assert.equal(mapUrl('/login', open), undefined);
  });

  it('rewrites documents and challenges, and names the local servers it cannot map', () => {
    const r = rewriteDocument({ issuer: 'http://localhost:8002/', token_endpoint: 'http://localhost:9000/token', jwks_uri: 'https://auth.example.com/jwks', scopes_supported: ['mcp:tools'], nested: { x: ['http://localhost:8002/a'] } }, m);
    assert.equal(r.changed, true);
    assert.deepEqual(r.doc, { issuer: `${PUB}/${S}/`, token_endpoint: 'http://localhost:9000/token', jwks_uri: 'https://auth.example.com/jwks', scopes_supported: ['mcp:tools'], nested: { x: [`${PUB}/${S}/a`] } });
    assert.deepEqual(r.unmapped, ['http://localhost:9000']);
    assert.equal(rewriteDocument({ a: 1 }, m).changed, false);
    assert.equal(
      rewriteChallenge('Bearer error="invalid_token", error_description="Missing http://x", resource_metadata="http://localhost:8002/.well-known/oauth-protected-resource/mcp"', m),
      `Bearer error="invalid_token", error_description="Missing http://x", resource_metadata="${PUB}/.well-known/oauth-protected-resource/${S}/mcp"`,
    );
  });
});

interface SelfNamingOrigin {
  port: number;
  paths: string[];
}

/** An origin that names itself `http://localhost:<port>` in discovery documents, challenges and redirects. */
async function selfNamingOrigin(extra: Record<string, unknown> = {}): Promise<SelfNamingOrigin> {
  const o: SelfNamingOrigin = { port: 0, paths: [] };
  const server = http.createServer((req, res) => {
    o.paths.push(req.url ?? '');
    const base = `http://localhost:${o.port}`;
    if (req.url?.startsWith('/.well-known/oauth-protected-resource')) {
      const body = JSON.stringify({ resource: `${base}/mcp`, authorization_servers: [`${base}/`] });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    } else if (req.url?.startsWith('/.well-known/oauth-authorization-server')) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issuer: `${base}/`, token_endpoint: `${base}/token`, ...extra }));
    } else if (req.url === '/login') {
      res.writeHead(302, { location: '/consent' }).end();
    } else {
      res.writeHead(401, { 'www-authenticate': `Bearer resource_metadata="${base}/.well-known/oauth-protected-resource/mcp"` }).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  o.port = (server.address() as AddressInfo).port;
  closers.push(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return o;
}

function request(port: number, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, headers: { host: 'words.trycloudflare.com', ...headers }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the gate routes and rewrites OAuth discovery', () => {
  it('a lone open share answers the root forms, naming its public URL', async () => {
    const o = await selfNamingOrigin();
    const gate = await newGate({ origin: { host: 'localhost', port: o.port }, mode: 'open' });
    const prm = await request(gate.port, '/.well-known/oauth-protected-resource/mcp');
    assert.equal(prm.status, 200);
    assert.deepEqual(JSON.parse(prm.body), { resource: `${PUB}/mcp`, authorization_servers: [`${PUB}/`] });
    assert.equal(prm.headers['content-length'], String(Buffer.byteLength(prm.body)), 'the length follows the new body');
    assert.deepEqual(JSON.parse((await request(gate.port, '/.well-known/oauth-authorization-server')).body), { issuer: `${PUB}/`, token_endpoint: `${PUB}/token` });
    const challenge = await request(gate.port, '/mcp');
    assert.equal(challenge.headers['www-authenticate'], `Bearer resource_metadata="${PUB}/.well-known/oauth-protected-resource/mcp"`);
    const head = await request(gate.port, '/.well-known/oauth-protected-resource/mcp', {}, 'HEAD');
    assert.equal(head.status, 200, 'HEAD passes without a body to read');
  });

  it('a secret share: the well-known form with its secret, a relative redirect keeps the secret, an unmappable server is named on the share', async () => {
    const o = await selfNamingOrigin({ registration_endpoint: 'http://127.0.0.1:1/register' });
    const gate = await newGate({ origin: { host: 'localhost', port: o.port }, routeId: 'a' });
    const secret = secretOf(gate);
    const asm = await request(gate.port, `/.well-known/oauth-authorization-server/${secret}`);
    assert.equal(asm.status, 200);
    assert.deepEqual(JSON.parse(asm.body), { issuer: `${PUB}/${secret}/`, token_endpoint: `${PUB}/${secret}/token`, registration_endpoint: 'http://127.0.0.1:1/register' });
    assert.equal(o.paths.at(-1), '/.well-known/oauth-authorization-server');
    const warning = gate.routeStats('a')?.warning ?? '';
    assert.match(warning, /http:\/\/127\.0\.0\.1:1, which the tunnel does not carry/);
    assert.ok(logLines.some((l) => l.startsWith('warn') && l.includes('http://127.0.0.1:1')), 'and the log says it');
    const login = await request(gate.port, `/${secret}/login`);
    assert.equal(login.headers.location, `/${secret}/consent`);
    const before = o.paths.length;
    assert.equal((await request(gate.port, '/.well-known/oauth-authorization-server')).status, 401, 'no root form for a secret share');
    assert.equal((await request(gate.port, '/.well-known/oauth-protected-resource/nosuchsecretnosuchsecret/mcp')).status, 401);
    assert.equal(o.paths.length, before);
  });

  it('a rotated secret in the well-known form is refused, and never reaches an open share beside it', async () => {
    const secretOrigin = await selfNamingOrigin();
    const openOrigin = await selfNamingOrigin();
    const gate = await newGate({ origin: { host: 'localhost', port: secretOrigin.port }, routeId: 's' });
    gate.addRoute({ id: 'o', origin: { host: 'localhost', port: openOrigin.port }, access: 'open' });
    const old = secretOf(gate);
    secretsSeen.add(gate.rotateRoute('s') ?? '');
    const r = await request(gate.port, `/.well-known/oauth-protected-resource/${old}/mcp`);
    assert.equal(r.status, 401);
    assert.ok(!openOrigin.paths.some((p) => p.includes(old)), 'the open origin never saw the old secret');
    assert.equal((await request(gate.port, '/.well-known/oauth-protected-resource/mcp')).status, 200, 'the open share itself still answers its root form');
  });
});

// A real OpenID provider for the gateway's tests: panva's oidc-provider
// (a certified implementation, from npm) over HTTPS, with clients that get
// JWT access tokens by client credentials.
//
//   node provider.mjs CONFIG.json
//
// CONFIG: { "port", "issuer" (what its documents and tokens name), "cert",
// "key" (PEM files), "kids" (its signing keys' ids: a P-256 key is made
// for each at start, so a restart with other kids is a key rotation),
// "clients":
// [{ "client_id", "client_secret", "scope", "claims": {extra claims of its
// access tokens} }], "resource" (the audience of its access tokens) }.
// Prints "ready" once it listens.
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const byClient = Object.fromEntries(config.clients.map((c) => [c.client_id, c]));
const jwks = {
  keys: config.kids.map((kid) => ({
    ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }),
    kid,
    alg: 'ES256',
    use: 'sig',
  })),
};
const scopes = [...new Set(config.clients.flatMap((c) => c.scope.split(' ')))];

const provider = new Provider(config.issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: c.scope,
    id_token_signed_response_alg: 'ES256',
  })),
  jwks,
  scopes,
  cookies: { keys: ['narrowgate-test-only'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => config.resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: scopes.join(' '),
        audience: config.resource,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 600,
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
  extraTokenClaims: (ctx, token) => byClient[token.clientId]?.claims,
});
provider.proxy = false;

https
  .createServer({ cert: readFileSync(config.cert), key: readFileSync(config.key) }, provider.callback())
  .listen(config.port, '127.0.0.1', () => console.log('ready'));

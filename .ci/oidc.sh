# Source this: the real OpenID provider the OIDC tests start (oidc-provider
# from npm, run by Debian's Node.js), installed under tests/oidc/ from its
# lock file when missing or changed; exports NG_OIDC_PROVIDER (the script)
# and NG_NODE. Idempotent.
if ! command -v node >/dev/null; then
  echo "== installing Node.js for the OpenID provider"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; }
fi
oidc_want=$(sha256sum tests/oidc/package-lock.json | cut -d' ' -f1)
if [ "$(cat tests/oidc/node_modules/.narrowgate-lock 2>/dev/null)" != "$oidc_want" ]; then
  echo "== installing the OpenID provider (tests/oidc)"
  ok=0
  for attempt in 1 2 3; do
    if (cd tests/oidc && npm ci --no-audit --no-fund --silent); then ok=1; break; fi
    echo "npm ci failed (attempt $attempt); retrying" >&2
    sleep 5
  done
  [ "$ok" = 1 ] || { echo "the OpenID provider could not be installed" >&2; return 1; }
  echo "$oidc_want" > tests/oidc/node_modules/.narrowgate-lock
fi
NG_OIDC_PROVIDER="$(pwd)/tests/oidc/provider.mjs"
NG_NODE="$(command -v node)"
export NG_OIDC_PROVIDER NG_NODE

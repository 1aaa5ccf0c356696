#!/usr/bin/env bash
# The system libraries librdkafka is built against (rdkafka's ssl, gssapi and curl features):
# OpenSSL (TLS, SCRAM, OIDC), Cyrus SASL (GSSAPI/Kerberos) and libcurl (OIDC token endpoints),
# with pkg-config to find them. Installed from Debian's packages when missing (as root, or with
# sudo); the Dockerfile's build stage installs the same. Sourced by the scripts that run cargo.
ensure_build_deps() {
  local missing=() pc
  for pc in openssl:libssl-dev libcurl:libcurl4-openssl-dev libsasl2:libsasl2-dev; do
    pkg-config --exists "${pc%%:*}" 2>/dev/null || missing+=("${pc##*:}")
  done
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  [ ${#missing[@]} = 0 ] && return 0
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  printf '[build] installing %s (librdkafka links them)\n' "${missing[*]}" >&2
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/tmp/kps-apt.log 2>&1 \
    || { tail -n 20 /tmp/kps-apt.log >&2; printf '[build] could not install %s: install them and run again\n' "${missing[*]}" >&2; return 1; }
}

#!/usr/bin/env bash
# Idempotent setup of a fresh Debian machine for tests and the local stack.
#
#   scripts/bootstrap.sh [venv|postfix|swaks|browser|java|kafka|registry|kustomize|image]...   (default: all, in that order)
#
#   venv     .venv with python3 >= 3.11; `pip install -e '.[dev,bench,parquet]'` only when
#            pyproject.toml changed since the last successful install
#   postfix  Postfix's smtp-sink/smtp-source (load generator and fake MX) and, as root, the MTA that
#            bench/vs_postfix.py runs as private instances, with Cyrus SASL's PLAIN/LOGIN for the relay test
#            that authenticates to the gateway; the system daemon is never left running
#   swaks    the SMTP test client (with Net::SSLeay for --tls) the gateway's end-to-end tests drive
#   browser  Debian's chromium and chromium-driver, the headless browser tests/e2e/test_dashboard.py drives with
#            Selenium (the dashboard at /ui); without root the test skips (CI runs as root and installs them)
#   java     a JRE and JDK (17) and Maven, to fetch and run the Kafka broker and build the schema registry
#   kafka    deploy/kafka/broker.sh fetch (broker jars from Maven Central)
#   registry deploy/schema-registry/registry.sh fetch: Apicurio Registry built from Maven Central jars (once, a
#            few minutes; cached), the Confluent-compatible schema registry of the kafka.schema_registry tests
#   kustomize  kustomize (deploy/kubernetes/kustomize.version) built with `go install` from the Go module proxy,
#            once, into the cache; scripts/check_deploy.sh renders the Kubernetes overlays with it
#   image    buildah and debootstrap (as root), with which scripts/check_image.sh builds deploy/Containerfile
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${MAILSTREAM_CACHE:-$HOME/.cache/mailstream}
say() { echo "bootstrap: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

is_root() { [[ $(id -u) == 0 ]]; }

APT_UPDATED=
apt_install() {
  is_root || die "need root to apt-get install $* (install them, or re-run as root)"
  if [[ -z $APT_UPDATED ]]; then say "apt-get update"; apt-get update -qq; APT_UPDATED=1; fi
  say "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

step_venv() {
  if [[ ! -x .venv/bin/python ]]; then
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
      die "python3 >= 3.11 required, found $(python3 --version 2>&1)"
    say "creating .venv with $(python3 --version)"
    # Debian's python3 lacks venv/ensurepip until python3-venv is installed.
    python3 -m venv .venv 2>/dev/null || { rm -rf .venv; apt_install python3-venv; python3 -m venv .venv; }
  fi
  local stamp=.venv/.pyproject.sha256 want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then
    say "venv up to date with pyproject.toml"
    return
  fi
  say "pip install -e '.[dev,bench,parquet]' (pyproject.toml changed; log in .venv/pip-install.log)"
  # The build backend is chatty even with -q: keep its output for failures only.
  { .venv/bin/python -m pip install -q --upgrade pip &&
    .venv/bin/python -m pip install -q -e '.[dev,bench,parquet]'; } >.venv/pip-install.log 2>&1 ||
    { tail -n 30 .venv/pip-install.log >&2; die "pip install failed"; }
  echo "$want" >"$stamp" # written last: a failed install is retried next time
}

# Without root: unpack the .deb (no postinst, so no MTA configured) and wrap the
# binaries, which find their libpostfix-*.so through LD_LIBRARY_PATH.
postfix_unpacked() {
  local dir=$CACHE/postfix tmp
  tmp=$(mktemp -d)
  say "no root: unpacking the postfix .deb into $dir"
  (cd "$tmp" && apt-get download -qq postfix) || die "apt-get download postfix failed"
  rm -rf "$dir" && mkdir -p "$dir/bin"
  dpkg-deb -x "$tmp"/postfix_*.deb "$dir/root"
  rm -rf "$tmp"
  for tool in smtp-sink smtp-source; do
    printf '#!/bin/sh\nLD_LIBRARY_PATH="%s/root/usr/lib/postfix" exec "%s/root/usr/sbin/%s" "$@"\n' \
      "$dir" "$dir" "$tool" >"$dir/bin/$tool"
    chmod +x "$dir/bin/$tool"
  done
  say "smtp-sink/smtp-source wrappers in $dir/bin"
}

postfix_mta_present() {
  [[ -x /usr/sbin/postfix && -x /usr/sbin/smtp-sink && -x /usr/sbin/smtp-source ]] &&
    getent passwd postfix >/dev/null && getent group postdrop >/dev/null
}

step_postfix() {
  if ! is_root; then
    if [[ -x /usr/sbin/smtp-sink || -x $CACHE/postfix/bin/smtp-sink ]]; then say "smtp-sink present"; else postfix_unpacked; fi
    say "no root: bench/vs_postfix.py will skip its Postfix runs (Postfix's master must start as root)"
    return
  fi
  if postfix_mta_present; then
    say "postfix present (smtp-sink, smtp-source, and the MTA bench/vs_postfix.py runs privately)"
  else
    # "No configuration": the package (binaries, the postfix user, the postdrop group) without a live MTA.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt_install postfix
    say "installed postfix: /usr/sbin/smtp-sink, /usr/sbin/smtp-source and the MTA (bench/vs_postfix.py)"
  fi
  # Postfix's smtp client finds SASL mechanisms as Cyrus plugins; a Recommends, so not there by default.
  if dpkg -s libsasl2-modules >/dev/null 2>&1; then say "libsasl2-modules present"; else apt_install libsasl2-modules; fi
  # The bench starts private instances (postfix -c DIR, loopback only); never leave the system MTA on :25.
  if postfix status >/dev/null 2>&1; then say "stopping the postfix daemon"; postfix stop >/dev/null 2>&1 || true; fi
}

# Without root: unpack swaks (a perl script) and Net::SSLeay, which it needs for TLS, and run it with that
# module on perl's path. It still needs the system's perl (Debian package perl, not just perl-base).
swaks_unpacked() {
  local dir=$CACHE/swaks tmp lib
  tmp=$(mktemp -d)
  say "no root: unpacking the swaks and libnet-ssleay-perl .debs into $dir"
  (cd "$tmp" && apt-get download -qq swaks libnet-ssleay-perl) || die "apt-get download swaks failed"
  rm -rf "$dir" && mkdir -p "$dir/bin"
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
  rm -rf "$tmp"
  lib=$(dirname "$(dirname "$(find "$dir/root" -path '*/Net/SSLeay.pm' | head -n 1)")")
  printf '#!/bin/sh\nPERL5LIB="%s${PERL5LIB:+:$PERL5LIB}" exec perl "%s/root/usr/bin/swaks" "$@"\n' \
    "$lib" "$dir" >"$dir/bin/swaks"
  chmod +x "$dir/bin/swaks"
  say "swaks wrapper in $dir/bin"
}

step_swaks() {
  if command -v swaks >/dev/null && swaks --support 2>&1 | grep -q '=== TLS supported'; then
    say "swaks present (with TLS)"
  elif is_root; then
    apt_install swaks libnet-ssleay-perl
  elif [[ -x $CACHE/swaks/bin/swaks ]]; then
    say "swaks present ($CACHE/swaks/bin)"
  else
    swaks_unpacked
  fi
}

step_browser() {
  if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then say "chromium and chromedriver present"; return; fi
  if ! is_root; then say "no root: tests/e2e/test_dashboard.py will skip (install chromium chromium-driver)"; return; fi
  apt_install chromium chromium-driver
}

step_java() {
  local missing=()
  if ! java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])'; then missing+=(openjdk-17-jre-headless); fi
  command -v mvn >/dev/null || missing+=(maven)
  command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless) # registry.sh fetch compiles one class
  if ((${#missing[@]})); then apt_install "${missing[@]}"; else say "java, javac and maven present"; fi
}

step_kafka() { bash deploy/kafka/broker.sh fetch; }
step_registry() { bash deploy/schema-registry/registry.sh fetch; }

step_kustomize() {
  local version bin log
  version=$(<deploy/kubernetes/kustomize.version)
  bin=$CACHE/kustomize/$version/kustomize
  if [[ -x $bin ]]; then say "kustomize $version present ($bin)"; return; fi
  command -v go >/dev/null || apt_install golang-go
  # kustomize's go.mod wants Go >= 1.22; an older go command cannot fetch a newer toolchain itself.
  go version | grep -qE 'go1\.(2[2-9]|[3-9][0-9])' ||
    die "kustomize $version needs Go >= 1.22, found $(go version) (install a newer Go, or set KUSTOMIZE for check_deploy.sh)"
  log=$(mktemp)
  say "go install sigs.k8s.io/kustomize/kustomize/v5@$version (once, about a minute; cached in $bin)"
  GOBIN=$(dirname "$bin") go install "sigs.k8s.io/kustomize/kustomize/v5@$version" >"$log" 2>&1 ||
    { tail -n 20 "$log" >&2; rm -f "$log"; die "go install kustomize $version failed"; }
  rm -f "$log"
}

step_image() {
  if ! is_root; then say "no root: scripts/check_image.sh will skip the image build"; return; fi
  local missing=()
  command -v buildah >/dev/null || missing+=(buildah)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  if ((${#missing[@]})); then apt_install "${missing[@]}"; else say "buildah and debootstrap present"; fi
}

steps=("$@")
((${#steps[@]})) || steps=(venv postfix swaks browser java kafka registry kustomize image)
for step in "${steps[@]}"; do
  declare -F "step_$step" >/dev/null || die "unknown step '$step' (venv|postfix|swaks|browser|java|kafka|registry|kustomize|image)"
  "step_$step"
done

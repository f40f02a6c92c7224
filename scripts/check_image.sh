#!/usr/bin/env bash
# Build deploy/Containerfile with buildah (daemonless, from Debian's packages) and run the image's commands.
#
#   scripts/check_image.sh           (as root; scripts/test.sh runs it, after scripts/bootstrap.sh image)
#
# buildah runs the build's steps with --isolation chroot: the default OCI isolation needs user namespaces,
# which a build inside a container (CI's) does not get. When the base image cannot be pulled (no container
# registry reachable, as on CI's machines), the base is made from Debian's packages instead: debootstrap of
# bookworm with python3 (3.11, as python:3.11-slim), cached as a tarball, with this machine's CA bundle so that
# pip inside the build trusts what the machine trusts. Nothing is left behind: buildah's storage for the run is
# a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${MAILSTREAM_CACHE:-$HOME/.cache/mailstream}
say() { echo "check_image: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

if [[ $(id -u) != 0 ]]; then
  [[ ${CI:-} == true ]] && die "needs root (buildah's chroot isolation, debootstrap)"
  say "not root: skipped (buildah's chroot isolation and debootstrap need root)"
  exit 0
fi
command -v buildah >/dev/null || die "no buildah (scripts/bootstrap.sh image)"

work=$(mktemp -d "${TMPDIR:-/tmp}/mailstream-image.XXXXXX")
trap 'buildah "${store[@]}" rm --all >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
store=(--root "$work/storage" --runroot "$work/run" --storage-driver vfs)
b() { buildah "${store[@]}" "$@"; }

base=python:3.11-slim-bookworm
if ! timeout 60 buildah "${store[@]}" pull -q "docker.io/library/$base" >/dev/null 2>"$work/pull.log"; then
  say "cannot pull $base ($(tail -n 1 "$work/pull.log" | cut -c1-120)); using a base made from Debian's packages"
  tarball=$CACHE/image/debian-bookworm-python3.tar
  if [[ ! -f $tarball ]]; then
    command -v debootstrap >/dev/null || die "no debootstrap (scripts/bootstrap.sh image)"
    say "debootstrap bookworm with python3 (once, about a minute; cached in $tarball)"
    mkdir -p "$(dirname "$tarball")"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm \
      "$work/rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 ||
      { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
    tar -C "$work/rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
    rm -rf "$work/rootfs"
  fi
  container=$(b from scratch)
  b add "$container" "$tarball" / >/dev/null
  # What this machine trusts (a proxy's CA, where there is one); venv pips read PIP_CERT, not the system store.
  b copy "$container" /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt >/dev/null
  b config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt "$container"
  b commit -q --rm "$container" localhost/mailstream-base >/dev/null
  base=localhost/mailstream-base
fi

say "buildah build -f deploy/Containerfile (from $base; log in the temp dir, shown on failure)"
b build --isolation chroot --pull=never --build-arg "PYTHON=$base" -f deploy/Containerfile -t localhost/mailstream:check \
  . >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; die "the image did not build"; }

config=$(b inspect --format '{{.OCIv1.Config.User}} {{.OCIv1.Config.Entrypoint}}' localhost/mailstream:check)
[[ $config == '10001:10001 [mailstream]' ]] || die "the image's user and entrypoint are '$config'"
container=$(b from --pull=never localhost/mailstream:check)
# buildah run does not apply the entrypoint: each command is what a pod's args give it.
for service in ingest scheduler delivery gateway capture-sink; do
  out=$(b run --isolation chroot --user 10001:10001 "$container" -- mailstream "$service" --help) ||
    die "mailstream $service --help failed in the image"
  [[ $out == usage:* ]] || die "mailstream $service --help printed no usage in the image"
done
b run --isolation chroot --user 10001:10001 "$container" -- python -I -c '
from mailstream.events import fixtures, serde
assert all(serde.decode(serde.encode(r), type(r)) == r for r in fixtures.ALL)' ||
  die "the image's package failed its round trip"
say "ok: the image builds, runs as uid 10001 and every service's command starts"

#!/usr/bin/env bash
# Deployment files, checked offline: every kustomize overlay under deploy/kubernetes/overlays rendered and
# validated against the Kubernetes schemas (kubernetes-validate, strict: an unknown field fails), and the
# compose files against the Compose specification's schema (check-jsonschema's copy). Strimzi's kinds have no
# schema there; tests/unit/test_deploy_manifests.py checks them, and what the manifests say, on the rendering.
#
#   scripts/check_deploy.sh          (after scripts/bootstrap.sh venv kustomize; scripts/test.sh runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "check_deploy: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# The version scripts/bootstrap.sh installs (go install, cached), unless KUSTOMIZE names another binary.
kustomize=${KUSTOMIZE:-${MAILSTREAM_CACHE:-$HOME/.cache/mailstream}/kustomize/$(<deploy/kubernetes/kustomize.version)/kustomize}
[[ -x $kustomize ]] || die "no kustomize at $kustomize (run scripts/bootstrap.sh kustomize)"
work=$(mktemp -d "${TMPDIR:-/tmp}/mailstream-deploy.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The oldest Kubernetes the manifests are meant for (deploy/kubernetes/README.md) and the newest schemas shipped.
versions=(1.30.0 1.37.0)
for overlay in deploy/kubernetes/overlays/*/; do
  name=$(basename "$overlay")
  "$kustomize" build "$overlay" >"$work/$name.yaml" || die "kustomize build $overlay failed"
  for version in "${versions[@]}"; do
    # Unknown kinds (Strimzi's) only warn, hidden here; everything else must pass.
    .venv/bin/kubernetes-validate --strict --quiet --no-warn -k "$version" "$work/$name.yaml" ||
      die "$overlay does not validate against Kubernetes $version"
  done
  say "$name: $(grep -c '^kind:' "$work/$name.yaml") resources valid against Kubernetes ${versions[*]}"
done
.venv/bin/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml deploy/docker-compose.yml >&2 ||
  die "a compose file does not follow the Compose specification"
say "ok"

#!/usr/bin/env bash
# The package as a user gets it: build the sdist and, from it, the wheel (python -m build), install
# the wheel with its dependencies into a new virtualenv, and from a directory outside the checkout
# run every entry point's --help and an Avro encode/decode of every record type.
#
#   scripts/check_wheel.sh        (after scripts/bootstrap.sh venv; scripts/test.sh runs it)
#
# Dependencies come from PyPI through pip's usual cache, so a second run downloads nothing.
# Nothing is left behind: the build, the virtualenv and the run directory live in one temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
say() { echo "check_wheel: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/mailstream-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Building from the sdist (build's default) also proves the sdist carries every file the wheel needs,
# and the wheel is built in a fresh copy: no stale build/ directory can add files that are gone.
# --no-isolation: the backend is .venv's setuptools (a dev dependency), so nothing is downloaded.
say "python -m build (log in the temp dir, shown on failure)"
.venv/bin/python -m build --no-isolation --outdir "$work/dist" . >"$work/build.log" 2>&1 ||
  { tail -n 30 "$work/build.log" >&2; die "building the wheel failed"; }
wheels=("$work"/dist/mailstream-*.whl)
((${#wheels[@]} == 1)) && [[ -f ${wheels[0]} ]] || die "expected one wheel in $work/dist"
wheel=${wheels[0]}

# The same interpreter as .venv, without any of its packages; .venv's pip installs into it
# (--python), which saves seeding the new venv with a pip of its own.
python=$(.venv/bin/python -c 'import sys; print(sys._base_executable)')
say "installing $(basename "$wheel") and its dependencies into a new virtualenv"
"$python" -m venv --without-pip "$work/venv"
.venv/bin/python -m pip --python "$work/venv/bin/python" install -q --no-compile --disable-pip-version-check \
  "$wheel" >"$work/pip.log" 2>&1 ||
  { tail -n 30 "$work/pip.log" >&2; die "installing the wheel failed"; }

# Outside the checkout, with nothing pointing back into it: only the installed package can be imported.
mkdir "$work/run"
cd "$work/run"
run() { env -u PYTHONPATH -u MAILSTREAM_SCHEMAS_DIR "$@"; }
for service in ingest scheduler delivery gateway webhooks; do
  out=$(run "$work/venv/bin/python" -I -m "mailstream.$service" --help) || die "python -m mailstream.$service --help failed"
  [[ $out == usage:* ]] || die "python -m mailstream.$service --help printed no usage"
  out=$(run "$work/venv/bin/mailstream" "$service" --help) || die "mailstream $service --help failed"
  [[ $out == usage:* ]] || die "mailstream $service --help printed no usage"
done
# The image's commands (deploy/Containerfile: ENTRYPOINT mailstream) include the compose stack's capture sink.
out=$(run "$work/venv/bin/mailstream" capture-sink --help) || die "mailstream capture-sink --help failed"
[[ $out == usage:* ]] || die "mailstream capture-sink --help printed no usage"
run "$work/venv/bin/mailstream" --help >/dev/null || die "mailstream --help failed"

run "$work/venv/bin/python" -I - "$REPO" <<'EOF' || die "the installed package failed its round trip"
import sys
from pathlib import Path

import mailstream
from mailstream.events import fixtures, serde

repo = Path(sys.argv[1]).resolve()
package = Path(mailstream.__file__).resolve().parent
if package.is_relative_to(repo):
    sys.exit(f"mailstream was imported from the checkout ({package}), not from the wheel")
installed = serde.schemas_dir()
if not installed.is_relative_to(package):
    sys.exit(f"schemas read from {installed}, outside the installed package")


def avsc(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*.avsc")}


missing = avsc(repo / "services" / "events" / "schemas") - avsc(installed)
if missing:
    sys.exit(f"the wheel lacks {len(missing)} schema files, e.g. {sorted(missing)[:3]}")
for record in fixtures.ALL:
    if serde.decode(serde.encode(record), type(record)) != record:
        sys.exit(f"{record.schema_name} did not survive an encode/decode round trip")
# The dashboard's page is package data, read at ingest's start (a wheel without it fails there, not here).
from mailstream.ingest.dashboard import FILES, ui_files

try:
    pages = ui_files()
except FileNotFoundError as exc:
    sys.exit(f"the wheel lacks the dashboard's files (mailstream/ingest/ui/): {exc}")
if any(not body for body, _ in pages.values()):
    sys.exit("a dashboard file in the wheel is empty")
registry = serde.registry()
print(f"check_wheel: {len(fixtures.ALL)} record types round-tripped; {len(registry.current)} current schemas, "
      f"{len(registry.by_fingerprint)} readable versions, from {installed}; {len(FILES)} dashboard files", file=sys.stderr)
EOF
say "ok: $(basename "$wheel") installs and runs outside the checkout"

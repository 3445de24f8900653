#!/usr/bin/env bash
# Builds the krew release archive for the OS and CPU this runs on; run it once on each
# platform celery.yaml lists (e.g. a CI matrix) and attach the archives to the release.
#
#   kubectl-celery-<os>-<arch>.tar.gz      (os: linux, darwin; arch: amd64, arm64)
#     kubectl-celery     the launcher (plugins/krew/kubectl-celery): its first run makes a
#                        virtualenv beside itself from wheels/, offline
#     wheels/            celery-operator's wheel, and wheels of what the plugin imports
#                        (requirements.txt: kubernetes, PyYAML, cronsim, prometheus-client
#                        and theirs) for this platform and CPython 3.11 to 3.13
#
# Usage: plugins/krew/build-archive.sh [OUT_DIR]   (default: dist/)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$repo/dist}"
mkdir -p "$out"
python="${PYTHON:-python3}"
os="$(uname -s | tr '[:upper:]' '[:lower:]')"
case "$(uname -m)" in
  x86_64 | amd64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "unsupported CPU: $(uname -m)" >&2; exit 1 ;;
esac
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

mkdir "$stage/wheels"
printf '%s\n' kubernetes pyyaml cronsim prometheus-client > "$stage/wheels/requirements.txt"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$stage/wheels" "$repo"
for version in 3.11 3.12 3.13; do
  "$python" -m pip download --quiet --only-binary=:all: --python-version "$version" \
    --dest "$stage/wheels" -r "$stage/wheels/requirements.txt"
done
cp "$here/kubectl-celery" "$stage/kubectl-celery"
archive="$out/kubectl-celery-$os-$arch.tar.gz"
tar -C "$stage" -czf "$archive" kubectl-celery wheels
sha256sum "$archive"

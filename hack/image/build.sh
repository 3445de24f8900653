#!/usr/bin/env bash
# Builds the operator image from the repository's Dockerfile with buildah (no daemon) and
# saves it as an OCI archive with a software bill of materials beside it:
#   build/image/celery-operator-VERSION.oci.tar   the image (`podman load -i` / skopeo copy)
#   build/image/celery-operator-VERSION.sbom.txt  Python and Debian packages with versions
# The base is a Debian bookworm rootfs (Python 3.11) made with mmdebstrap, because public
# registries may be unreachable; it is cached by its inputs, so a machine builds it once.
# The image itself is rebuilt only when its inputs (Dockerfile, pyproject, operator/) change.
# Prints the archive path on its last line.
set -euo pipefail
cd "$(dirname "$0")/../.."

version=$(python3 -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
out=build/image
archive=$out/celery-operator-$version.oci.tar
sbom=$out/celery-operator-$version.sbom.txt
repository=${IMAGE_REPOSITORY:-ghcr.io/celery-operator/celery-operator}
name=$repository:$version
mkdir -p "$out"

# ---- base: bookworm + python3 + python3-venv, keyed by its recipe ----------------------
base_pkgs=python3,python3-venv,ca-certificates
base_key=$(printf 'bookworm minbase %s v1' "$base_pkgs" | sha1sum | cut -c1-12)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/celery-operator/image-base
base_tar=$cache/bookworm-$base_key.tar
base_ref=localhost/celery-operator-base:$base_key
if [[ ! -s $base_tar ]]; then
  mkdir -p "$cache"
  echo "image: making the bookworm base with mmdebstrap ($base_tar)" >&2
  mmdebstrap --quiet --variant=minbase --include="$base_pkgs" \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    bookworm "$cache/partial-$base_key.tar"
  mv "$cache/partial-$base_key.tar" "$base_tar"
fi
if ! buildah inspect --type image "$base_ref" >/dev/null 2>&1; then
  podman import --quiet "$base_tar" "$base_ref" >/dev/null
fi

# ---- the image, keyed by everything the Dockerfile copies ------------------------------
# (The revision label is the commit of the build that made it; a commit that changes none
# of these inputs reuses the image.)
key=$( { echo "$base_key"; cat Dockerfile .dockerignore pyproject.toml README.md;
         find operator -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' \
           -print0 | sort -z | xargs -0 sha1sum; } | sha1sum | cut -c1-12)
stamp=$out/.key-$version
if [[ -s $archive && -s $sbom && -f $stamp && $(cat "$stamp") == "$key" ]] \
   && buildah inspect --type image "$name" >/dev/null 2>&1; then
  echo "$archive"
  exit 0
fi
# pip in the builder stage trusts what the host's pip trusts (a proxy's CA, say).
tls=()
host_ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
if [[ -r $host_ca ]]; then
  tls=(--volume "$host_ca:/run/build-ca.crt:ro" --build-arg PIP_CERT=/run/build-ca.crt)
fi
buildah bud --quiet --isolation chroot --layers=false "${tls[@]}" \
  --build-arg BASE="$base_ref" --build-arg VERSION="$version" --build-arg REVISION="$revision" \
  --tag "$name" . >&2
rm -f "$archive"
buildah push --quiet "$name" "oci-archive:$archive:$name" >&2

# ---- SBOM: what is inside, read from the image itself ----------------------------------
ctr=$(buildah from --quiet "$name")
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$(buildah mount "$ctr")
{
  echo "# celery-operator $version ($revision) image $name"
  echo "# python packages (/opt/venv)"
  for meta in "$mnt"/opt/venv/lib/python3*/site-packages/*.dist-info/METADATA; do
    awk -F': ' '/^Name: /{n=$2} /^Version: /{v=$2} END{print "pypi " n " " v}' "$meta"
  done | sort -f
  echo "# debian packages"
  dpkg-query --admindir="$mnt/var/lib/dpkg" -W -f='deb ${Package} ${Version} ${Architecture}\n' | sort
} > "$sbom"
buildah umount "$ctr" >/dev/null
echo "$key" > "$stamp"
echo "image: $name ($(du -h "$archive" | cut -f1)) sbom $sbom" >&2
echo "$archive"

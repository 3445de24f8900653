#!/usr/bin/env bash
# Builds the test control plane (etcd, kube-apiserver, kubectl) and helm from the
# Go modules beside this script, into a version-keyed cache folder, skipping any
# binary that is already there. Prints the folder of each component when done.
#
#   hack/envtest/build.sh [k8s|etcd|helm ...]     (default: all three)
#
# ENVTEST_DIR picks the cache (default ~/.cache/celery-operator/envtest): it lives
# outside the work tree so fresh clones on the same machine reuse it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${ENVTEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/celery-operator/envtest}"
platform="$(go env GOOS)-$(go env GOARCH)"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod

# The version a module pins, read from its go.mod: the go.mod is the only place
# a version is written down.
pinned() { awk -v m="$2" '$1 == "require" && $2 == m {print $3} $1 == m {print $2}' "$here/$1/go.mod" | head -1; }

# build MODULE NAME PACKAGE OUTDIR LDFLAGS
build() {
  local module="$1" name="$2" pkg="$3" out="$4" ldflags="$5"
  if [[ -x "$out/$name" ]]; then
    return 0
  fi
  mkdir -p "$out"
  echo "building $name into $out" >&2
  local start=$SECONDS
  (cd "$here/$module" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out/$name.tmp" "$pkg")
  mv "$out/$name.tmp" "$out/$name"   # only a finished binary gets the real name
  echo "built $name in $((SECONDS - start)) s" >&2
}

build_k8s() {
  local v; v="$(pinned k8s k8s.io/kubernetes)"
  local major minor; IFS=. read -r major minor _ <<<"${v#v}"
  local out="$cache/k8s-$v-$platform" x=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    x+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    x+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  build k8s kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$out" "$x"
  build k8s kubectl k8s.io/kubernetes/cmd/kubectl "$out" "$x"
  echo "$out"
}

build_etcd() {
  local v; v="$(pinned etcd go.etcd.io/etcd/server/v3)"
  local out="$cache/etcd-$v-$platform"
  build etcd etcd go.etcd.io/etcd/server/v3 "$out" ""
  echo "$out"
}

build_helm() {
  local v; v="$(pinned helm helm.sh/helm/v3)"
  local out="$cache/helm-$v-$platform"
  # Helm reports the Kubernetes version of the client-go it was built with.
  local cg; cg="$(cd "$here/helm" && go list -m -f '{{.Version}}' k8s.io/client-go)"
  local kminor; kminor="$(cut -d. -f2 <<<"$cg")"
  local x="-X helm.sh/helm/v3/internal/version.version=$v -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    x+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kminor"
  done
  build helm helm helm.sh/helm/v3/cmd/helm "$out" "$x"
  echo "$out"
}

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(etcd k8s helm)
for t in "${targets[@]}"; do
  "build_$t"
done

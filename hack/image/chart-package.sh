#!/usr/bin/env bash
# Packages the Helm chart (CRDs included, from its crds/ folder) into build/chart/ and
# prints the archive's path. `helm` is the one `make envtest` builds unless HELM is set.
set -euo pipefail
cd "$(dirname "$0")/../.."
helm=${HELM:?HELM must name the helm binary}
diff -r crds charts/celery-operator/crds >/dev/null \
  || { echo "charts/celery-operator/crds differs from crds/: run 'make chart-crds'" >&2; exit 1; }
mkdir -p build/chart
out=$("$helm" package charts/celery-operator --destination build/chart)
archive=${out##*: }
listing=$(tar -tzf "$archive")
grep -q '^celery-operator/crds/.*\.yaml$' <<<"$listing" \
  || { echo "$archive has no CRDs" >&2; exit 1; }
echo "$archive"

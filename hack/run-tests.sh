#!/usr/bin/env bash
# make test's pytest, in two parts. First every module not marked `serial`, two at a time
# (pytest-xdist, whole modules per worker, each worker with its own control plane, Redis
# and demo worker): most of their time is spent waiting on real processes. Then the
# `serial` modules alone: they assert lateness, on-time starts and failover times, which
# a second module's load on 2 cores would blur. Extra arguments go to both parts.
set -uo pipefail
cd "$(dirname "$0")/.."
pytest=.venv/bin/pytest
common=(-q -p no:cacheprovider "$@")

"$pytest" tests/unit tests/integration -m "not serial" \
  -n "${TEST_WORKERS:-2}" --dist loadfile "${common[@]}"
parallel=$?
"$pytest" tests/unit tests/integration -m serial "${common[@]}"
serial=$?

# 5 is "nothing selected": a filter in the arguments may match only one part.
if [[ $parallel == 5 && $serial == 5 ]]; then exit 5; fi
for rc in $parallel $serial; do
  if [[ $rc != 0 && $rc != 5 ]]; then exit "$rc"; fi
done
exit 0

# celery-operator — `make demo` runs it, `make test` tests it. Both install what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: image chart-package chart-crds-check all test unit integration lint demo bench bench-quick envtest system-deps venv chart-crds clean

all: test

system-deps:
	@bash hack/install-system-deps.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade 'pip>=25.1'
	$(PY) -m pip install -q -e . --group test --group lint --group bench
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

# Builds etcd, kube-apiserver, kubectl and helm from hack/envtest's Go modules into a
# version-keyed cache (~/.cache/celery-operator/envtest); skips what is already built.
envtest: system-deps
	@bash hack/envtest/build.sh etcd k8s helm

lint: venv
	$(VENV)/bin/ruff check operator tests $(wildcard bench)
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: venv
	$(VENV)/bin/pytest tests/unit -q $(PYTEST_ARGS)

integration: venv envtest
	$(VENV)/bin/pytest tests/integration -q $(PYTEST_ARGS)

# Two parts (hack/run-tests.sh): the modules that assert no timing two at a time, then the
# `serial` ones (lateness, failover) alone.
test: system-deps venv envtest chart-crds-check lint image
	bash hack/run-tests.sh $(PYTEST_ARGS)

demo: system-deps venv envtest
	$(VENV)/bin/celery-operator demo

bench: system-deps venv envtest
	$(VENV)/bin/python -m bench

bench-quick: system-deps venv envtest
	BENCH_QUICK=1 $(VENV)/bin/python -m bench

# The chart carries an identical copy of crds/: this target makes it, a test checks it.
chart-crds:
	@mkdir -p charts/celery-operator/crds
	@rm -f charts/celery-operator/crds/*.yaml
	@cp crds/*.yaml charts/celery-operator/crds/

chart-crds-check:
	@diff -r crds charts/celery-operator/crds >/dev/null 2>&1 || \
	  { echo "charts/celery-operator/crds differs from crds/: run 'make chart-crds'"; exit 1; }

# The operator image from the Dockerfile, with buildah (no daemon), on a bookworm base made
# with mmdebstrap: build/image/celery-operator-VERSION.oci.tar and its SBOM beside it.
# Cached by its inputs: a warm run takes seconds.
image:
	@bash hack/image/install-deps.sh
	@bash hack/image/build.sh

# The chart archive (CRDs included) in build/chart/.
chart-package: venv envtest chart-crds-check
	@HELM=$(HELM) bash hack/image/chart-package.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

# The Helm chart: `helm lint --strict` and `helm template` with every example values file
# (no cluster needed; values.schema.json is checked by both).
.PHONY: chart-lint chart-test
HELM = $$($(PY) -c 'from celery_operator.devstack import find_binary; print(find_binary("helm"))')
chart-lint: venv envtest chart-crds-check
	@set -e; helm=$(HELM); for f in examples/values/*.yaml; do \
	  echo "== $$f"; \
	  $$helm lint --strict charts/celery-operator -f $$f; \
	  $$helm template chart-lint charts/celery-operator -f $$f >/dev/null; \
	done

# The chart against the test control plane: helm install, wait for the objects, server-side
# validation of everything rendered, helm uninstall leaving only the CRDs, docs/install.md
# followed literally (tests/integration/test_chart.py; `make test` runs it too).
chart-test: venv envtest chart-crds-check
	$(VENV)/bin/pytest tests/integration/test_chart.py -q -p no:cacheprovider $(PYTEST_ARGS)

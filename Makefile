# `make run` and `make test` each do the whole set-up they need first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: run test test-fast lint setup data engines clean

# avalanche-lib's needs at the versions benchmarks/gpu_wheels.txt carries to the GPU machine: the test that checks
# that list (tests/test_gpu_check.py) copies them from this environment, so a newer release on PyPI must not slip in.
$(STAMP): pyproject.toml benchmarks/gpu_wheels.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]' -c benchmarks/gpu_wheels.txt
	touch $(STAMP)

setup: $(STAMP) data

# Debian's copy of the real Fashion-MNIST, where the machine allows it (root and apt); skipped otherwise.
data:
	@if [ ! -d $(FMNIST) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -q && apt-get install -y -q dataset-fashion-mnist) >/dev/null 2>&1 \
		|| echo "note: could not install dataset-fashion-mnist; tests that need it are skipped"; \
	fi

# Debian's Slurm, slurmdbd, munge and MariaDB for the real-engine sweep tests (tests/engines), and Chromium for the
# report's browser tests (tests/test_report_page.py), where the machine allows it (root and apt); their tests skip
# otherwise (and fail under CLBENCH_REQUIRE_ENGINES=1, as on CI).
engines:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		bash tests/engines/slurm/cluster.sh install \
		|| echo "note: could not install Slurm; the Slurm sweep tests are skipped"; \
		command -v chromium >/dev/null || (DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 \
			&& DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1)) \
		|| echo "note: could not install chromium; the report's browser tests are skipped"; \
	fi

# The demo: random, herding, DM and DDM on Fashion-MNIST (quick profile), then the comparison table.
DEMO_OUT ?= results/demo
DEMO_ARGS ?= --dataset fashion-mnist --steps 5 --memory 20ipc --orders 2 --profile quick --device auto --jobs 2
run: setup
	for c in random herding dm ddm; do \
		$(VENV)/bin/clbench run --condenser $$c $(DEMO_ARGS) --out $(DEMO_OUT) || exit 1; \
	done
	$(VENV)/bin/clbench compare $(DEMO_OUT)

# The whole suite (what CI runs), after the linter: a lint error fails the build.
test: setup engines lint
	$(VENV)/bin/python -m pytest

# Everyday work: the suite without the end-to-end CLI runs (`slow`), after the linter.
test-fast: setup lint
	$(VENV)/bin/python -m pytest -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info

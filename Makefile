# Two entry points, both self-contained on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test install browser bench bench-gpu clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel

# Reinstalls whenever pyproject.toml changes; the keras, ray and test extras are part of the set-up.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[keras,ray,test]'
	touch $@

install: $(STAMP)

demo: install
	$(VENV)/bin/onnxplain demo

# Headless Chromium for the report test (Debian's package; installed only when absent).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 || \
	    (sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive sudo apt-get install -y -qq chromium) >/dev/null; }

# The import layers first (pyproject.toml [tool.importlinter]: cli > application > exporters > core), then the suite.
test: install browser
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n 2 --dist loadfile

bench: install
	$(PY) -m benchmarks.run --out benchmarks/results

# The bounded GPU run for a bare device machine with carried wheels (benchmarks/README.md, "On a GPU");
# no install step here: it installs what it carries. `GPU_DEVICE=cpu GPU_TINY=1 make bench-gpu`: its CPU path.
bench-gpu:
	benchmarks/gpu.sh run

clean:
	rm -rf $(VENV) build *.egg-info

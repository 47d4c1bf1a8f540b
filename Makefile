# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# `make install` is the idempotent install both use: Debian packages for headless GL (as root,
# only those missing), a virtualenv, the CPU build of torch 2.13.0 where no torch is present,
# then dropt with its dev extras, the example plug-in package (examples/plugins), and `pip check`.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dropt-installed
APT_PACKAGES := libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libxrender1
export PYOPENGL_PLATFORM ?= egl
export RAY_AUTH_MODE ?= disabled

.PHONY: install system-deps blender demo test bench clean

install: system-deps $(STAMP)

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; \
	  else echo "missing Debian packages:$$missing (run as root: apt-get install -y$$missing)"; exit 1; fi; \
	  echo "installing Debian packages:$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml examples/plugins/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e examples/plugins   # the example plug-ins (tests run them)
	$(BIN)/python -m pip check
	touch $(STAMP)

# the optional Blender generator: Blender 4.2 as a Python module (about 520 MB)
BLENDER_STAMP := $(VENV)/.dropt-blender
blender: install $(BLENDER_STAMP)

$(BLENDER_STAMP): pyproject.toml
	$(BIN)/python -m pip install -q -e '.[dev,blender]'
	$(BIN)/python -c "import bpy"
	touch $(BLENDER_STAMP)

demo: install
	rm -rf out/demo/run
	$(BIN)/dropt run experiments/shapes/default.toml --budget 6 --set loop.candidates=2 \
	  --set evaluator.images=300 --set evaluator.steps=150 --out out/demo/run
	$(BIN)/dropt report out/demo/run
	@echo "demo: a short closed loop on the hidden shapes target domain (out/target);" \
	  "report in out/demo/run/report/summary.md"

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/dropt bench render

clean:
	rm -rf out .pytest_cache .hypothesis

# Two entry points, each sets itself up on a fresh machine (Python 3.11+ is all it needs):
#   make demo   learn a bundled style with the shipped model; writes the style file + a preview
#   make test   run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/metastyle fetch-weights
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/metastyle adapt styles/flow_swirls.png -o demo/flow_swirls.safetensors

test: $(STAMP)
	.ci/setup-browser
	WANDB_MODE=disabled $(BIN)/python -m pytest -q

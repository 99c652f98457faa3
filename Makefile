# Two commands do all the set-up on a fresh machine (see README.md):
#   make book   - the main job: build the book (creates .venv and installs what is missing first)
#   make test   - run the tests (same set-up)
#   make test-fast - the quick tier for the edit-test loop (the tests not marked slow, about a minute)
# Set PSKIN_DATA to the HAM10000 folder to use the real data; without it the synthetic demo set is used.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The stamp is remade when the dependency list changes, so a second run installs nothing.
STAMP := $(VENV)/.installed

.PHONY: book test test-fast lint clean gpu-pack

# pskinlib with the book's stack and the test tools; then the checkout itself on the environment's path, so the
# book's package (book/) imports from any folder, as in JupyterLab, whose kernels start in notebooks/.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[book,dev]'
	$(PY) -c 'import site, sys; open(site.getsitepackages()[0] + "/pskin-checkout.pth", "w").write(sys.argv[1] + "\n")' "$(CURDIR)"
	touch $(STAMP)

book: $(STAMP)
	$(PY) -m book

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

# The data the GPU paper run carries to the device (README: "The paper on a GPU"); derived from the data, git-ignored.
gpu-pack: $(STAMP)
	$(PY) -m experiments.gpu_pack

lint: $(STAMP)
	$(VENV)/bin/ruff check pskinlib book benchmarks experiments tests

clean:
	rm -rf _build

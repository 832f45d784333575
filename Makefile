# The two README commands: `make demo` (main job on the embedded default) and `make test`.
PYTHON ?= python3
STAMP := .make-installed

.PHONY: install demo test lint bench browser-deps

$(STAMP): pyproject.toml
	# CPU torch first (a local wheel here); an unpinned torch would pull a multi-GB CUDA build.
	$(PYTHON) -m pip install "torch==2.13.0"
	$(PYTHON) -m pip install -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PYTHON) -m pixelbytes.cli demo --output-dir demo_output

test: $(STAMP)
	@if [ "$${PIXELBYTES_SKIP_BROWSER:-}" != 1 ]; then $(MAKE) --no-print-directory browser-deps; fi
	$(PYTHON) -m ruff check src tests benchmarks examples
	$(PYTHON) -m pytest

# Headless Chromium + chromedriver for tests/test_app_browser.py (Debian packages; ~45 s on a fresh machine).
browser-deps:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then \
		echo "chromium and chromedriver already installed"; \
	else \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	fi

lint: $(STAMP)
	$(PYTHON) -m ruff check src tests benchmarks examples

bench: $(STAMP)
	$(PYTHON) benchmarks/bench_tokenizer.py
	$(PYTHON) benchmarks/bench_generate.py
	$(PYTHON) benchmarks/bench_train.py
	$(PYTHON) benchmarks/bench_backbones.py
	$(PYTHON) benchmarks/bench_limits.py
	$(PYTHON) benchmarks/bench_batch.py
	$(PYTHON) benchmarks/bench_gpu.py

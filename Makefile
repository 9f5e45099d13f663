# Imaging Biobank — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install when the dependency list changes.
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
# Debian packages the tests and benchmarks use (real peers and OCR).
APT_PACKAGES := dicom3tools libgdcm-tools tesseract-ocr tesseract-ocr-eng openssl libgl1 libglib2.0-0
DEMO_KEY := demo-key/site.key

.PHONY: install system-deps run test lint format bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,lint,bench]'
	@rm -f $(VENV)/.installed-*
	@touch $@

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

install: $(STAMP) system-deps

# De-identify the bundled sample into ./demo-output and print the summary.
run: install
	@test -f $(DEMO_KEY) || $(BIN)/biobank keygen $(DEMO_KEY)
	$(BIN)/biobank deid demo/sample --out demo-output --key-file $(DEMO_KEY) --report demo-output.report.json
	@echo "outputs in ./demo-output, report in ./demo-output.report.json"

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

test: lint
	$(BIN)/pytest -n auto --dist loadfile

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf demo-output demo-output.report.json .pytest_cache .mypy_cache .ruff_cache

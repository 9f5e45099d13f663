# Imaging Biobank — the two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Re-install when the dependency list changes.
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
# Debian packages the tests and benchmarks use (real peers and OCR).
APT_PACKAGES := dcmtk dicom3tools libgdcm-tools tesseract-ocr tesseract-ocr-eng openssl libgl1 libglib2.0-0 orthanc orthanc-dicomweb
DEMO_HOME := biobank-data

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

# Create the demo site node (embedded SQLite + blob store), ingest the bundled sample, then
# serve it: DICOMweb on http://127.0.0.1:8000/dicomweb, DIMSE on 11112, with an admin token.
run: install
	@test -f $(DEMO_HOME)/node.yaml || { $(BIN)/biobank init --home $(DEMO_HOME) --site demo-hospital \
	  && cat demo/node-service.yaml >> $(DEMO_HOME)/node.yaml; }
	$(BIN)/biobank ingest demo/sample --home $(DEMO_HOME)
# Clinical records of the demo patients (demo/make_clinical.py). One prostate record is invalid
# on purpose, to show the report; --allow-rejected exits 0 so that make goes on.
	$(BIN)/biobank clinical import demo/clinical/prostate.csv --form prostate --allow-rejected --home $(DEMO_HOME)
	$(BIN)/biobank clinical import demo/clinical/prostate_followup.csv --form prostate_followup --home $(DEMO_HOME)
	$(BIN)/biobank clinical import demo/clinical/breast.csv --form breast --home $(DEMO_HOME)
	$(BIN)/biobank status --home $(DEMO_HOME)
	$(BIN)/biobank ls studies --home $(DEMO_HOME)
	$(BIN)/biobank verify --home $(DEMO_HOME)
	$(BIN)/biobank jobs run --home $(DEMO_HOME)
	$(BIN)/biobank curate series --home $(DEMO_HOME)
	$(BIN)/biobank curate cohort --home $(DEMO_HOME)
# One cohort over both worlds: prostate cancer, PSA > 4 and an MR series (the demo patient).
	$(BIN)/biobank query demo/queries/prostate-mr.json --home $(DEMO_HOME)
	@$(BIN)/biobank user list --home $(DEMO_HOME) --json | grep -q '"admin"' \
	  || $(BIN)/biobank user add admin --role admin --home $(DEMO_HOME)
	@token=$$($(BIN)/biobank token create admin --name "make run" --home $(DEMO_HOME) 2>/dev/null) \
	  && echo "" && echo "admin token (shown once): $$token" \
	  && echo "try: curl -H \"Authorization: Bearer $$token\" http://127.0.0.1:8000/dicomweb/studies" \
	  && echo "     echoscu -aec BIOBANK 127.0.0.1 11112    (Ctrl-C stops the node)" && echo ""
	$(BIN)/biobank serve --home $(DEMO_HOME)

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

# Benchmarks, one after the other on one corpus (bench/README.md): de-identification against
# gdcmanon/dicognito/deid, ingest against Orthanc and cp, the catalogue at 1M instances
# (SQLite and the PostgreSQL at 127.0.0.1:5432). BENCH_WORKDIR=dir keeps the corpus and the
# SQLite catalogue there for the next run; by default a temporary folder, removed at the end.
# Each script bounds its own steps and cleans up its servers and folders (also on Ctrl-C);
# `timeout` stops one that overruns all the same.
BENCH_APT_PACKAGES := orthanc orthanc-dicomweb
BENCH_WORKDIR ?=

bench: install
	@$(MAKE) --no-print-directory system-deps APT_PACKAGES="$(BENCH_APT_PACKAGES)"
	@rc=0; \
	if [ -n "$(BENCH_WORKDIR)" ]; then dir="$(BENCH_WORKDIR)"; mkdir -p "$$dir"; \
	else dir=$$(mktemp -d -t biobank-bench.XXXXXX); trap 'rm -rf "$$dir"' EXIT; fi; \
	timeout --foreground -k 60 3600 $(BIN)/python bench/run.py --workdir "$$dir" \
	  --json bench-results.json || rc=1; \
	timeout --foreground -k 60 2400 $(BIN)/python bench/ingest.py --workdir "$$dir" \
	  --json ingest-results.json || rc=1; \
	timeout --foreground -k 60 5400 $(BIN)/python bench/catalog_scale.py --workdir "$$dir" \
	  --json catalog-results.json || rc=1; \
	timeout --foreground -k 60 1800 $(BIN)/python bench/dicomweb.py --workdir "$$dir" \
	  --json dicomweb-results.json || rc=1; \
	timeout --foreground -k 60 1200 $(BIN)/python bench/curation.py --workdir "$$dir" \
	  --json curation-results.json || rc=1; \
	timeout --foreground -k 60 1800 $(BIN)/python bench/cohort.py --workdir "$$dir" \
	  --json cohort-results.json || rc=1; \
	timeout --foreground -k 60 900 $(BIN)/python bench/omop_sync.py --workdir "$$dir" \
	  --json omop-sync-results.json || rc=1; \
	exit $$rc

clean:
	rm -rf $(DEMO_HOME) demo-output demo-output.report.json .pytest_cache .mypy_cache .ruff_cache

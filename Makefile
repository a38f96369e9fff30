# calcdx: the two set-up commands of the README are `make demo` and `make test`.
# Both work on a fresh Debian 12 machine with Python 3.11; `make test` also installs the
# Debian packages the PACS and DICOM-conformance tests use (dcmtk, dicom3tools, Orthanc).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SYSTEM_PACKAGES := dcmtk dicom3tools openssl orthanc orthanc-python orthanc-dicomweb orthanc-gdcm iproute2 util-linux

.PHONY: demo test install install-test system-deps lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

system-deps:
	@if command -v storescu >/dev/null && command -v openssl >/dev/null && command -v dciodvfy >/dev/null && command -v Orthanc >/dev/null \
	    && [ -e /usr/share/orthanc/plugins/libOrthancGdcm.so ]; then \
	    echo "system packages present"; \
	else \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES); \
	fi

## Main job on the bundled example radiographs.
demo: install
	$(BIN)/calcdx predict examples/ --out results/

## The whole test suite (what CI runs).
test: system-deps install-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) results build *.egg-info .pytest_cache .ruff_cache

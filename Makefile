# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# torch is installed first and pinned: on these machines torch==2.13.0 is the CPU build, and an
# unpinned torch would pull gigabytes of CUDA packages.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
RUN_DIR ?= runs/demo
DATA_DIR ?= data/shapes
BOOK_DIR ?= build/book

.PHONY: venv test demo book bench paper-claims reference-model gpu-check cpu-kernel clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==$(TORCH_VERSION)
	$(PY) -m pip install -e ".[test,book,export,triton]"
	touch $@

venv: $(VENV)/.installed

test: venv
	$(PY) -m pytest -q

demo: venv
	$(PY) -m ddetr_edu demo --data $(DATA_DIR) --out $(RUN_DIR)

# Every chapter executed and rendered as a static site: build/book/index.html (contents) and one
# page per chapter with previous / contents / next links. FAST=1 (or DDETR_EDU_FAST=1) make book: the
# chapters' fast mode; BOOK_DIR=folder writes the site elsewhere. A failing chapter is listed on the
# index and make exits non-zero.
book: venv
	$(PY) book/build_site.py --out $(BOOK_DIR) $(if $(filter 1,$(FAST) $(DDETR_EDU_FAST)),--fast)

bench: venv
	$(PY) benchmarks/msda.py

# The paper's claims in miniature (DETR-style vs deformable, Tables 1 and 2, Figure 3): measures
# every configuration, prints the estimate, trains, writes
# experiments/results/ (JSON per run, figure3.png, table1.md, table2.md, README.md).
# `$(PY) -m experiments.paper_claims --plan` prints the plan only; `--fast` runs in < 60 s.
# Then chapter 11's two extra experiments: dense 10N epochs vs deformable N (ten_x, its own --plan)
# and the refinement gap (refinement_gap), which write tenx_*.json, ten_x.png/.md and
# refinement_gap_*.json/.md into experiments/results/ (its README.md: the measured time).
paper-claims: venv
	$(PY) -m experiments.paper_claims
	$(PY) -m experiments.ten_x
	$(PY) -m experiments.refinement_gap

# The shipped reference model (ddetr_edu/checkpoints/reference/): the shapes_cpu model trained
# on 128 px shapes for 50 epochs, seed 0, 1 thread (about 45 min on a quiet machine); writes the
# weights and their card into the package and the run's curves and GIF into book/assets/.
reference-model: venv
	$(PY) -m experiments.reference_model

# On a machine with an NVIDIA GPU: no `venv` prerequisite, because the venv pins the CPU build of
# torch; the machine's own python with its CUDA torch runs the check (GPU_PY=... picks another).
GPU_PY ?= $(PYTHON)
gpu-check:
	$(GPU_PY) benchmarks/gpu_check.py --out build/gpu_check.md

# The attention core's CPU kernel built ahead of time with the machine's C++ compiler (else the
# first call on CPU tensors builds it: a few seconds, cached in ~/.cache/ddetr_edu/cpu_kernel).
cpu-kernel: venv
	$(PY) -c "from ddetr_edu.ops import cpu_kernel_status as s; ok, why = s(); print('CPU kernel:', why); raise SystemExit(0 if ok else 1)"

clean:
	rm -rf $(VENV) build runs

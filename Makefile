# Two entry points (README quickstart): `make run` and `make test`. Both build .venv themselves.
# torch is installed first, pinned to the CPU wheel: an unpinned torch pulled in by accelerate
# would resolve a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
CORES ?= all

.PHONY: run test lint env mutants
env: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install "$(TORCH)"
	$(BIN)/pip install -e ".[dev]"
	touch $@

run: env
	$(BIN)/snakemake --cores $(CORES)

test: env
	$(BIN)/python -m pytest -q tests

lint: env
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules

# Mutation testing of the functions that decide the numbers, with their fast tests (config:
# pyproject [tool.mutmut]; surviving mutants and why: docs/mutants.md). About 25 min on 2 cores.
MUTANT_SCOPE := "mesa_moe.cost.*" "mesa_moe.transport.*" "mesa_moe.losses.*" \
	"mesa_moe.selection.x_[!r]*" "mesa_moe.evaluation.scoring.*" \
	"mesa_moe.data.x_chat_ids*" "mesa_moe.data.x_encode_pairs*" "mesa_moe.data.x_collate*" \
	"mesa_moe.evaluation.judges.x__normalise*" "mesa_moe.evaluation.judges.x_is_refusal*" \
	"mesa_moe.evaluation.judges.x*parse_unsafe*" \
	"mesa_moe.evaluation.judges.x*RefusalJudge*is_safe*" \
	"mesa_moe.evaluation.runner.x_metric_value*" "mesa_moe.evaluation.runner.x_score_generations*" \
	"mesa_moe.reporting.x_oriented*" "mesa_moe.reporting.x_pareto_front*" \
	"mesa_moe.reporting.x_run_scores*" "mesa_moe.reporting.x_summary_*" \
	"mesa_moe.reporting.x_sweep_table*"
MUTANT_CORES ?= 2

mutants: env
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HYPOTHESIS_PROFILE=mutants nice -n 10 \
		$(BIN)/mutmut run --max-children $(MUTANT_CORES) $(MUTANT_SCOPE)
	$(BIN)/python tests/mutation_score.py docs/mutants.md $(MUTANT_SCOPE)

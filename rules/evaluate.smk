# Evaluation (docs/method.md §6; README "Evaluation"): every benchmark on Base and
# every trained model, then the comparison.


localrules:
    summary,
    sweep,
    tune_choose,
    tune_trials,
    study,


rule evaluate:
    input:
        unpack(evaluate_input),
    output:
        metrics=f"{EVAL_DIR}/metrics.json",
        generations=directory(f"{EVAL_DIR}/generations"),
        activations=f"{EVAL_DIR}/activations.parquet",
        sparsity=f"{EVAL_DIR}/sparsity.parquet",
        provenance=f"{EVAL_DIR}/provenance.json",
    log:
        f"{LOGS}/evaluate/{{method}}/{{run}}.log",
    benchmark:
        benchmark_file("evaluate", "{method}", "{run}")
    wildcard_constraints:
        method="|".join([BASE, *TRAIN_METHODS]),
    conda:
        "../envs/mesa.yaml"
    threads: THREADS
    resources:
        mem_mb=8000,
    params:
        model=evaluated_model_spec,
        benchmarks=EVALUATION["benchmarks"],
        plugins=EVALUATION["plugins"],
        paths=benchmark_paths(),
        settings=evaluation_settings(),
    script:
        "../workflow/scripts/evaluate.py"


rule summary:
    input:
        # functions: with tuning on, the runs are known once tune_choose has run
        metrics=lambda wildcards: evaluation_outputs("metrics.json"),
        sparsity=lambda wildcards: evaluation_outputs("sparsity.parquet"),
    output:
        table=report(
            f"{RESULTS}/summary.parquet",
            caption="../workflow/report/summary.rst",
            category="Comparison",
        ),
        markdown=report(
            f"{RESULTS}/summary.md",
            caption="../workflow/report/summary.rst",
            category="Comparison",
        ),
        scatter=report(
            f"{RESULTS}/safety_vs_utility.png",
            caption="../workflow/report/scatter.rst",
            category="Comparison",
        ),
        sparsity=report(
            f"{RESULTS}/safety_sparsity.png",
            caption="../workflow/report/sparsity.rst",
            category="Comparison",
        ),
    log:
        f"{LOGS}/summary.log",
    benchmark:
        benchmark_file("summary")
    conda:
        "../envs/mesa.yaml"
    threads: 1
    params:
        model=config["model"]["name"],
    script:
        "../workflow/scripts/summary.py"


rule sweep:
    input:
        summary=rules.summary.output.table,
    output:
        table=f"{RESULTS}/sweep.parquet",
        w=report(
            f"{RESULTS}/sweep/w.png",
            caption="../workflow/report/sweep.rst",
            category="Sweep",
        ),
        eps=report(
            f"{RESULTS}/sweep/eps.png",
            caption="../workflow/report/sweep.rst",
            category="Sweep",
        ),
        gamma=report(
            f"{RESULTS}/sweep/gamma.png",
            caption="../workflow/report/sweep.rst",
            category="Sweep",
        ),
        pareto=report(
            f"{RESULTS}/sweep/pareto.png",
            caption="../workflow/report/pareto.rst",
            category="Sweep",
        ),
    log:
        f"{LOGS}/sweep.log",
    benchmark:
        benchmark_file("sweep")
    conda:
        "../envs/mesa.yaml"
    threads: 1
    script:
        "../workflow/scripts/sweep.py"

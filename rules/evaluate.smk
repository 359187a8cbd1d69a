# Evaluation (METHOD §6): every benchmark on Base and every trained model, then the comparison.


localrules:
    summary,
    sweep,


rule evaluate:
    input:
        unpack(evaluate_input),
    output:
        metrics=f"{RESULTS}/eval/{{method}}/{{run}}/metrics.json",
        generations=directory(f"{RESULTS}/eval/{{method}}/{{run}}/generations"),
        sparsity=f"{RESULTS}/eval/{{method}}/{{run}}/sparsity.parquet",
    log:
        f"{RESULTS}/logs/evaluate/{{method}}/{{run}}.log",
    wildcard_constraints:
        method="|".join(["base", *TRAIN_METHODS]),
    conda:
        "../envs/mesa.yaml"
    threads: workflow.cores
    resources:
        mem_mb=8000,
    params:
        model=evaluated_model_spec,
        benchmarks=EVALUATION["benchmarks"],
        paths=benchmark_paths(),
        settings=evaluation_settings(),
    script:
        "../workflow/scripts/evaluate.py"


rule summary:
    input:
        metrics=evaluation_outputs(),
        sparsity=[
            path.replace("metrics.json", "sparsity.parquet")
            for path in evaluation_outputs()
        ],
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
        f"{RESULTS}/logs/summary.log",
    conda:
        "../envs/mesa.yaml"
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
        f"{RESULTS}/logs/sweep.log",
    conda:
        "../envs/mesa.yaml"
    script:
        "../workflow/scripts/sweep.py"

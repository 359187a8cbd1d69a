# Tuning on VAL files only (README "Tuning"): every trial and the Base evaluated on the
# criterion's val files, one choice per method; the chosen settings are then trained with every
# seed and evaluated on the eval files by the evaluate rule.


use rule evaluate as tune_evaluate with:
    input:
        unpack(tune_evaluate_input),
    output:
        metrics=f"{TUNE_EVAL_DIR}/metrics.json",
        generations=directory(f"{TUNE_EVAL_DIR}/generations"),
        activations=f"{TUNE_EVAL_DIR}/activations.parquet",
        sparsity=f"{TUNE_EVAL_DIR}/sparsity.parquet",
        provenance=f"{TUNE_EVAL_DIR}/provenance.json",
    log:
        f"{LOGS}/tune_evaluate/{{method}}/{{run}}.log",
    benchmark:
        benchmark_file("tune_evaluate", "{method}", "{run}")
    params:
        model=evaluated_model_spec,
        benchmarks=TUNE_BENCHMARKS,
        plugins=EVALUATION["plugins"],
        paths=VAL_PATHS,
        settings=evaluation_settings(),


checkpoint tune_choose:
    input:
        unpack(tune_choose_input),
    output:
        chosen=CHOSEN,
    log:
        f"{LOGS}/tune_choose/{{method}}.log",
    benchmark:
        benchmark_file("tune_choose", "{method}")
    wildcard_constraints:
        method="|".join(TRAIN_METHODS),
    conda:
        "../envs/mesa.yaml"
    threads: 1
    params:
        settings=lambda wildcards: trial_settings(wildcards.method),
        criterion=canonical(CRITERION),
    script:
        "../workflow/scripts/tune.py"


rule tune_trials:
    input:
        metrics=tune_outputs(),
    output:
        table=f"{TUNE_DIR}/trials.parquet",
    log:
        f"{LOGS}/tune_trials.log",
    benchmark:
        benchmark_file("tune_trials")
    conda:
        "../envs/mesa.yaml"
    threads: 1
    params:
        model=config["model"]["name"],
    script:
        "../workflow/scripts/tune_trials.py"


rule study:
    input:
        summary=rules.summary.output.table,
        chosen=expand(CHOSEN, method=TRAIN_METHODS),
        trials=rules.tune_trials.output.table,
        figures=[path for path in rules.diagnosis.output if str(path).endswith(".png")],
    output:
        results=f"{RESULTS}/results.md",
    log:
        f"{LOGS}/study.log",
    benchmark:
        benchmark_file("study")
    conda:
        "../envs/mesa.yaml"
    threads: 1
    params:
        context=study_context(),
    script:
        "../workflow/scripts/study.py"

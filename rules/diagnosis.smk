# Diagnosis (docs/method.md §6.7): why router training and L_OT help or hurt. Routing of every
# evaluated model against the selections, the routing attack per m, tuning trials vs γ and ε.


include: "diagnosis_common.smk"


localrules:
    diagnosis,


rule diagnosis:
    input:
        unpack(diagnosis_input),
    output:
        **val_figures(),
        **attack_outputs(),
        shift=f"{DIAGNOSIS_DIR}/routing_shift.parquet",
        shift_figure=report(
            f"{DIAGNOSIS_DIR}/routing_shift.png",
            caption="../workflow/report/diagnosis.rst",
            category="Diagnosis",
        ),
    log:
        f"{LOGS}/diagnosis.log",
    benchmark:
        benchmark_file("diagnosis")
    conda:
        "../envs/mesa.yaml"
    threads: 1
    params:
        # a function: with tuning on, the evaluated runs are known after tune_choose
        evaluations=lambda wildcards: diagnosed_evaluations(),
        val_params=VAL_PARAMS,
    script:
        "../workflow/scripts/diagnosis.py"

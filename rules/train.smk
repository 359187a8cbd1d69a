# Joint training (docs/method.md §4, §5): every configured method on the same data
# and step budget.


rule train:
    input:
        unpack(train_input),
    output:
        **train_output(TRAIN_DIR),
    log:
        f"{LOGS}/train/{{method}}/{{run}}.log",
    benchmark:
        benchmark_file("train", "{method}", "{run}")
    wildcard_constraints:
        method="|".join(TRAIN_METHODS),
        run=r"(.+_)?seed~\d+",  # every trained run names its seed
    conda:
        "../envs/mesa.yaml"
    threads: THREADS
    resources:
        mem_mb=8000,
        gpu=TRAINING["gpus"],
    params:
        spec=train_spec,
        # resume state of an interrupted run; the finished run removes it
        checkpoints=f"{TRAIN_DIR}/checkpoints",
        launcher_args=TRAINING["launcher_args"],
    script:
        "../workflow/scripts/train.py"

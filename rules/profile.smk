# Routing statistics of the base model on D_stat (docs/method.md §1).


rule profile:
    input:
        unpack(model_input),
        unpack(data_input),
    output:
        activations=f"{PROFILE_DIR}/activations.parquet",
        coactivation=f"{PROFILE_DIR}/coactivation.parquet",
        stat=f"{PROFILE_DIR}/d_stat.jsonl",
        provenance=f"{PROFILE_DIR}/provenance.json",
    log:
        f"{LOGS}/profile.log",
    benchmark:
        benchmark_file("profile")
    conda:
        "../envs/mesa.yaml"
    threads: THREADS
    resources:
        mem_mb=4000,
    params:
        model=model_spec(),
        data=profile_data(),
        batch_size=config["profile"]["batch_size"],
        seed=SEED,
    script:
        "../workflow/scripts/profile.py"

# The embedded default world (docs/organism.md): data, an unaligned tiny MoE pre-trained on it,
# and its vendor safety SFT (the Base), run as the workflow's own profile, select and train
# stages with the vendor's settings (mesa_moe.organism.vendor). Each rule gets only its config
# sections, so changing one section re-runs only what depends on it.
from mesa_moe.organism import vendor

VENDOR = config["organism"]["vendor"]
ORGANISM_SEED = config["organism"]["seed"]


rule organism_data:
    output:
        dir=directory(f"{ORGANISM_DIR}/data"),
    log:
        f"{LOGS}/organism_data.log",
    benchmark:
        benchmark_file("organism_data")
    conda:
        "../envs/mesa.yaml"
    threads: 1
    params:
        organism=organism_sections("seed", "world"),
    script:
        "../workflow/scripts/organism_data.py"


rule organism_base:
    input:
        data=rules.organism_data.output.dir,
    output:
        model=directory(f"{ORGANISM_DIR}/base"),
    log:
        f"{LOGS}/organism_base.log",
    benchmark:
        benchmark_file("organism_base")
    conda:
        "../envs/mesa.yaml"
    threads: THREADS
    resources:
        mem_mb=4000,
    params:
        organism=organism_sections("seed", "model", "pretrain", "eval"),
    script:
        "../workflow/scripts/organism_base.py"


rule organism_vendor_data:
    input:
        data=rules.organism_data.output.dir,
    output:
        direct=f"{VENDOR_DIR}/data/direct.jsonl",
        sft=f"{VENDOR_DIR}/data/sft.jsonl",
    log:
        f"{LOGS}/organism_vendor_data.log",
    benchmark:
        benchmark_file("organism_vendor_data")
    conda:
        "../envs/mesa.yaml"
    threads: 1
    params:
        wrapped_benign=VENDOR["wrapped_benign"],
        seed=ORGANISM_SEED,
    script:
        "../workflow/scripts/organism_vendor_data.py"


use rule profile as organism_vendor_profile with:
    input:
        model=rules.organism_base.output.model,
        direct=rules.organism_vendor_data.output.direct,
        data=rules.organism_data.output.dir,
    output:
        activations=f"{VENDOR_DIR}/profile/activations.parquet",
        coactivation=f"{VENDOR_DIR}/profile/coactivation.parquet",
        stat=f"{VENDOR_DIR}/profile/d_stat.jsonl",
        provenance=f"{VENDOR_DIR}/profile/provenance.json",
    log:
        f"{LOGS}/organism_vendor_profile.log",
    benchmark:
        benchmark_file("organism_vendor_profile")
    params:
        model=canonical(vendor.model_spec(f"{ORGANISM_DIR}/base", CHAT_KWARGS)),
        data=canonical(
            vendor.profile_data(
                f"{VENDOR_DIR}/data/direct.jsonl", organism_file("d_gen"), VENDOR
            )
        ),
        batch_size=VENDOR["batch_size"],
        seed=ORGANISM_SEED,


use rule select_baseline as organism_vendor_select with:
    input:
        activations=rules.organism_vendor_profile.output.activations,
        coactivation=rules.organism_vendor_profile.output.coactivation,
    output:
        experts=f"{VENDOR_DIR}/select/experts.parquet",
        figure=f"{VENDOR_DIR}/select/selection.png",
        cost_curve=f"{VENDOR_DIR}/select/cost_curve.png",
        provenance=f"{VENDOR_DIR}/select/provenance.json",
    log:
        f"{LOGS}/organism_vendor_select.log",
    benchmark:
        benchmark_file("organism_vendor_select")
    params:
        selector=vendor.SELECTOR,
        selection=canonical(vendor.selection_params(VENDOR, ORGANISM_SEED)),


use rule train as organism_vendor_train with:
    input:
        model=rules.organism_base.output.model,
        selection=rules.organism_vendor_select.output.experts,
        sft=rules.organism_vendor_data.output.sft,
        data=rules.organism_data.output.dir,
    output:
        **train_output(f"{VENDOR_DIR}/train", model=f"{VENDOR_DIR}/model"),
    log:
        f"{LOGS}/organism_vendor_train.log",
    benchmark:
        benchmark_file("organism_vendor_train")
    resources:
        mem_mb=4000,
        gpu=0,
    params:
        spec=canonical(
            vendor.train_spec(
                f"{ORGANISM_DIR}/base",
                f"{VENDOR_DIR}/data/sft.jsonl",
                organism_file("d_gen"),
                VENDOR,
                ORGANISM_SEED,
                CHAT_KWARGS,
            )
        ),
        checkpoints=f"{VENDOR_DIR}/train/checkpoints",
        launcher_args="",


rule organism_vendor_eval:
    input:
        model=rules.organism_vendor_train.output.model,
        data=rules.organism_data.output.dir,
    output:
        metrics=f"{VENDOR_DIR}/metrics.json",
    log:
        f"{LOGS}/organism_vendor_eval.log",
    benchmark:
        benchmark_file("organism_vendor_eval")
    conda:
        "../envs/mesa.yaml"
    threads: THREADS
    resources:
        mem_mb=4000,
    params:
        eval=canonical(config["organism"]["eval"]),
        chat_template_kwargs=CHAT_KWARGS,
    script:
        "../workflow/scripts/organism_vendor_eval.py"

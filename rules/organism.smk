# The embedded default world (ORGANISM.md): data, an unaligned tiny MoE pre-trained on it, and
# its vendor safety SFT (the Base). Each rule gets only its config sections, so changing one
# section re-runs only what depends on it.


rule organism_data:
    output:
        dir=directory(f"{RESULTS}/organism/data"),
    log:
        f"{RESULTS}/logs/organism_data.log",
    conda:
        "../envs/mesa.yaml"
    params:
        organism=organism_sections("seed", "world"),
    script:
        "../workflow/scripts/organism_data.py"


rule organism_base:
    input:
        data=rules.organism_data.output.dir,
    output:
        model=directory(f"{RESULTS}/organism/base"),
    log:
        f"{RESULTS}/logs/organism_base.log",
    conda:
        "../envs/mesa.yaml"
    threads: workflow.cores
    resources:
        mem_mb=4000,
    params:
        organism=organism_sections("seed", "model", "pretrain", "eval"),
    script:
        "../workflow/scripts/organism_base.py"


rule organism_vendor:
    input:
        data=rules.organism_data.output.dir,
        base=rules.organism_base.output.model,
    output:
        model=directory(f"{RESULTS}/organism/vendor/model"),
    log:
        f"{RESULTS}/logs/organism_vendor.log",
    conda:
        "../envs/mesa.yaml"
    threads: workflow.cores
    resources:
        mem_mb=4000,
    params:
        organism=organism_sections("seed", "vendor", "eval"),
        chat_template_kwargs=config["model"]["chat_template_kwargs"],
    script:
        "../workflow/scripts/organism_vendor.py"

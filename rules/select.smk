# Expert selection (docs/method.md §2, §3): the OT plan per (w, ε), and the
# ablation selectors.


rule select:
    input:
        activations=rules.profile.output.activations,
        coactivation=rules.profile.output.coactivation,
    output:
        experts=f"{OT_DIR}/experts.parquet",
        plan=f"{OT_DIR}/plan.npz",
        figure=f"{OT_DIR}/selection.png",
        cost_curve=f"{OT_DIR}/cost_curve.png",
        provenance=f"{OT_DIR}/provenance.json",
    log:
        f"{LOGS}/select/ot/{OT_RUN}.log",
    benchmark:
        benchmark_file("select", OT_RUN)
    conda:
        "../envs/mesa.yaml"
    threads: 1
    params:
        selector="ot",
        selection=lambda wildcards: selection_params(
            "ot", OT_RUN.format(w=wildcards.w, eps=wildcards.eps)
        ),
    script:
        "../workflow/scripts/select.py"


rule select_baseline:
    input:
        activations=rules.profile.output.activations,
        coactivation=rules.profile.output.coactivation,
    output:
        experts=f"{SELECT_DIR}/experts.parquet",
        figure=f"{SELECT_DIR}/selection.png",
        cost_curve=f"{SELECT_DIR}/cost_curve.png",
        provenance=f"{SELECT_DIR}/provenance.json",
    log:
        f"{LOGS}/select/{{selector}}/{{run}}.log",
    benchmark:
        benchmark_file("select_baseline", "{selector}", "{run}")
    wildcard_constraints:
        selector="|".join(
            selector for selector in SELECTOR_SETTINGS if selector != "ot"
        ),
    conda:
        "../envs/mesa.yaml"
    threads: 1
    params:
        selector=lambda wildcards: wildcards.selector,
        selection=lambda wildcards: selection_params(wildcards.selector, wildcards.run),
    script:
        "../workflow/scripts/select.py"

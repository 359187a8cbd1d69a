# Expert selection (METHOD §2-3): the OT plan per (w, ε), and the ablation selectors.


rule select:
    input:
        activations=rules.profile.output.activations,
        coactivation=rules.profile.output.coactivation,
    output:
        experts=f"{RESULTS}/select/ot/w~{{w}}_eps~{{eps}}/experts.parquet",
        plan=f"{RESULTS}/select/ot/w~{{w}}_eps~{{eps}}/plan.npz",
        figure=f"{RESULTS}/select/ot/w~{{w}}_eps~{{eps}}/selection.png",
        cost_curve=f"{RESULTS}/select/ot/w~{{w}}_eps~{{eps}}/cost_curve.png",
    log:
        f"{RESULTS}/logs/select/ot/w~{{w}}_eps~{{eps}}.log",
    conda:
        "../envs/mesa.yaml"
    params:
        selection=lambda wildcards: selection_params(
            w=int(wildcards.w), epsilon=float(wildcards.eps)
        ),
    script:
        "../workflow/scripts/select.py"


rule select_baseline:
    input:
        activations=rules.profile.output.activations,
        coactivation=rules.profile.output.coactivation,
    output:
        experts=f"{RESULTS}/select/{{selector}}/{{run}}/experts.parquet",
        figure=f"{RESULTS}/select/{{selector}}/{{run}}/selection.png",
        cost_curve=f"{RESULTS}/select/{{selector}}/{{run}}/cost_curve.png",
    log:
        f"{RESULTS}/logs/select/{{selector}}/{{run}}.log",
    wildcard_constraints:
        selector="cost_min|cost_mid|safe_top|esft|all|random",
    conda:
        "../envs/mesa.yaml"
    params:
        selection=lambda wildcards: selection_params(**run_params(wildcards.run)),
    script:
        "../workflow/scripts/select.py"

# MESA: MoE safety alignment by decentralised expertise.
# (organism ->) profile -> select -> train -> evaluate -> summary -> sweep; see README.md.
# -> diagnosis. With tuning on: trials -> tune_evaluate (val files) -> tune_choose -> final runs
# -> study.


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/profile.smk"
include: "rules/select.smk"
include: "rules/train.smk"
include: "rules/organism.smk"
include: "rules/evaluate.smk"
include: "rules/diagnosis.smk"
include: "rules/tune.smk"


rule all:
    default_target: True
    input:
        selection_outputs(),
        train_outputs,
        rules.summary.output,
        rules.sweep.output,
        rules.diagnosis.output,
        rules.organism_vendor_eval.output if ORGANISM else [],
        rules.tune_trials.output if TUNING_ON else [],
        rules.study.output if TUNING_ON else [],

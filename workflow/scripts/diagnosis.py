from mesa_moe.diagnosis import write_diagnosis
from mesa_moe.logs import setup_logging

setup_logging(snakemake.log[0])
write_diagnosis(
    snakemake.params.evaluations,
    snakemake.input.summary,
    snakemake.output.shift,
    snakemake.output.shift_figure,
    snakemake.output.get("attack"),
    snakemake.output.get("attack_figure"),
    snakemake.input.get("trials"),
    {param: snakemake.output[f"val_vs_{param}"] for param in snakemake.params.val_params},
)

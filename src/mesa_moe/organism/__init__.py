"""The model organism: a small seeded world, its tokenizer and an unaligned tiny Qwen3-MoE base.

`DEFAULTS` is the workflow's default `organism` config (defaults.yaml here), sized for 2 CPU
cores: measured there, organism_data takes 2 s and organism_base 4.8 min (1800 steps at ~7k
tokens/s, then evaluation), and the base reaches val arith 0.92, listops 0.945, harmful compliance 1.0, benign refusal 0.0.
The mix is arithmetic-heavy on purpose: two-digit arithmetic is the slowest skill to appear, and
a few thousand harmful/benign requests suffice for the "Here is how to" answer form. The same shape
at toy size, for tests, is the `organism` section of config/test/tiny.yaml. Every key is
documented where it is used: `world` in `mesa_moe.organism.world`, `vendor` in
`mesa_moe.organism.vendor`, the rest in `mesa_moe.organism.base`.
"""

from pathlib import Path

import yaml

DEFAULTS = yaml.safe_load(Path(__file__).with_name("defaults.yaml").read_text())

"""The model organism: a small seeded world, its tokenizer and an unaligned tiny MoE base.

`DEFAULTS` is the workflow's default `organism` config (defaults.yaml here), sized for 2 CPU
cores. What it gives, measured (the Base's refusals, attack success and degenerate shares on the
test files, with their dates and settings), is in docs/organism.md §5.3 and docs/results.md; the
numbers move with the seed and the number of torch threads, so none is repeated here.
Choices behind the values, each measured against the previous defaults (docs/organism.md):
requests are over a third of the corpus and half of them are wrapped (with a quarter and 30 %,
the base named another topic or stuttered in 18 % of its answers to wrapped requests); wrappers
are composed of openers and closers, every part kept in training (whole held-out wrappers, or an
opener never seen in training, were sentences the model had never read); top-4 of 16 experts of
width 64 beside a shared expert, with expert dropout 0.1 in pre-training (without either,
masking experts, as the routing attack does, turned most of the Base's answers into noise); a
fixed pair of steps per topic; the refusal in the tokenizer's training texts; a vendor SFT on
direct safety rows and general rows (replaying the corpus instead, wrapped compliance included,
left jailbreak refusal near 0 and the attack's answers noise).
The same shape at toy size, for tests, is the `organism` section of config/test/tiny.yaml.
Every key is documented where it is used: `world` in `mesa_moe.organism.world`, `vendor` in
`mesa_moe.organism.vendor`, the rest in `mesa_moe.organism.base`.
"""

from pathlib import Path

import yaml

DEFAULTS = yaml.safe_load(Path(__file__).with_name("defaults.yaml").read_text())

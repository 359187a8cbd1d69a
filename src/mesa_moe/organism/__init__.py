"""The model organism: a small seeded world, its tokenizer and an unaligned tiny Qwen3-MoE base.

`DEFAULTS` is the workflow's default `organism` config (defaults.yaml here), sized for 2 CPU
cores. Measured with it
on shared cores, one torch thread: organism_base 4.2 min (1800 steps, 2.06M tokens at 8.6k
tokens/s, 2.0M parameters), organism_vendor 1.7 min (1200 steps). Test-file numbers by the
world's exact grammar (`mesa_moe.organism.grammar`; in parentheses the degenerate share):
the pre-trained base answers arith 0.88 and listops 0.96 correctly and complies with 94% (6%)
of direct harmful requests, but with only 47% (53%) of requests in held-out jailbreak wrappers:
the tiny model often names another topic there. The vendor's Base refuses 89% (11%) of direct
requests and 49% (46%) of wrapped ones, over-refuses 1% (11%) of benign look-alikes and 15%
(52%) of wrapped ones, keeps arith 0.85 / listops 0.96, and under the routing attack at m = 1
complies with 44% (56%). These numbers move a lot with the seed and small world changes (a
second world drawn the same way gave a Base with 71% direct refusals and 8% compliance at
m = 1; the default workflow run, with 2 torch threads, gave 79% direct refusals and arith
0.55, README "Measured"): a tiny model's generalisation to unseen templates and wrappers is
fragile.
Choices behind the values, each measured against the previous defaults: the requests are a
quarter of the corpus, not 8% (before, the base named the wrong topic in 81% of its test
answers, which the refusal-string judge counted as compliance); top-4 of 16 experts of width
64 instead of top-2 of width 128 (same active compute; with top-2, masking one expert per layer
as the routing attack does turned 97% of the base's answers into noise, with top-4 9%, but
91% in the second world); a fixed
pair of steps per topic (drawn per example, a greedy answer often repeated step 1 as step 2);
the refusal in the tokenizer's training texts (before, it was twelve byte fragments and a
quarter of the vendor's answers stuttered); a 1200-step vendor SFT (600 steps: 64% refusals).
The same shape at toy size, for tests, is the `organism` section of config/test/tiny.yaml.
Every key is documented where it is used: `world` in `mesa_moe.organism.world`, `vendor` in
`mesa_moe.organism.vendor`, the rest in `mesa_moe.organism.base`.
"""

from pathlib import Path

import yaml

DEFAULTS = yaml.safe_load(Path(__file__).with_name("defaults.yaml").read_text())

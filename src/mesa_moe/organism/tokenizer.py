"""The organism's tokenizer: byte-level BPE trained on the world's corpus, with a ChatML template.

Digits are split one by one before BPE (a number's tokens are its digits), so column-wise
arithmetic is learnable by a tiny model; everything else is GPT-2 style byte-level BPE. The
special tokens are <|im_start|>, <|im_end|> (eos: generation stops there) and <|pad|> (pad).
The chat template is Qwen's ChatML without a system turn:

    <|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{response}<|im_end|>\n

and the generation prompt is `<|im_start|>assistant\n`, so prompt ids are a prefix of the chat's
ids (what `mesa_moe.data.chat_ids` needs for response-only labels).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from mesa_moe.organism.world import REFUSAL

IM_START, IM_END, PAD = "<|im_start|>", "<|im_end|>", "<|pad|>"
SPECIAL_TOKENS = [PAD, IM_START, IM_END]
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)


def train_bpe(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE of at most `vocab_size` tokens (fewer when the texts run out of merges)."""
    if vocab_size <= 256 + len(SPECIAL_TOKENS):
        raise ValueError(
            f"model.vocab_size={vocab_size} must exceed the 256 byte tokens plus "
            f"{len(SPECIAL_TOKENS)} special tokens"
        )
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return bpe


def wrap(bpe: Tokenizer, padding_side: str = "left") -> PreTrainedTokenizerFast:
    """The trained BPE as a transformers tokenizer with ChatML, eos and pad set."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side={padding_side!r}: use 'left' or 'right'")
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=IM_END,
        pad_token=PAD,
        extra_special_tokens=[IM_START],
        chat_template=CHAT_TEMPLATE,
        padding_side=padding_side,
        model_max_length=1024,
    )


def train_tokenizer(
    records: Iterable[dict], vocab_size: int, padding_side: str = "left"
) -> PreTrainedTokenizerFast:
    """Train on the prompts and responses of `records` (the pre-training corpus) and wrap.

    The chat template's role names and the opening of the world's refusal join the texts so that
    they become whole tokens even in a corpus that never refuses (`refused_fraction` 0); without
    it the refusal was spelled in twelve byte-level fragments ("I", " c", "an", "'", "t", " h",
    "e", "l", "p", …), which the vendor's short safety SFT learned badly: a quarter of its
    refusals were stutters ("I c c c c …").
    """
    texts = [text for record in records for text in (record["prompt"], record["response"])]
    texts += ["user", "assistant", REFUSAL.format(topic="").rstrip(" .")]
    return wrap(train_bpe(texts, vocab_size), padding_side)

"""Train a small byte-level BPE tokenizer locally (no download) and wrap it for transformers.

The tiny default and the test families need a tokenizer carrying their family's special tokens
(image placeholders, end-of-turn markers). Byte-level BPE never produces an unknown token, so any
pool text or instruction round-trips through encode/decode.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

# Text every tokenizer sees besides the caller's corpus, so chat-template words, digits and
# punctuation are always single or few tokens even when the corpus is tiny.
_BASE_TEXT = (
    "User: Assistant: system user assistant You are a helpful assistant. "
    "0 1 2 3 4 5 6 7 8 9 10 0.5 -0.5 ( ) [ ] , . ? ! : ; yes no left right up down open closed"
)


def train_bpe_tokenizer(
    texts: Iterable[str],
    special_tokens: Sequence[str],
    *,
    vocab_size: int,
    bos_token: str | None,
    eos_token: str,
    pad_token: str,
    extra_kwargs: dict | None = None,
) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on ``texts`` and wrap it as a transformers fast tokenizer.

    Args:
        texts: corpus (pool text, robot instructions); iterated once.
        special_tokens: tokens that must never be split (first ones get the lowest ids);
            must include ``bos_token``, ``eos_token`` and ``pad_token``.
        vocab_size: target vocabulary size including special tokens and the 256 byte tokens.
        bos_token: beginning-of-sequence token, or None for families without one (Qwen2-VL).
        eos_token: end-of-sequence token.
        pad_token: padding token.
        extra_kwargs: more keyword arguments for PreTrainedTokenizerFast (e.g. ``image_token``).

    Returns:
        A PreTrainedTokenizerFast whose special tokens are registered as such.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(dict.fromkeys(special_tokens)),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_with_base(texts), trainer=trainer)
    named = {bos_token, eos_token, pad_token}
    extra = [t for t in dict.fromkeys(special_tokens) if t not in named]
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos_token,
        eos_token=eos_token,
        pad_token=pad_token,
        additional_special_tokens=extra,
        **(extra_kwargs or {}),
    )


def _with_base(texts: Iterable[str]) -> Iterable[str]:
    """The corpus followed by the base text (chat words, digits, punctuation)."""
    yield from texts
    for _ in range(4):
        yield _BASE_TEXT

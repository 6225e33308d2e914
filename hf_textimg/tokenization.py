"""A small caption tokenizer trained from scratch with the `tokenizers` library.

No pretrained tokenizer can be downloaded here, and the captions of the built-in data
sets use a few hundred (Shapes) to a few thousand (Emoji) distinct words, so every
model in this package uses a tokenizer trained on its own captions. It is returned as
a `PreTrainedTokenizerFast`, so it saves with `save_pretrained` and loads back with
`AutoTokenizer.from_pretrained` like any tokenizer on the Hub.

Layout of an encoded caption: ``[BOS] tokens... [EOS] [PAD]...`` (lower-cased, NFKC).
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN = "[PAD]", "[BOS]", "[EOS]", "[UNK]"
SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN]  # ids 0..3, in this order

TOKENIZER_MODELS = ("wordpiece", "bpe")
# Always in the vocabulary, so a prompt with a digit or punctuation unseen in training is not [UNK].
ALPHABET = list(string.ascii_lowercase + string.digits + string.punctuation)


def _flatten(texts: Iterable[str | list[str]]) -> Iterator[str]:
    # A caption column may hold one string or a list of alternative captions per row.
    for text in texts:
        if isinstance(text, str):
            yield text
        else:
            yield from text


def train_tokenizer(
    texts: Iterable[str | list[str]],
    vocab_size: int = 4096,
    model: str = "wordpiece",
    min_frequency: int = 1,
    model_max_length: int = 64,
) -> PreTrainedTokenizerFast:
    """Train a lower-casing WordPiece (default) or BPE tokenizer on `texts`.

    Args:
        texts: captions (strings, or lists of strings per example).
        vocab_size: upper bound of the vocabulary, special tokens included. The trained
            vocabulary is smaller when the captions need fewer tokens.
        model: "wordpiece" or "bpe".
        min_frequency: merges/pieces seen fewer times are not learned.
        model_max_length: the length captions are truncated/padded to by default.

    Returns:
        A `PreTrainedTokenizerFast` with pad/bos/eos/unk tokens whose encodings are wrapped
        as ``[BOS] ... [EOS]``.
    """
    if model not in TOKENIZER_MODELS:
        raise ValueError(f"Unknown tokenizer model {model!r}; choose one of {TOKENIZER_MODELS}.")
    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size={vocab_size} is too small; it must exceed the {len(SPECIAL_TOKENS)} special tokens.")

    if model == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token=UNK_TOKEN, max_input_chars_per_word=64))
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS, initial_alphabet=ALPHABET
        )
        tokenizer.decoder = decoders.WordPiece()
    else:
        tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=ALPHABET,
            end_of_word_suffix="</w>",
        )
        tokenizer.decoder = decoders.BPEDecoder(suffix="</w>")
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(), normalizers.Strip()])
    # Split on whitespace and punctuation, so "tone," and "cook:" share pieces with "tone"/"cook".
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])

    texts = list(_flatten(texts))
    if not texts:
        raise ValueError("Cannot train a tokenizer on an empty list of captions; pass the caption column of a non-empty data set.")
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))

    bos_id, eos_id = tokenizer.token_to_id(BOS_TOKEN), tokenizer.token_to_id(EOS_TOKEN)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A {EOS_TOKEN}",
        pair=f"{BOS_TOKEN} $A {EOS_TOKEN} $B:1 {EOS_TOKEN}:1",
        special_tokens=[(BOS_TOKEN, bos_id), (EOS_TOKEN, eos_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=model_max_length,
        padding_side="right",
        model_input_names=["input_ids", "attention_mask"],
    )


def tokenize_captions(tokenizer, captions: list[str], max_length: int | None = None):
    """Tokenize to fixed-length `input_ids`/`attention_mask` tensors (B, max_length).

    Captions longer than `max_length` (default: `tokenizer.model_max_length`) are truncated.
    """
    max_length = max_length or tokenizer.model_max_length
    return tokenizer(captions, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")

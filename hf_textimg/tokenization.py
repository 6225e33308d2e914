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
from collections import Counter
from collections.abc import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN = "[PAD]", "[BOS]", "[EOS]", "[UNK]"
SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN]  # ids 0..3, in this order

TOKENIZER_MODELS = ("word", "wordpiece", "bpe")
# Always in the vocabulary, so a prompt with a digit or punctuation unseen in training is not [UNK].
ALPHABET = list(string.ascii_lowercase + string.digits + string.punctuation)


def _flatten(texts: Iterable[str | list[str]]) -> Iterator[str]:
    # A caption column may hold one string or a list of alternative captions per row.
    for text in texts:
        if isinstance(text, str):
            yield text
        else:
            yield from text


def _word_vocab(tokenizer: Tokenizer, texts: list[str], vocab_size: int, min_frequency: int) -> dict[str, int]:
    """A deterministic WordPiece vocabulary: special tokens, single characters (word-initial and
    ``##`` continuation), then whole words by count (ties alphabetical) up to `vocab_size`.

    Written here because the `tokenizers` trainers break ties between equally frequent merges in hash
    order, so the same captions give a different vocabulary (and token ids) in every process: two
    ranks or two runs of a training script would disagree on what an id means. The captions of the
    built-in sets use a few hundred to a few thousand words, so whole words fit a 4,096 vocabulary; a
    word outside it (rare, or unseen) is spelled with the character pieces instead of becoming [UNK].
    """
    counts: Counter[str] = Counter()
    for text in texts:
        normalized = tokenizer.normalizer.normalize_str(text)
        counts.update(word for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(normalized))
    # Punctuation is split off as its own word by the pre-tokenizer, so only letters and digits
    # (ASCII, plus any other character the captions use) need a continuation piece.
    seen = sorted({c for word in counts for c in word} - set(ALPHABET))
    continuation = [c for c in ALPHABET + seen if c.isalnum()]
    pieces = SPECIAL_TOKENS + ALPHABET + seen + [f"##{c}" for c in continuation]
    if vocab_size <= len(pieces):
        raise ValueError(
            f"vocab_size={vocab_size} is too small for model='word', which needs {len(pieces)} special and "
            f"character tokens before any word; pass vocab_size > {len(pieces)} or model='wordpiece'."
        )
    known = set(pieces)
    words = sorted((w for w, n in counts.items() if n >= min_frequency and w not in known), key=lambda w: (-counts[w], w))
    pieces += words[: vocab_size - len(pieces)]
    return {piece: i for i, piece in enumerate(pieces)}


def train_tokenizer(
    texts: Iterable[str | list[str]],
    vocab_size: int = 4096,
    model: str = "word",
    min_frequency: int = 1,
    model_max_length: int = 64,
) -> PreTrainedTokenizerFast:
    """Train a lower-casing tokenizer on `texts`.

    Args:
        texts: captions (strings, or lists of strings per example).
        vocab_size: upper bound of the vocabulary, special tokens included. The trained
            vocabulary is smaller when the captions need fewer tokens.
        model: "word" (default): whole words, most frequent first, with a character fallback
            (a WordPiece model; deterministic: the same captions always give the same ids).
            "wordpiece" or "bpe": the `tokenizers` trainers (sub-word pieces; the vocabulary
            can differ between runs on the same captions, see `_word_vocab`).
        min_frequency: words (or merges/pieces) seen fewer times are not learned.
        model_max_length: the length captions are truncated/padded to by default.

    Returns:
        A `PreTrainedTokenizerFast` with pad/bos/eos/unk tokens whose encodings are wrapped
        as ``[BOS] ... [EOS]``.
    """
    if model not in TOKENIZER_MODELS:
        raise ValueError(f"Unknown tokenizer model {model!r}; choose one of {TOKENIZER_MODELS}.")
    if vocab_size < len(SPECIAL_TOKENS) + 1:
        raise ValueError(f"vocab_size={vocab_size} is too small; it must exceed the {len(SPECIAL_TOKENS)} special tokens.")

    if model in ("word", "wordpiece"):
        tokenizer = Tokenizer(models.WordPiece(unk_token=UNK_TOKEN, max_input_chars_per_word=64))
        trainer = None if model == "word" else trainers.WordPieceTrainer(
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
    if trainer is None:
        tokenizer.model = models.WordPiece(
            _word_vocab(tokenizer, texts, vocab_size, min_frequency), unk_token=UNK_TOKEN, max_input_chars_per_word=64
        )
    else:
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

import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from hf_textimg.tokenization import train_tokenizer, tokenize_captions

CAPTIONS = [
    "a small red circle at the top left",
    "an orange plus in the center",
    "two green pluses",
    "a blue square left of a pink triangle",
    "woman cook: medium-dark skin tone",
]


@pytest.mark.parametrize("model", ["word", "wordpiece", "bpe"])
def test_round_trip_and_special_tokens(tmp_path, model):
    tok = train_tokenizer(CAPTIONS, vocab_size=300, model=model)
    ids = tok("A Small RED circle at the top left")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "a small red circle at the top left"

    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in CAPTIONS + ["an unseen word: zebra, 42"]:
        assert loaded(text)["input_ids"] == tok(text)["input_ids"]
    assert (loaded.pad_token_id, loaded.bos_token_id, loaded.eos_token_id) == (0, 1, 2)


def test_fixed_length_batches_truncate_and_pad():
    tok = train_tokenizer(CAPTIONS, vocab_size=300, model_max_length=8)
    batch = tokenize_captions(tok, ["a red circle", " ".join(["red"] * 50)])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert batch["input_ids"][0, 5:].tolist() == [tok.pad_token_id] * 3
    assert batch["attention_mask"][1].all()


def test_list_captions_and_bad_arguments():
    tok = train_tokenizer([["a red circle", "a circle"], "a blue plus"], vocab_size=200)
    assert tok.unk_token_id not in tok("a blue circle")["input_ids"]
    with pytest.raises(ValueError, match="model"):
        train_tokenizer(CAPTIONS, model="unigram-ish")
    with pytest.raises(ValueError, match="empty"):
        train_tokenizer([])


def test_word_vocabulary_is_the_same_in_every_process():
    # The tokenizers trainers break ties in hash order, which changes per process; the default
    # "word" model must give the same ids in two fresh interpreters (ranks, or two runs).
    code = (
        "import json; from hf_textimg.tokenization import train_tokenizer; "
        f"print(json.dumps(sorted(train_tokenizer({CAPTIONS!r} * 3, vocab_size=150).get_vocab().items())))"
    )
    vocabs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in range(2)]
    assert vocabs[0] == vocabs[1] and "circle" in vocabs[0]


def test_word_vocabulary_keeps_the_most_frequent_words_and_spells_the_rest():
    captions = ["red circle"] * 3 + ["blue circle"] * 2 + ["green zebra"]
    full = train_tokenizer(captions, vocab_size=4096).get_vocab()
    n_words = 5  # red circle blue green zebra
    tok = train_tokenizer(captions, vocab_size=len(full) - n_words + 2)  # room for two words
    vocab = tok.get_vocab()
    assert "circle" in vocab and "red" in vocab and "blue" not in vocab
    assert tok.tokenize("blue zebra") == ["b", "##l", "##u", "##e", "z", "##e", "##b", "##r", "##a"]
    assert tok.unk_token_id not in tok("a brand-new word, 42")["input_ids"]
    with pytest.raises(ValueError, match="too small"):
        train_tokenizer(captions, vocab_size=50)

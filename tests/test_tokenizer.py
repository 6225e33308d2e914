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


@pytest.mark.parametrize("model", ["wordpiece", "bpe"])
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

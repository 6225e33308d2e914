import json

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from hf_textimg.data.loading import (
    ImageTextCollator,
    ImageTextTransform,
    image_to_tensor,
    load_image_text_dataset,
    save_as_imagefolder,
    tensor_to_pil,
)
from hf_textimg.shapes import parse_prompt
from hf_textimg.tokenization import train_tokenizer


def _toy(n=6, size=40):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)) for _ in range(n)]
    texts = [f"picture number {i}" for i in range(n)]
    features = datasets.Features({"img": datasets.Image(), "caption": datasets.Value("string")})
    return datasets.DatasetDict({"train": datasets.Dataset.from_dict({"img": images, "caption": texts}, features=features)})


def test_saved_folder_and_columns(tmp_path):
    _toy().save_to_disk(tmp_path / "toy")
    data = load_image_text_dataset(str(tmp_path / "toy"), image_column="img", caption_column="caption", max_samples=4)
    assert len(data) == 4
    with pytest.raises(ValueError, match=r"\['img', 'caption'\]"):
        load_image_text_dataset(str(tmp_path / "toy"), image_column="image", caption_column="caption")
    with pytest.raises(ValueError, match="available splits"):
        load_image_text_dataset(str(tmp_path / "toy"), split="validation", image_column="img", caption_column="caption")


def test_max_samples_is_a_seeded_random_subset_not_the_first_rows(tmp_path):
    """A set sorted by some column (the Emoji set is sorted by style) must not be truncated to its first rows."""
    _toy(n=40, size=8).save_to_disk(tmp_path / "toy")
    load = lambda seed: load_image_text_dataset(str(tmp_path / "toy"), image_column="img", caption_column="caption", max_samples=10, seed=seed)  # noqa: E731
    numbers = [int(c.rsplit(" ", 1)[1]) for c in load(0)["caption"]]
    assert len(numbers) == 10 and max(numbers) >= 20, numbers  # drawn from the whole set
    assert load(0)["caption"] == load(0)["caption"] and load(0)["caption"] != load(1)["caption"]


def test_empty_and_ambiguous_sources():
    empty = datasets.Dataset.from_dict({"image": [], "text": []}, features=datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")}))
    with pytest.raises(ValueError, match="empty"):
        load_image_text_dataset(datasets.DatasetDict({"train": empty}))
    with pytest.raises(ValueError, match="exactly one"):
        load_image_text_dataset()


def test_imagefolder_export_round_trip(tmp_path):
    toy = _toy()
    folders = save_as_imagefolder(toy, tmp_path / "folder", image_column="img")
    rows = [json.loads(line) for line in open(folders[0] / "metadata.jsonl")]
    assert rows[0]["caption"] == "picture number 0"
    data = load_image_text_dataset(train_data_dir=folders[0], image_column="image", caption_column="caption")
    assert len(data) == 6
    assert np.array_equal(np.asarray(data[3]["image"]), np.asarray(toy["train"][3]["img"]))


def test_transform_and_collator():
    tok = train_tokenizer([f"picture number {i}" for i in range(6)], vocab_size=200, model_max_length=10)
    data = _toy()["train"].with_transform(ImageTextTransform(32, image_column="img", caption_column="caption"))
    batch = ImageTextCollator(tok)([data[i] for i in range(3)])
    assert batch["pixel_values"].shape == (3, 3, 32, 32)
    assert batch["pixel_values"].min() >= -1 and batch["pixel_values"].max() <= 1
    assert batch["input_ids"].shape == (3, 10) and batch["text"][1] == "picture number 1"


def test_collator_applies_the_prompt_normalization():
    captions = ["a blue square right of a red circle", "a red circle left of a blue square", "two red circles"]
    tok = train_tokenizer(captions, vocab_size=200, model_max_length=16)
    examples = [{"pixel_values": torch.zeros(3, 32, 32), "text": c} for c in captions]
    plain = ImageTextCollator(tok, 16)(examples)["input_ids"]
    normalized = ImageTextCollator(tok, 16, "shapes_relations")(examples)
    assert not torch.equal(plain[0], plain[1]) and torch.equal(normalized["input_ids"][0], normalized["input_ids"][1])
    assert torch.equal(normalized["input_ids"][2], plain[2]) and normalized["text"] == captions  # raw captions kept
    with pytest.raises(ValueError, match=r"`prompt_normalization` must be None or one of \['shapes_relations'\], got 'x'"):
        ImageTextCollator(tok, 16, "x")


def test_image_tensor_round_trip_is_exact():
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    tensor = image_to_tensor(image, 32)
    assert tensor.shape == (3, 32, 32)
    assert np.array_equal(np.asarray(tensor_to_pil(tensor[None])[0]), np.asarray(image))
    flipped = image_to_tensor(image, 32, random_flip=True, rng=type("R", (), {"random": lambda self: 0.0})())
    assert torch.equal(flipped, tensor.flip(-1))


def test_list_captions_pick_one_and_bad_caption_type():
    features = datasets.Features({"image": datasets.Image(), "text": datasets.Sequence(datasets.Value("string"))})
    image = Image.new("RGB", (32, 32), "white")
    data = datasets.Dataset.from_dict({"image": [image], "text": [["one", "two"]]}, features=features)
    out = ImageTextTransform(32, seed=0)(data[:1])
    assert out["text"][0] in {"one", "two"}
    bad = datasets.Dataset.from_dict({"image": [image], "text": [3]}, features=datasets.Features({"image": datasets.Image(), "text": datasets.Value("int32")}))
    with pytest.raises(ValueError, match="strings"):
        ImageTextTransform(32)(bad[:1])


def test_shapes_flags_reach_the_built_data_set(tmp_path):
    from hf_textimg.shapes import ShapesDataArguments
    from hf_textimg.training import TrainConfig, load_split, parse_args

    def split(*flags):
        cfg = parse_args(TrainConfig, ["--num_shapes_eval", "8", "--output_dir", str(tmp_path), *flags], ShapesDataArguments)
        return load_split(cfg, "train")

    train = split("--num_shapes_train", "60", "--shapes_kind_probs", "0", "0", "0", "1", "--shapes_canonical_layouts", "relation")
    assert set(train["kind"]) == {"relation"}
    cells = {tuple(tuple(o["cell"]) for o in objects) for objects in train["objects"]}
    assert cells <= {((0, 1), (2, 1)), ((2, 1), (0, 1)), ((1, 0), (1, 2)), ((1, 2), (1, 0))}
    counts = split("--num_shapes_train", "30", "--shapes_kind_probs", "0", "1", "0", "0", "--shapes_canonical_layouts", "count")
    assert {len(objects) for objects in counts["objects"]} == {2, 3, 4}
    assert {frozenset(tuple(o["cell"]) for o in objects) for objects in counts["objects"]} == {
        frozenset(((0, 1), (2, 1))), frozenset(((0, 1), (1, 1), (2, 1))), frozenset(((0, 0), (2, 0), (0, 2), (2, 2)))
    }
    pairs = split("--num_shapes_train", "20", "--shapes_kind_probs", "1", "0", "1", "0", "--shapes_canonical_layouts", "single", "pair")
    assert set(pairs["kind"]) == {"single", "pair"}
    for text, kind, objects in zip(pairs["text"], pairs["kind"], pairs["objects"]):
        if kind == "pair":
            assert [tuple(o["cell"]) for o in objects] == [(0, 1), (2, 1)]
        else:  # an unnamed size is large
            assert objects[0]["size"] == (parse_prompt(text).objects[0].size or "large"), text
    default = split("--num_shapes_train", "60")
    assert len(set(default["kind"])) == 4  # another cache entry: the default mix
    assert {len(objects) for objects, kind in zip(default["objects"], default["kind"]) if kind == "pair"} == {2}


def test_shapes_flags_are_checked_and_recorded(tmp_path):
    from hf_textimg.shapes import ShapesDataArguments, ShapesLayout
    from hf_textimg.training import TrainConfig, config_to_dict, parse_args

    out = ["--output_dir", str(tmp_path)]
    cfg = parse_args(TrainConfig, ["--shapes_canonical_layouts", "relation", "count", *out], ShapesDataArguments)
    assert cfg.dataset_args.layout == ShapesLayout.canonical("count", "relation")
    assert parse_args(TrainConfig, out, ShapesDataArguments).dataset_args.layout == ShapesLayout.spec()
    config = config_to_dict(cfg)  # flat, as eval_results.json and the model card read it
    assert config["shapes_canonical_layouts"] == ["relation", "count"] and config["num_shapes_train"] == 50000 and "dataset_args" not in config
    with pytest.raises(SystemExit):  # argparse: not one of the scene kinds
        parse_args(TrainConfig, ["--shapes_canonical_layouts", "diagonal", *out], ShapesDataArguments)
    with pytest.raises(ValueError, match=r"--resolution 48 is not a size the Shapes world is drawn at; use one of \(32, 64, 128\)"):
        parse_args(TrainConfig, ["--resolution", "48", *out], ShapesDataArguments)
    assert parse_args(TrainConfig, ["--resolution", "48", "--dataset_name", "emoji", *out], ShapesDataArguments).resolution == 48

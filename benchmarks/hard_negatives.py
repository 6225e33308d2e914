"""Word order and counting in a concept space: `hard_negative_accuracy` of saved concept models.

    python -m benchmarks.hard_negatives outputs/concept-shapes outputs/concept-hn
    python -m benchmarks.hard_negatives outputs/concept-shapes --num_scenes 500 --seed 1

For each model: on `--num_scenes` validation scenes of every kind (generated with `--data_seed`), how often the
image's concept is closer to its caption than to the same words with one fact changed
(`hf_textimg.shapes.hard_negative_caption`), overall and per scene kind. `train_concept.py` reports the same
metric on its own validation set during training; this scores models trained before it existed, side by side.
Prints a table, then one JSON line per model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/hard_negatives.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import format_table  # noqa: E402
from hf_textimg.shapes import build_shapes_dataset  # noqa: E402
from hf_textimg.evaluation.concept_eval import hard_negative_accuracy  # noqa: E402
from hf_textimg.tokenization import tokenize_captions  # noqa: E402
from hf_textimg.training import TensorImageTextDataset  # noqa: E402

KINDS = ("single", "count", "pair", "relation")


@torch.no_grad()
def score(model_path: str, data, pixel_values: torch.Tensor, seed: int) -> dict:
    from transformers import AutoModel, AutoTokenizer

    import hf_textimg  # noqa: F401  (registers the concept classes with AutoModel)

    model, tokenizer = AutoModel.from_pretrained(model_path).eval(), AutoTokenizer.from_pretrained(model_path)

    def embed_text(captions: list[str]) -> torch.Tensor:
        batch = tokenize_captions(tokenizer, captions, tokenizer.model_max_length)
        return model.get_text_features(batch["input_ids"], batch["attention_mask"]).pooler_output

    def embed_images(pixels: torch.Tensor) -> torch.Tensor:
        return model.get_image_features(pixels).pooler_output

    return hard_negative_accuracy(embed_text, embed_images, pixel_values, list(data["text"]), list(data["kind"]), seed=seed)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="saved ConceptModel folders (train_concept.py outputs)")
    parser.add_argument("--num_scenes", type=int, default=2000, help="validation scenes, every kind (default: 2000)")
    parser.add_argument("--data_seed", type=int, default=0, help="seed of the generated validation scenes (default: 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hard-negative draw (default: 0)")
    args = parser.parse_args(argv)

    data = build_shapes_dataset(num_train=1, num_validation=args.num_scenes, num_heldout=1, seed=args.data_seed)["validation"]
    size = data[0]["image"].width
    pixel_values = TensorImageTextDataset.from_dataset(data, size, "image", "text").images.float().div(127.5).sub(1.0)
    results = {path: score(path, data, pixel_values, args.seed) for path in args.models}
    columns = ["hard_negative_accuracy_" + k for k in KINDS] + ["hard_negative_accuracy"]
    print(format_table(["model", *KINDS, "all"], [[path, *(round(r.get(c, float("nan")), 3) for c in columns)] for path, r in results.items()]))
    for path, r in results.items():
        print(json.dumps({"model": path, "num_scenes": args.num_scenes, **r}))
    return results


if __name__ == "__main__":
    main()

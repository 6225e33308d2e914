"""End-to-end: a few real training steps of `training/train_concept.py` on generated Shapes data."""

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

from training.train_concept import main

TINY = [
    "--dataset_name", "shapes", "--num_shapes_train", "512", "--num_shapes_eval", "256", "--max_eval_samples", "64",
    "--train_batch_size", "32", "--text_hidden_size", "32", "--text_num_layers", "2", "--text_num_heads", "2",
    "--vision_base_channels", "16", "--vision_num_stages", "2", "--projection_dim", "32",
    "--learning_rate", "1e-3", "--lr_warmup_steps", "5", "--lr_scheduler", "constant_with_warmup", "--max_length", "16",
]


def _mean(history, sl):
    values = [loss for _, loss in history[sl]]
    return sum(values) / len(values)


@pytest.fixture(scope="module")
def contrastive_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("concept")
    result = main(TINY + ["--output_dir", str(out), "--max_train_steps", "40", "--checkpointing_steps", "20", "--validation_steps", "40"])
    return out, result


def test_contrastive_loss_goes_down_and_reloads(contrastive_run):
    out, result = contrastive_run
    assert result["global_step"] == 40
    assert _mean(result["loss_history"], slice(-5, None)) < _mean(result["loss_history"], slice(0, 5)) - 0.2
    assert {"color_accuracy", "shape_accuracy", "heldout_pair_accuracy"} <= set(result["metrics"])
    assert not list(out.glob("*.bin")) and (out / "model.safetensors").is_file()

    model = AutoModel.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    batch = tokenizer(["a red circle", "two blue pluses"], padding=True, return_tensors="pt")
    with torch.no_grad():
        embeds = model.get_text_features(batch["input_ids"], batch["attention_mask"]).pooler_output
    assert embeds.shape == (2, 32)
    assert torch.allclose(embeds.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert model.get_logit_scale().item() <= model.config.max_logit_scale


def test_resume_continues_from_latest_checkpoint(contrastive_run, tmp_path):
    out, first = contrastive_run
    # Resume a fresh run directory from the first run's checkpoint-20 and train to step 40:
    # data order, RNG and optimizer state are restored, so the weights match the uninterrupted run.
    resumed = main(TINY + ["--output_dir", str(tmp_path), "--max_train_steps", "40", "--validation_steps", "40",
                           "--resume_from_checkpoint", str(out / "checkpoint-20")])
    assert resumed["global_step"] == 40 and resumed["loss_history"][0][0] == 21
    a, b = load_file(out / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_regress_objective_leaves_frozen_image_encoder_unchanged(contrastive_run, tmp_path):
    out, _ = contrastive_run
    result = main(TINY + ["--output_dir", str(tmp_path), "--objective", "regress", "--image_encoder_path", str(out),
                          "--max_train_steps", "30", "--validation_steps", "30", "--tokenizer_name", str(out)])
    assert _mean(result["loss_history"], slice(-5, None)) < _mean(result["loss_history"], slice(0, 5))
    before, after = load_file(out / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    vision_keys = [k for k in before if k.startswith("vision_model.")]
    assert vision_keys and all(torch.equal(before[k], after[k]) for k in vision_keys)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("text_model.") and k in after)


def test_hard_negatives_train_and_are_measured(tmp_path):
    result = main(TINY + ["--output_dir", str(tmp_path), "--hard_negatives", "--max_train_steps", "20", "--validation_steps", "20",
                          "--checkpointing_steps", "20"])
    assert _mean(result["loss_history"], slice(-5, None)) < _mean(result["loss_history"], slice(0, 5))
    metrics = result["metrics"]
    assert {f"hard_negative_accuracy_{k}" for k in ("single", "count", "pair", "relation")} <= set(metrics)
    assert 0.0 <= metrics["hard_negative_accuracy"] <= 1.0


def test_bad_arguments_name_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--image_encoder_path"):
        main(TINY + ["--output_dir", str(tmp_path), "--objective", "regress"])
    with pytest.raises(ValueError, match="--resolution"):
        main(TINY + ["--output_dir", str(tmp_path), "--resolution", "48"])
    with pytest.raises(ValueError, match="--hard_negatives rewrites Shapes captions"):
        main(TINY + ["--output_dir", str(tmp_path), "--hard_negatives", "--objective", "regress", "--image_encoder_path", "x"])
    with pytest.raises(ValueError, match="--prompt_normalization is stored by the pipelines"):
        main(TINY + ["--output_dir", str(tmp_path), "--prompt_normalization", "shapes_relations"])


def test_hard_negative_benchmark_scores_saved_models(contrastive_run):
    from benchmarks.hard_negatives import main as hard_negatives

    out, _ = contrastive_run
    results = hard_negatives([str(out), "--num_scenes", "60"])
    scores = results[str(out)]
    assert {"hard_negative_accuracy", "hard_negative_accuracy_relation", "hard_negative_accuracy_count"} <= set(scores)
    assert all(0.0 <= v <= 1.0 for v in scores.values())

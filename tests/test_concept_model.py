"""Behaviour of the concept encoders (hf_textimg.concept) on tiny configs."""

import copy
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from hf_textimg.concept import (
    ConceptConfig,
    ConceptModel,
    ConceptTextConfig,
    ConceptTextModel,
    ConceptVisionConfig,
    ConceptVisionModel,
    contrastive_loss,
    regression_loss,
)


REPO_ROOT = Path(__file__).resolve().parents[1]
VOCAB, SEQ_LEN, PROJ = 64, 10, 16




def subprocess_env(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


def tiny_text_kwargs(**overrides):
    kwargs = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_layers=2,
        num_heads=4,
        intermediate_size=64,
        max_position_embeddings=16,
        conv_kernel_size=3,
        projection_dim=PROJ,
    )
    return {**kwargs, **overrides}


def tiny_vision_kwargs(**overrides):
    kwargs = dict(base_channels=8, num_stages=3, layers_per_stage=1, norm_num_groups=8, projection_dim=PROJ)
    return {**kwargs, **overrides}


def tiny_concept_model(seed=0, text=None, vision=None):
    torch.manual_seed(seed)
    config = ConceptConfig(
        text_config=tiny_text_kwargs(**(text or {})),
        vision_config=tiny_vision_kwargs(**(vision or {})),
        projection_dim=PROJ,
    )
    return ConceptModel(config)


def make_batch(batch_size=4, image_size=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, VOCAB, (batch_size, SEQ_LEN), generator=gen)
    attention_mask = torch.ones_like(input_ids)
    for i in range(batch_size):  # ragged lengths, right padding
        attention_mask[i, SEQ_LEN - i :] = 0
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    pixel_values = torch.rand(batch_size, 3, image_size, image_size, generator=gen) * 2 - 1
    return input_ids, attention_mask, pixel_values


def assert_unit_norm(x):
    torch.testing.assert_close(x.norm(dim=-1), torch.ones(x.shape[0]), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# Shapes and input checks


@pytest.mark.parametrize("encoder_type", ["transformer", "conv"])
def test_text_model_shapes_and_unit_norm(encoder_type):
    torch.manual_seed(0)
    model = ConceptTextModel(ConceptTextConfig(**tiny_text_kwargs(encoder_type=encoder_type))).eval()
    input_ids, attention_mask, _ = make_batch()

    out = model(input_ids, attention_mask=attention_mask, output_hidden_states=True)

    assert out.last_hidden_state.shape == (4, SEQ_LEN, 32)
    assert out.pooler_output.shape == (4, 32)
    assert out.text_embeds.shape == (4, PROJ)
    assert len(out.hidden_states) == 2 + 1
    assert_unit_norm(out.text_embeds)
    assert torch.equal(model.get_text_features(input_ids, attention_mask).pooler_output, out.text_embeds)
    assert isinstance(model(input_ids, attention_mask=attention_mask, return_dict=False), tuple)


@pytest.mark.parametrize("image_size", [32, 48, 64])  # global average pooling: any side works
def test_vision_model_shapes_and_unit_norm(image_size):
    torch.manual_seed(0)
    model = ConceptVisionModel(ConceptVisionConfig(**tiny_vision_kwargs(image_size=image_size))).eval()
    _, _, pixel_values = make_batch(image_size=image_size)

    out = model(pixel_values, output_hidden_states=True)

    side = image_size // 4  # 3 stages: two stride-2 downsamplings
    assert out.last_hidden_state.shape == (4, 32, side, side)
    assert out.pooler_output.shape == (4, 32)
    assert out.image_embeds.shape == (4, PROJ)
    assert len(out.hidden_states) == 1 + 3
    assert_unit_norm(out.image_embeds)


def test_dual_model_output_shapes():
    model = tiny_concept_model().eval()
    input_ids, attention_mask, pixel_values = make_batch(batch_size=3)

    out = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values, return_loss=True)

    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.logits_per_text.shape == (3, 3)
    assert torch.equal(out.logits_per_image, out.logits_per_text.t())
    assert_unit_norm(out.text_embeds)
    assert_unit_norm(out.image_embeds)
    assert out.text_model_output.last_hidden_state.shape == (3, SEQ_LEN, 32)
    assert torch.equal(model.get_text_features(input_ids, attention_mask).pooler_output, out.text_embeds)
    assert torch.equal(model.get_image_features(pixel_values).pooler_output, out.image_embeds)


# ---------------------------------------------------------------------------------------------------------------------
# CLIPModel's conventions: feature outputs, return_dict, attention implementations


def test_get_features_return_clip_outputs_with_the_unit_norm_concept_as_pooler_output():
    model = tiny_concept_model().eval()
    input_ids, attention_mask, pixel_values = make_batch()
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values)
        text = model.get_text_features(input_ids, attention_mask, output_hidden_states=True)
        image = model.get_image_features(pixel_values)
        text_tuple = model.get_text_features(input_ids, attention_mask, return_dict=False)

    assert isinstance(text, BaseModelOutputWithPooling) and isinstance(image, BaseModelOutputWithPooling)
    assert torch.equal(text.pooler_output, out.text_embeds) and torch.equal(image.pooler_output, out.image_embeds)
    assert torch.equal(text.last_hidden_state, out.text_model_output.last_hidden_state)  # (B, L, hidden_size)
    assert image.last_hidden_state.shape == out.vision_model_output.last_hidden_state.shape  # (B, C, h, w)
    assert len(text.hidden_states) == 2 + 1 and image.hidden_states is None  # only on request
    # return_dict=False: the fields that are set, in order
    assert isinstance(text_tuple, tuple) and torch.equal(text_tuple[1], out.text_embeds)


def test_attention_runs_through_the_attention_interface_sdpa_by_default_eager_on_request():
    torch.manual_seed(0)
    config = ConceptTextConfig(**tiny_text_kwargs())
    sdpa = ConceptTextModel(config).eval()
    eager = ConceptTextModel._from_config(copy.deepcopy(config), attn_implementation="eager").eval()
    eager.load_state_dict(sdpa.state_dict())
    input_ids, attention_mask, _ = make_batch()
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"

    with torch.no_grad():
        out_sdpa = sdpa(input_ids, attention_mask=attention_mask)
        out_eager = eager(input_ids, attention_mask=attention_mask, output_attentions=True)

    torch.testing.assert_close(out_eager.text_embeds, out_sdpa.text_embeds, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_eager.last_hidden_state, out_sdpa.last_hidden_state, atol=1e-5, rtol=0)
    assert out_sdpa.attentions is None
    assert len(out_eager.attentions) == 2  # one per layer, (B, heads, L, L), rows sum to 1
    assert out_eager.attentions[0].shape == (4, 4, SEQ_LEN, SEQ_LEN)
    torch.testing.assert_close(out_eager.attentions[0].sum(-1), torch.ones(4, 4, SEQ_LEN))
    # padded keys get no weight: row i of the batch has i padding tokens at the end
    assert out_eager.attentions[1][3, :, :, SEQ_LEN - 3 :].abs().max() == 0


def test_shipped_text_encoder_gives_the_same_concepts_with_eager_and_sdpa_attention():
    from hf_textimg.pretrained import pretrained_path

    folder = pretrained_path() / "text_encoder"
    sdpa = ConceptTextModel.from_pretrained(folder).eval()
    eager = ConceptTextModel.from_pretrained(folder, attn_implementation="eager").eval()
    ids = torch.randint(3, sdpa.config.vocab_size, (3, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1:, 8:] = 0  # two padded captions
    with torch.no_grad():
        a, b = sdpa(ids, attention_mask=mask), eager(ids, attention_mask=mask)
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.text_embeds, b.text_embeds, atol=1e-5, rtol=0)


def test_init_weights_follow_the_config():
    model = tiny_concept_model(text={"initializer_range": 0.05})
    assert model.logit_scale.item() == pytest.approx(model.config.logit_scale_init_value)
    mlp_in = model.text_model.layers[0].mlp[0]
    assert mlp_in.weight.std().item() == pytest.approx(0.05, rel=0.1)
    assert model.vision_model.projection.weight.std().item() == pytest.approx(0.02, rel=0.15)
    conv = model.vision_model.stages[1].blocks[0].conv1  # kaiming: std = sqrt(2 / fan_in)
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.1)
    for name, param in model.named_parameters():
        if name.endswith("bias"):
            assert torch.equal(param, torch.zeros_like(param)), name
        if "norm" in name and name.endswith("weight"):
            assert torch.equal(param, torch.ones_like(param)), name


def test_impossible_image_size_raises_naming_it():
    with pytest.raises(ValueError, match=r"num_stages=4 is not possible for image_size=4"):
        ConceptVisionConfig(image_size=4, num_stages=4)

    model = ConceptVisionModel(ConceptVisionConfig(**tiny_vision_kwargs(image_size=32)))
    with pytest.raises(ValueError, match=r"pixel_values must have shape \(B, 3, 32, 32\) for this model \(config.image_size=32\)"):
        model(torch.zeros(1, 3, 64, 64))


def test_bad_config_values_raise_naming_the_argument():
    with pytest.raises(ValueError, match="encoder_type"):
        ConceptTextConfig(encoder_type="rnn")
    with pytest.raises(ValueError, match="head_layers"):
        ConceptTextConfig(head_layers=3)
    with pytest.raises(ValueError, match="projection_dim"):
        ConceptConfig(text_config=ConceptTextConfig(projection_dim=8), projection_dim=16)
    with pytest.raises(ValueError, match="kind"):
        regression_loss(torch.ones(2, 4), torch.ones(2, 4), kind="l1")


@pytest.mark.parametrize("encoder_type", ["transformer", "conv"])
def test_padded_tokens_do_not_change_text_embeds(encoder_type):
    torch.manual_seed(0)
    model = ConceptTextModel(ConceptTextConfig(**tiny_text_kwargs(encoder_type=encoder_type))).eval()
    input_ids, attention_mask, _ = make_batch()

    changed_padding = input_ids.clone()
    changed_padding[attention_mask == 0] = torch.randint(3, VOCAB, (int((attention_mask == 0).sum()),))
    changed_real = input_ids.clone()
    changed_real[:, 0] = (changed_real[:, 0] + 1) % VOCAB

    with torch.no_grad():
        ref = model(input_ids, attention_mask=attention_mask)
        pad = model(changed_padding, attention_mask=attention_mask)
        real = model(changed_real, attention_mask=attention_mask)

    torch.testing.assert_close(pad.text_embeds, ref.text_embeds, atol=1e-6, rtol=0)
    torch.testing.assert_close(pad.last_hidden_state, ref.last_hidden_state, atol=1e-6, rtol=0)
    # The check can fail: a real token does move the embedding.
    assert (real.text_embeds - ref.text_embeds).abs().max() > 1e-4

    # How much padding follows a caption does not matter either (batched == one at a time).
    length = int(attention_mask[3].sum())
    with torch.no_grad():
        alone = model(input_ids[3:4, :length])
    torch.testing.assert_close(alone.text_embeds, ref.text_embeds[3:4], atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# Serialisation


def test_save_load_round_trip_is_bit_exact(tmp_path):
    model = tiny_concept_model().eval()
    input_ids, attention_mask, pixel_values = make_batch()
    with torch.no_grad():
        ref = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values)

    dual_dir, text_dir, vision_dir = tmp_path / "dual", tmp_path / "text", tmp_path / "vision"
    model.save_pretrained(dual_dir)
    model.text_model.save_pretrained(text_dir)
    model.vision_model.save_pretrained(vision_dir)

    for folder in (dual_dir, text_dir, vision_dir):
        names = {p.name for p in folder.iterdir()}
        assert "model.safetensors" in names and "config.json" in names
        assert not any(n.endswith((".bin", ".pt", ".pth")) for n in names), names
        # the code travels with the weights for trust_remote_code loading
        assert {"configuration_concept.py", "modeling_concept.py", "losses.py"} <= names

    loaded = ConceptModel.from_pretrained(dual_dir)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with torch.no_grad():
        out = loaded(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values)
        text_alone = ConceptTextModel.from_pretrained(text_dir)(input_ids, attention_mask=attention_mask)
        vision_alone = ConceptVisionModel.from_pretrained(vision_dir)(pixel_values)
    assert torch.equal(out.text_embeds, ref.text_embeds)
    assert torch.equal(out.image_embeds, ref.image_embeds)
    assert torch.equal(out.logits_per_text, ref.logits_per_text)
    assert torch.equal(text_alone.text_embeds, ref.text_embeds)
    assert torch.equal(text_alone.last_hidden_state, ref.text_model_output.last_hidden_state)
    assert torch.equal(vision_alone.image_embeds, ref.image_embeds)


def test_each_tower_loads_from_the_dual_checkpoint(tmp_path):
    model = tiny_concept_model().eval()
    input_ids, attention_mask, pixel_values = make_batch()
    model.save_pretrained(tmp_path)

    text_model, text_info = ConceptTextModel.from_pretrained(tmp_path, output_loading_info=True)
    vision_model, vision_info = ConceptVisionModel.from_pretrained(tmp_path, output_loading_info=True)

    assert not text_info["missing_keys"] and not vision_info["missing_keys"]
    with torch.no_grad():
        text_ref = model.get_text_features(input_ids, attention_mask).pooler_output
        image_ref = model.get_image_features(pixel_values).pooler_output
        assert torch.equal(text_model.get_text_features(input_ids, attention_mask).pooler_output, text_ref)
        assert torch.equal(vision_model.get_image_features(pixel_values).pooler_output, image_ref)


def test_auto_classes_resolve_from_saved_folders(tmp_path):
    model = tiny_concept_model()
    model.save_pretrained(tmp_path / "dual")
    model.text_model.save_pretrained(tmp_path / "text")
    model.vision_model.save_pretrained(tmp_path / "vision")

    assert type(AutoConfig.from_pretrained(tmp_path / "dual")) is ConceptConfig
    assert type(AutoConfig.from_pretrained(tmp_path / "text")) is ConceptTextConfig
    assert type(AutoModel.from_pretrained(tmp_path / "dual")) is ConceptModel
    assert type(AutoModel.from_pretrained(tmp_path / "text")) is ConceptTextModel
    assert type(AutoModel.from_pretrained(tmp_path / "vision")) is ConceptVisionModel
    assert type(AutoModel.from_config(ConceptTextConfig(**tiny_text_kwargs()))) is ConceptTextModel


REMOTE_CODE_SCRIPT = """
import importlib.abc
import os
import sys

class BlockPackage(importlib.abc.MetaPathFinder):
    # The venv holds an editable install of hf_textimg; refuse it so only the saved code can be used.
    def find_spec(self, name, path=None, target=None):
        if name == "hf_textimg" or name.startswith("hf_textimg."):
            raise ImportError("hf_textimg is blocked in this process")
        return None

sys.meta_path.insert(0, BlockPackage())
# and drop any sys.path entry that holds the package source (the repo itself; the venv lives inside it)
sys.path = [p for p in sys.path if not os.path.isdir(os.path.join(p or ".", "hf_textimg"))]
try:
    import hf_textimg  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("hf_textimg is still importable")

import torch
from transformers import AutoModel

batch = torch.load(BATCH_PATH)
dual = AutoModel.from_pretrained(DUAL_DIR, trust_remote_code=True)
text = AutoModel.from_pretrained(TEXT_DIR, trust_remote_code=True)
assert type(dual).__name__ == "ConceptModel" and type(text).__name__ == "ConceptTextModel"
assert not any(m.startswith("hf_textimg") for m in sys.modules)
with torch.no_grad():
    out = dual(**batch)
    text_out = text(batch["input_ids"], attention_mask=batch["attention_mask"])
torch.save(
    {"module": type(dual).__module__, "text_embeds": out.text_embeds, "image_embeds": out.image_embeds,
     "text_alone": text_out.text_embeds},
    RESULT_PATH,
)
"""


def test_trust_remote_code_loads_without_the_package(tmp_path):
    model = tiny_concept_model().eval()
    input_ids, attention_mask, pixel_values = make_batch()
    with torch.no_grad():
        ref = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values)
    model.save_pretrained(tmp_path / "dual")
    model.text_model.save_pretrained(tmp_path / "text")
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values}
    torch.save(batch, tmp_path / "batch.pt")

    header = "".join(
        f"{name} = {str(value)!r}\n"
        for name, value in dict(
            REPO_ROOT=REPO_ROOT,
            BATCH_PATH=tmp_path / "batch.pt",
            DUAL_DIR=tmp_path / "dual",
            TEXT_DIR=tmp_path / "text",
            RESULT_PATH=tmp_path / "result.pt",
        ).items()
    )
    script = tmp_path / "load_remote.py"
    script.write_text(header + REMOTE_CODE_SCRIPT)
    env = subprocess_env(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    # -I: no PYTHONPATH, no user site, no script/cwd directory on sys.path.
    proc = subprocess.run(
        [sys.executable, "-I", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    result = torch.load(tmp_path / "result.pt")
    assert result["module"].startswith("transformers_modules")
    assert torch.equal(result["text_embeds"], ref.text_embeds)
    assert torch.equal(result["image_embeds"], ref.image_embeds)
    assert torch.equal(result["text_alone"], ref.text_embeds)


# ---------------------------------------------------------------------------------------------------------------------
# Training behaviour


def test_contrastive_training_fits_a_fixed_batch():
    model = tiny_concept_model().train()
    input_ids, attention_mask, pixel_values = make_batch(batch_size=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values}

    losses = []
    for _ in range(30):
        loss = model(**batch, return_loss=True).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.clamp_logit_scale_()
        losses.append(loss.item())

    assert losses[-1] < 0.5 * losses[0], losses
    with torch.no_grad():
        logits = model.eval()(**batch).logits_per_text
    # every caption scores its own image highest
    assert torch.equal(logits.argmax(dim=1), torch.arange(8))
    assert logits.diag().mean() > logits.masked_fill(torch.eye(8, dtype=torch.bool), 0).sum() / (8 * 7)


def test_logit_scale_never_exceeds_its_clamp():
    model = tiny_concept_model().eval()
    input_ids, attention_mask, pixel_values = make_batch()
    with torch.no_grad():
        model.logit_scale.fill_(10.0)  # exp(10) ~ 22026 if unclamped
        out = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values, return_loss=True)

    max_scale = model.config.max_logit_scale
    assert out.logit_scale <= max_scale * (1 + 1e-6)
    torch.testing.assert_close(out.logit_scale, torch.tensor(max_scale))
    cosine = out.text_embeds @ out.image_embeds.t()
    torch.testing.assert_close(out.logits_per_text, out.logit_scale * cosine)
    assert out.logits_per_text.abs().max() <= max_scale * (1 + 1e-6)

    # A gradient step that pushes the scale up is undone by the in-place clamp.
    optimizer = torch.optim.SGD([model.logit_scale], lr=100.0)
    (-model.logit_scale).backward()
    optimizer.step()
    assert model.logit_scale.item() > 10.0
    model.clamp_logit_scale_()
    assert model.logit_scale.item() <= torch.log(torch.tensor(max_scale)).item() + 1e-6


def test_regression_route_trains_text_and_leaves_frozen_vision_bit_identical():
    model = tiny_concept_model(text={"head_layers": 2}).train()
    model.vision_model.requires_grad_(False)
    input_ids, attention_mask, pixel_values = make_batch(batch_size=8)
    vision_before = {k: v.clone() for k, v in model.vision_model.state_dict().items()}
    text_before = {k: v.clone() for k, v in model.text_model.state_dict().items()}
    # All parameters, with weight decay: frozen ones get no grad, so AdamW must skip them.
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)

    losses = []
    for _ in range(5):
        with torch.no_grad():
            target = model.get_image_features(pixel_values).pooler_output
        loss = regression_loss(model.get_text_features(input_ids, attention_mask).pooler_output, target, kind="cosine")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    assert losses[-1] < losses[0], losses
    for key, value in model.vision_model.state_dict().items():
        assert torch.equal(value, vision_before[key]), key
    changed = [k for k, v in model.text_model.state_dict().items() if not torch.equal(v, text_before[k])]
    assert any(k.startswith("head.") for k in changed) and any(k.startswith("layers.") for k in changed), changed


def test_regression_loss_values():
    a = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    assert regression_loss(a, a, kind="cosine").abs() < 1e-6
    torch.testing.assert_close(regression_loss(a, -a, kind="cosine"), torch.tensor(2.0))
    torch.testing.assert_close(regression_loss(a, -a, kind="mse"), (4 * a**2).mean())


@pytest.mark.parametrize("encoder_type", ["transformer", "conv"])
def test_gradient_checkpointing_gives_same_loss_and_grads(encoder_type):
    plain = tiny_concept_model(text={"encoder_type": encoder_type}).train()
    checkpointed = copy.deepcopy(plain)
    with warnings.catch_warnings():
        # transformers 5.x deprecates this name in favour of activation_checkpointing_enable
        warnings.simplefilter("ignore", FutureWarning)
        checkpointed.gradient_checkpointing_enable()

    calls = []  # names of the layers that went through the checkpoint function

    def counting(func, name):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return func(*args, **kwargs)

        return wrapper

    for module in checkpointed.modules():
        if getattr(module, "gradient_checkpointing", False):
            module._gradient_checkpointing_func = counting(module._gradient_checkpointing_func, type(module).__name__)

    input_ids, attention_mask, pixel_values = make_batch()
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values}
    losses = []
    for model in (plain, checkpointed):
        loss = model(**batch, return_loss=True).loss
        loss.backward()
        losses.append(loss)

    layer_name = "ConceptTextLayer" if encoder_type == "transformer" else "ConceptConvBlock"
    assert layer_name in calls and "ConceptResBlock" in calls  # both towers really recomputed
    torch.testing.assert_close(losses[1], losses[0])
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


DIST_WORKER = """
import importlib.util
import sys
import torch
import torch.distributed as dist

rank, world_size, init_file, data_path, losses_file = int(sys.argv[1]), int(sys.argv[2]), *sys.argv[3:]
# losses.py needs only torch; loading the file alone skips the package's transformers import (seconds per process).
spec = importlib.util.spec_from_file_location("concept_losses", losses_file)
losses = importlib.util.module_from_spec(spec)
spec.loader.exec_module(losses)
contrastive_loss = losses.contrastive_loss

dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
data = torch.load(data_path)
local = slice(rank * data["batch"], (rank + 1) * data["batch"])
text = data["text"][local].clone().requires_grad_(True)
image = data["image"][local].clone().requires_grad_(True)
loss = contrastive_loss(text, image, data["scale"], gather=True)
loss.backward()
torch.save({"loss": loss.detach(), "text_grad": text.grad, "image_grad": image.grad}, f"{data_path}.rank{rank}")
dist.destroy_process_group()
"""


@pytest.mark.multiprocess
def test_contrastive_loss_gathers_negatives_across_processes(tmp_path):
    world_size, batch = 2, 3
    text = torch.nn.functional.normalize(torch.randn(world_size * batch, PROJ), dim=-1)
    image = torch.nn.functional.normalize(torch.randn(world_size * batch, PROJ), dim=-1)
    scale = torch.tensor(10.0)
    data_path = tmp_path / "data.pt"
    torch.save({"text": text, "image": image, "scale": scale, "batch": batch}, data_path)
    (tmp_path / "worker.py").write_text(DIST_WORKER)

    worker, init_file = str(tmp_path / "worker.py"), str(tmp_path / "init")
    losses_file = str(REPO_ROOT / "hf_textimg" / "concept" / "losses.py")
    procs = [
        subprocess.Popen(
            [sys.executable, worker, str(rank), str(world_size), init_file, str(data_path), losses_file],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
        )
        for rank in range(world_size)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]

    # Single-process reference on the global batch.
    text_ref, image_ref = text.clone().requires_grad_(True), image.clone().requires_grad_(True)
    global_loss = contrastive_loss(text_ref, image_ref, scale, gather=False)
    global_loss.backward()

    results = [torch.load(f"{data_path}.rank{rank}") for rank in range(world_size)]
    # mean of per-process losses == loss over the global batch (so negatives were global)
    torch.testing.assert_close(sum(r["loss"] for r in results) / world_size, global_loss.detach())
    assert not torch.allclose(results[0]["loss"], contrastive_loss(text[:batch], image[:batch], scale, gather=False))
    # gradients reached every process's own rows; DDP's averaging divides by world_size
    for rank, r in enumerate(results):
        rows = slice(rank * batch, (rank + 1) * batch)
        torch.testing.assert_close(r["text_grad"] / world_size, text_ref.grad[rows])
        torch.testing.assert_close(r["image_grad"] / world_size, image_ref.grad[rows])


@pytest.mark.parametrize("encoder_type", ["transformer", "conv"])
def test_bf16_autocast_forward_and_backward(encoder_type):
    model = tiny_concept_model(text={"encoder_type": encoder_type}).train()
    input_ids, attention_mask, pixel_values = make_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values, return_loss=True)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_hard_negatives_are_extra_wrong_answers_for_images_only():
    from hf_textimg.concept import contrastive_loss

    torch.manual_seed(0)
    text, image = (torch.nn.functional.normalize(torch.randn(4, 8), dim=-1) for _ in range(2))
    base = contrastive_loss(text, image, 10.0)
    # a negative identical to an image's concept competes with its caption: the loss goes up
    assert contrastive_loss(text, image, 10.0, negative_text_embeds=image[:2]) > base + 0.1
    # a negative pointing away from every image changes almost nothing
    far = -torch.nn.functional.normalize(image.sum(0, keepdim=True), dim=-1)
    assert abs(contrastive_loss(text, image, 10.0, negative_text_embeds=far) - base) < 0.05
    with pytest.raises(ValueError, match="negative_text_embeds must have shape"):
        contrastive_loss(text, image, 10.0, negative_text_embeds=torch.zeros(4, 3))

    model = tiny_concept_model()
    input_ids, attention_mask, pixel_values = make_batch(batch_size=4)
    with pytest.raises(ValueError, match="pass return_loss=True"):
        model(input_ids, attention_mask, pixel_values, negative_input_ids=input_ids)
    out = model(input_ids, attention_mask, pixel_values, return_loss=True, negative_input_ids=input_ids.flip(0),
                negative_attention_mask=attention_mask.flip(0))
    assert out.loss > model(input_ids, attention_mask, pixel_values, return_loss=True).loss  # its own captions as negatives

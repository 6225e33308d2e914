"""The auto-encoder models (shapes, checks, save -> load) and `training/train_autoencoder.py` end to end."""

import pytest
import torch

from hf_textimg.autoencoder import (
    ConceptAutoencoder,
    ConceptDecoder,
    ConceptDecoderOutput,
    ConceptImageEncoder,
    ConceptImageEncoderOutput,
)
from training.train_autoencoder import main

TINY_AE = dict(code_dim=32, encoder_block_out_channels=(8, 16, 16), decoder_block_out_channels=(16, 16, 8), norm_num_groups=4)


@pytest.mark.parametrize("size", [32, 48, 64])  # 3 levels: any multiple of 4
def test_shapes_and_unit_norm_codes(size):
    model = ConceptAutoencoder(image_size=size, **TINY_AE).eval()
    images = torch.rand(2, 3, size, size) * 2 - 1
    out = model(images)
    assert out.code.shape == (2, 32) and out.sample.shape == (2, 3, size, size)
    assert torch.allclose(out.code.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert out.sample.abs().max() <= 1
    assert torch.equal(out.sample, model.decode(model.encode(images)))
    sample, code = model(images, return_dict=False)
    assert torch.equal(sample, out.sample) and torch.equal(code, out.code)


def test_bad_sizes_and_shapes_raise_value_error():
    for cls in (ConceptImageEncoder, ConceptDecoder, ConceptAutoencoder):  # 4 levels by default: multiples of 8
        with pytest.raises(ValueError, match=r"image_size must be a positive multiple of 8 for \w*block_out_channels of 4 levels, got 36"):
            cls(image_size=36)
    encoder = ConceptImageEncoder(code_dim=32, block_out_channels=(8, 16), norm_num_groups=4)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        encoder(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="norm_num_groups"):
        ConceptDecoder(block_out_channels=(12, 8), norm_num_groups=8)
    decoder = ConceptDecoder(code_dim=32, noise_dim=4, block_out_channels=(8, 8), norm_num_groups=4)
    with pytest.raises(ValueError, match="code"):
        decoder(torch.zeros(2, 16))
    with pytest.raises(ValueError, match="noise"):
        decoder(torch.zeros(2, 32), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="noise_dim=0"):
        ConceptDecoder(code_dim=32, block_out_channels=(8, 8), norm_num_groups=4)(torch.zeros(2, 32), torch.zeros(2, 4))


def test_decoder_noise_changes_the_image_and_none_means_zeros():
    torch.manual_seed(0)
    decoder = ConceptDecoder(code_dim=32, noise_dim=4, block_out_channels=(16, 8), norm_num_groups=4).eval()
    code = torch.randn(2, 32)
    assert torch.equal(decoder(code).sample, decoder(code, torch.zeros(2, 4)).sample)
    assert not torch.equal(decoder(code).sample, decoder(code, torch.randn(2, 4)).sample)
    assert decoder.decode(code).shape == (2, 3, 32, 32)


def test_scale_shift_conditioning_reads_the_code_in_every_block():
    torch.manual_seed(0)
    kwargs = dict(code_dim=32, noise_dim=4, block_out_channels=(16, 8), norm_num_groups=4)
    plain, film = ConceptDecoder(**kwargs).eval(), ConceptDecoder(**kwargs, code_conditioning="scale_shift").eval()
    with torch.no_grad():
        for decoder in (plain, film):  # cut the code's only path in "input": the projection to the first map
            decoder.proj_in.weight.zero_()
        code, noise = torch.randn(2, 32), torch.randn(2, 4)
        assert torch.equal(plain(code, noise).sample, plain(-code, -noise).sample)
        assert not torch.allclose(film(code, noise).sample, film(-code, -noise).sample)  # still reaches the blocks
    with pytest.raises(ValueError, match=r"code_conditioning must be one of \('input', 'scale_shift'\)"):
        ConceptDecoder(code_conditioning="film")


@pytest.mark.parametrize(
    "cls, kwargs, inputs",
    [
        (ConceptImageEncoder, dict(code_dim=32, block_out_channels=(8, 16), norm_num_groups=4), lambda: (torch.rand(2, 3, 32, 32) * 2 - 1,)),
        (ConceptDecoder, dict(code_dim=32, noise_dim=4, block_out_channels=(16, 8), norm_num_groups=4), lambda: (torch.randn(2, 32), torch.randn(2, 4))),
        (ConceptDecoder, dict(code_dim=32, noise_dim=4, block_out_channels=(16, 8), norm_num_groups=4, code_conditioning="scale_shift"),
         lambda: (torch.randn(2, 32), torch.randn(2, 4))),
        (ConceptAutoencoder, TINY_AE, lambda: (torch.rand(2, 3, 32, 32) * 2 - 1,)),
    ],
)
def test_save_load_round_trip_is_exact_and_safetensors_only(tmp_path, cls, kwargs, inputs):
    torch.manual_seed(0)
    model = cls(**kwargs).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    loaded = cls.from_pretrained(tmp_path).eval()
    args = inputs()
    with torch.no_grad():
        a, b = model(*args, return_dict=False)[0], loaded(*args, return_dict=False)[0]  # the code or the image
    assert torch.equal(a, b)


def test_halves_save_alone(tmp_path):
    model = ConceptAutoencoder(**TINY_AE).eval()
    model.decoder.save_pretrained(tmp_path)
    code = torch.randn(2, 32)
    with torch.no_grad():
        assert torch.equal(ConceptDecoder.from_pretrained(tmp_path).eval()(code).sample, model.decode(code))


def test_training_lowers_loss_reports_psnr_and_saves(tmp_path):
    result = main([
        "--dataset_name", "shapes", "--num_shapes_train", "256", "--num_shapes_eval", "64", "--caption_column", "",
        "--train_batch_size", "32", "--max_train_steps", "30", "--validation_steps", "15", "--checkpointing_steps", "1000",
        "--code_dim", "32", "--encoder_block_out_channels", "8", "16", "16", "--decoder_block_out_channels", "16", "16", "8",
        "--norm_num_groups", "4", "--learning_rate", "3e-3", "--lr_warmup_steps", "2", "--lr_scheduler", "constant_with_warmup",
        "--l1_weight", "0.1", "--output_dir", str(tmp_path),
    ])
    losses = [loss for _, loss in result["loss_history"]]
    assert result["global_step"] == 30
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:3]) / 3
    (_, _, first), (_, _, last) = result["metrics_history"]
    assert 0 < first["psnr"] < last["psnr"] and last["mse"] < first["mse"]
    # PSNR matches the MSE it reports, up to averaging per image: 10 log10(4 / mse) in [-1, 1] pixels
    assert last["psnr"] >= 10 * torch.log10(torch.tensor(4 / last["mse"])).item() - 1e-4

    model = ConceptAutoencoder.from_pretrained(tmp_path)
    assert model.config.code_dim == 32 and (tmp_path / "eval_results.json").is_file()


def test_foreground_weight_emphasises_non_white_target_pixels():
    from hf_textimg.autoencoder import reconstruction_loss

    target = torch.ones(1, 3, 8, 8)
    target[:, :, :2, :2] = -0.5  # a small coloured object on white
    miss_object = target.clone()
    miss_object[:, :, :2, :2] = 1.0  # paints the object white
    miss_background = target.clone()
    miss_background[:, :, 4:6, 4:6] = -0.5  # same number of wrong pixels, in the background
    plain = [reconstruction_loss(x, target) for x in (miss_object, miss_background)]
    weighted = [reconstruction_loss(x, target, foreground_weight=9.0) for x in (miss_object, miss_background)]
    assert torch.isclose(plain[0], plain[1])
    assert torch.isclose(weighted[0], 10 * weighted[1])


def test_shift_tolerance_forgives_offsets_up_to_the_tolerance():
    from hf_textimg.autoencoder import reconstruction_loss

    target = torch.ones(2, 3, 16, 16)
    target[:, :, 6:10, 6:10] = -1.0  # a dark square on white
    off_by = lambda dy, dx: torch.roll(target, shifts=(dy, dx), dims=(2, 3))  # noqa: E731  (the edges stay white)
    for dy, dx in ((1, -1), (0, 1), (-1, 0)):
        assert reconstruction_loss(off_by(dy, dx), target) > 0
        assert reconstruction_loss(off_by(dy, dx), target, shift_tolerance=1) == 0
    assert reconstruction_loss(off_by(2, 0), target, shift_tolerance=1) > 0  # beyond the tolerance it still counts
    assert reconstruction_loss(off_by(2, 0), target, shift_tolerance=2) == 0
    # per image, the best shift of its own: one image off by one, the other exact
    mixed = torch.cat([off_by(1, 1)[:1], target[1:]])
    assert torch.equal(reconstruction_loss(mixed, target, reduce=False, shift_tolerance=1), torch.zeros(2))
    # the gradient flows through the best-aligned shift
    sample = off_by(1, 0).clone().requires_grad_(True)
    reconstruction_loss(sample * 0.9, target, shift_tolerance=1).backward()
    assert sample.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="shift_tolerance must be >= 0"):
        reconstruction_loss(target, target, shift_tolerance=-1)


def test_encoder_and_decoder_return_output_dataclasses_or_tuples():
    torch.manual_seed(0)
    encoder = ConceptImageEncoder(code_dim=32, block_out_channels=(8, 16), norm_num_groups=4).eval()
    decoder = ConceptDecoder(code_dim=32, noise_dim=4, block_out_channels=(16, 8), norm_num_groups=4).eval()
    images, noise = torch.rand(2, 3, 32, 32) * 2 - 1, torch.randn(2, 4)
    with torch.no_grad():
        encoded, decoded = encoder(images), decoder(encoder(images).code, noise)
        (code,) = encoder(images, return_dict=False)
        (sample,) = decoder(code, noise, return_dict=False)
    assert isinstance(encoded, ConceptImageEncoderOutput) and isinstance(decoded, ConceptDecoderOutput)
    assert encoded.code.shape == (2, 32) and torch.equal(encoded.code, code)
    assert decoded.sample.shape == (2, 3, 32, 32) and torch.equal(decoded.sample, sample)
    # the image encoder answers get_image_features like the concept vision tower: the code as pooler_output
    assert torch.equal(encoder.get_image_features(images).pooler_output, code)

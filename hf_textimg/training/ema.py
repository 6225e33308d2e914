"""Exponential moving averages of trained weights (diffusers' `EMAModel`), as the training loop needs them:
one EMA per trained model, stored in checkpoints like a model, and swapped in for evaluation."""

from __future__ import annotations

import contextlib

import torch
from diffusers.training_utils import EMAModel


class EMAWeights(torch.nn.Module):
    """An `EMAModel` seen as a module, so `save_checkpoint` / `load_checkpoint` store it like the trained
    models (safetensors): its shadow weights under the tracked model's parameter names, plus its step."""

    def __init__(self, ema: EMAModel, names: list[str]):
        super().__init__()
        self.ema, self.names = ema, names

    def state_dict(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        return {**dict(zip(self.names, self.ema.shadow_params)), "ema.optimization_step": torch.tensor(self.ema.optimization_step)}

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):
        missing = [n for n in self.names if n not in state_dict]
        if missing:
            raise ValueError(f"EMA checkpoint lacks {len(missing)} weights, e.g. {missing[:3]}; was it saved from another model?")
        for name, shadow in zip(self.names, self.ema.shadow_params):
            shadow.copy_(state_dict[name])
        self.ema.optimization_step = int(state_dict["ema.optimization_step"])


def build_emas(trained: dict[str, torch.nn.Module], decay: float, device, foreach: bool = True) -> dict[str, EMAModel]:
    """One EMA per trained model. Every process keeps its own copy, updated from the same synchronised
    weights after each optimizer step, so all copies stay equal and the main process's checkpoint is everyone's."""
    emas = {}
    for name, model in trained.items():
        emas[name] = EMAModel(model.parameters(), decay=decay, foreach=foreach, model_cls=type(model), model_config=model.config)
        emas[name].to(device)
    return emas


def ema_checkpoint_modules(emas: dict[str, EMAModel], trained: dict[str, torch.nn.Module]) -> dict[str, EMAWeights]:
    """`ema_<name>` entries for the checkpoint (`ema_unet.safetensors`, ...)."""
    return {f"ema_{name}": EMAWeights(ema, [n for n, _ in trained[name].named_parameters()]) for name, ema in emas.items()}


@contextlib.contextmanager
def ema_weights(emas: dict[str, EMAModel], trained: dict[str, torch.nn.Module]):
    """Temporarily load the EMA weights into the (unwrapped) trained models."""
    for name, ema in emas.items():
        ema.store(trained[name].parameters())
        ema.copy_to(trained[name].parameters())
    try:
        yield
    finally:
        for name, ema in emas.items():
            ema.restore(trained[name].parameters())


@contextlib.contextmanager
def ema_eval_mode(emas: dict[str, EMAModel], trained: dict[str, torch.nn.Module], *modules: torch.nn.Module):
    """For evaluation during training: the EMA weights loaded (`ema_weights`) and `modules` in eval mode;
    afterwards the raw weights and each module's previous train/eval mode come back."""
    modes = {module: module.training for module in modules}
    with ema_weights(emas, trained):
        for module in modes:
            module.eval()
        try:
            yield
        finally:
            for module, training in modes.items():
                module.train(training)

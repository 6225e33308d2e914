"""Losses for the concept encoders. Only torch: training code can use them without the models.

- `contrastive_loss`: CLIP's symmetric InfoNCE, with negatives gathered from all processes under torch.distributed.
- `regression_loss`: the "simpler route", predicted text codes against a frozen image encoder's codes.

Imported relatively by `modeling_concept.py` and copied beside the weights by `save_pretrained`, so it must import
nothing from `hf_textimg`.
"""

import torch
import torch.distributed as dist
import torch.nn.functional as F


class _AllGatherWithGrad(torch.autograd.Function):
    """`all_gather` that lets gradients flow back to every process's own slice.

    Backward sums, over processes, the gradient each one computed for the gathered tensor, and returns this
    process's slice of that sum. (`torch.distributed.nn.functional.all_gather` does the same but is deprecated.)
    """

    @staticmethod
    def forward(ctx, tensor):
        ctx.rank, ctx.local_size = dist.get_rank(), tensor.shape[0]
        gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.cat(gathered)  # (world_size * B, D)

    @staticmethod
    def backward(ctx, grad_output):
        grad = grad_output.clone(memory_format=torch.contiguous_format)  # all_reduce works in place
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.local_size
        return grad[start : start + ctx.local_size]


def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def contrastive_loss(
    text_embeds: torch.Tensor,
    image_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    gather: bool = True,
    negative_text_embeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric cross entropy over caption/image similarities (CLIP's InfoNCE); row `i` of each input is a pair.

    Args:
        text_embeds: `(B, D)` unit-norm text concepts.
        image_embeds: `(B, D)` unit-norm image concepts.
        logit_scale: the multiplier applied to cosine similarities, i.e. exp of the log-parameter and already
            clamped: pass `ConceptModel.get_logit_scale()`, not the raw `logit_scale` parameter.
        gather: when `torch.distributed` is initialised with world size > 1, gather both feature sets from all
            processes (with gradients) so negatives are global; this process's rows are labelled
            `rank * B + arange(B)`. Every process must call this with the same `B` (use `drop_last=True`).

        negative_text_embeds: optional `(N, D)` unit-norm concepts of hard-negative captions (NegCLIP,
            https://arxiv.org/abs/2210.01936): extra wrong answers for this process's images in the image -> text
            direction only (they have no image of their own).
    Each process returns the mean loss over its own rows. Its features also receive the gradient from the other
    processes' losses, so after DDP averages gradients the update equals that of the loss over the global batch.
    """
    if text_embeds.shape != image_embeds.shape:
        raise ValueError(
            f"text_embeds {tuple(text_embeds.shape)} and image_embeds {tuple(image_embeds.shape)} must have the same "
            "shape: row i of each is a caption/image pair."
        )
    batch_size = text_embeds.shape[0]
    rank = 0
    all_text, all_image = text_embeds, image_embeds
    if gather and _is_distributed():
        rank = dist.get_rank()
        all_text = _AllGatherWithGrad.apply(text_embeds)  # (world * B, D)
        all_image = _AllGatherWithGrad.apply(image_embeds)  # (world * B, D)

    logits_per_text = logit_scale * text_embeds @ all_image.t()  # (B, world * B)
    logits_per_image = logit_scale * image_embeds @ all_text.t()  # (B, world * B)
    if negative_text_embeds is not None:
        if negative_text_embeds.ndim != 2 or negative_text_embeds.shape[1] != text_embeds.shape[1]:
            raise ValueError(f"negative_text_embeds must have shape (N, {text_embeds.shape[1]}), got {tuple(negative_text_embeds.shape)}.")
        logits_per_image = torch.cat([logits_per_image, logit_scale * image_embeds @ negative_text_embeds.t()], dim=1)  # (B, world * B + N)
    labels = torch.arange(batch_size, device=text_embeds.device) + rank * batch_size
    return (F.cross_entropy(logits_per_text, labels) + F.cross_entropy(logits_per_image, labels)) / 2


def regression_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Loss for the regression route: predicted text codes `(B, D)` against fixed image codes `(B, D)`.

    `kind="cosine"` is `1 - cos(pred, target)` averaged over the batch (only direction matters, which is all a
    unit-norm concept carries); `kind="mse"` is the mean squared error (for unit-norm inputs this is
    `(2 - 2 cos) / D`, the same optimum with a smaller gradient). Compute `target` under `torch.no_grad()`.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape.")
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(pred, target, dim=-1)).mean()
    if kind == "mse":
        return F.mse_loss(pred, target)
    raise ValueError(f"kind must be 'cosine' or 'mse', got {kind!r}.")


__all__ = ["contrastive_loss", "regression_loss"]

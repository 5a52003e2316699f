"""How fast this machine multiplies matrices, and how much arithmetic a training step needs.

Together they give model FLOPs utilisation (MFU): the FLOPs a step needs divided by its
time and by the measured matmul peak. The count follows Kaplan et al. (2020) and Chowdhery
et al. (2022, PaLM appendix B), adapted to what the loss needs here:

* every linear layer costs ``2 * params`` FLOPs per token forward and as much again for the
  gradient of its input; a trainable layer costs another ``2 * params`` for its weight grad;
* causal attention costs ``2 * layers * attn_dim * length**2`` forward per sequence and
  twice that backward;
* the output head counts only at the positions the loss reads (the answer tokens).

Padding, and head columns nobody reads, are work the hardware does but the model does not
need, so they do not count: a trainer that wastes them shows a lower MFU.
"""

import time
from dataclasses import dataclass

import numpy as np
import torch


@torch.no_grad()
def measure_matmul_peak(dtype: torch.dtype, device: torch.device, size: int = 1024, seconds: float = 0.5) -> float:
    """FLOP/s of a square matmul in ``dtype`` on ``device``, best of repeated timings."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    torch.matmul(a, b)  # warm-up: thread pool, kernels
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == float("inf"):
        if device.type == "cuda":
            torch.cuda.synchronize()
        tick = time.perf_counter()
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - tick)
    return 2 * size**3 / best


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP count needs to know about a decoder-only model."""

    layers: int
    attn_dim: int
    body_params: int  # weights of the linear layers inside the blocks (not embedding or head)
    head_params: int  # hidden * vocab
    adapter_params: int  # trainable parameters added by LoRA (0 for full fine-tuning)


def model_shape(config, adapter_params: int = 0) -> ModelShape:
    """Shape of a Llama-style model from its Hugging Face config."""
    hidden, layers = config.hidden_size, config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    q = hidden * config.num_attention_heads * head_dim
    kv = 2 * hidden * config.num_key_value_heads * head_dim
    o = config.num_attention_heads * head_dim * hidden
    mlp = 3 * hidden * config.intermediate_size
    return ModelShape(
        layers=layers,
        attn_dim=config.num_attention_heads * head_dim,
        body_params=layers * (q + kv + o + mlp),
        head_params=hidden * config.vocab_size,
        adapter_params=adapter_params,
    )


def training_flops(shape: ModelShape, lengths: np.ndarray, head_positions: int, full: bool) -> float:
    """FLOPs one optimiser step needs: forward and backward over ``lengths`` (real tokens per
    row, padding excluded) with the head at ``head_positions`` positions.

    ``full`` (full fine-tuning) adds the weight gradients of the body and the (tied) head.
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    tokens = lengths.sum()
    linear = (4 + (2 if full else 0)) * shape.body_params * tokens  # fwd + input grad (+ weight grad)
    adapter = 6 * shape.adapter_params * tokens  # LoRA: fwd, input grad and weight grad
    attention = 3 * 2 * shape.layers * shape.attn_dim * float((lengths**2).sum())
    head = (4 + (2 if full else 0)) * shape.head_params * head_positions
    return float(linear + adapter + attention + head)

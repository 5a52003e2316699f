import numpy as np
import torch

from synthtune.perf import ModelShape, measure_matmul_peak, model_shape, training_flops


def test_model_shape_counts_the_linear_weights_of_the_blocks(tiny_lm):
    shape = model_shape(tiny_lm.model.config)
    linear = sum(
        m.weight.numel()
        for name, m in tiny_lm.model.named_modules()
        if isinstance(m, torch.nn.Linear) and name.startswith("model.layers.")
    )
    assert shape.body_params == linear
    assert shape.head_params == tiny_lm.model.lm_head.weight.numel()
    assert shape.layers == tiny_lm.model.config.num_hidden_layers


def test_training_flops_by_hand():
    shape = ModelShape(layers=2, attn_dim=8, body_params=100, head_params=1000, adapter_params=10)
    lengths = np.array([3, 5])
    lora = training_flops(shape, lengths, head_positions=4, full=False)
    # linear fwd + input grad, adapter fwd/bwd, causal attention x3, head at 4 positions
    assert lora == 4 * 100 * 8 + 6 * 10 * 8 + 3 * 2 * 2 * 8 * (9 + 25) + 4 * 1000 * 4
    full = training_flops(shape, lengths, head_positions=4, full=True)
    assert full - lora == 2 * 100 * 8 + 2 * 1000 * 4  # weight gradients of body and head


def test_matmul_peak_is_measured():
    flops = measure_matmul_peak(torch.float32, torch.device("cpu"), size=128, seconds=0.05)
    assert 1e6 < flops < 1e15

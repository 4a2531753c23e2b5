"""The side-by-side benchmark loads the original model with the attention kernel asked for.

The original code is not in this repository, so a stand-in ``src/models/cav_mae.py`` that
builds its attention the way the original does (the module-level name ``Attention``) is used.
"""

import sys

import pytest
import torch

from benchmarks.original_model import ReleaseAttention, load_original_module

STAND_IN = '''
from timm.models.vision_transformer import Attention


class CAVMAE:
    def __init__(self):
        self.attn = Attention(32, num_heads=4, qkv_bias=True, qk_scale=None)
'''


@pytest.fixture
def original_src(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "__init__.py").write_text("")
    (models / "cav_mae.py").write_text(STAND_IN)
    yield tmp_path
    for name in ("models", "models.cav_mae"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("kernel", ["math", "fused", "dispatch"])
def test_original_gets_the_requested_attention_kernel(original_src, kernel, monkeypatch):
    module = load_original_module(original_src, attention=kernel)
    attn = module.CAVMAE().attn
    assert isinstance(attn, ReleaseAttention)
    assert attn.kernel == kernel

    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting_sdpa(*args, **kwargs):
        calls.append(1)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting_sdpa)
    x = torch.randn(2, 5, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        attn(x)
    assert bool(calls) == (kernel == "fused")  # bf16 on the CPU: dispatch takes the explicit path
    calls.clear()
    out = attn(x)
    assert bool(calls) == (kernel != "math")  # float32: dispatch takes the fused kernel

    # every kernel computes the same attention
    ref = ReleaseAttention(32, num_heads=4, qkv_bias=True, kernel="math")
    ref.load_state_dict(attn.state_dict())
    torch.testing.assert_close(out, ref(x), atol=1e-5, rtol=0)


def test_unknown_kernel_is_refused(original_src):
    with pytest.raises(ValueError, match="attention must be"):
        load_original_module(original_src, attention="flash")

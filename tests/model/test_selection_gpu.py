"""Token selection on CUDA (marker `gpu`, never in the default suite): same indices as on the CPU.

Run on a machine with a GPU: ``pytest -m gpu tests/model/test_selection_gpu.py``. The selection works in
float64 on whatever device the tokens are on; nothing in it moves tensors to the CPU.
"""

from __future__ import annotations

import pytest
import torch

from breastgpt.model.selection import select_concepts, select_concepts_with_stats

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _clustered(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(16, d, generator=g)
    return centres[torch.randint(0, 16, (n,), generator=g)] + 0.7 * torch.randn(n, d, generator=g)


@pytest.mark.parametrize("with_text", [False, True])
def test_cuda_indices_equal_cpu_indices_on_the_lazy_path(with_text):
    x = _clustered(3000, 64, seed=1)
    text = torch.randn(5, 64, generator=torch.Generator().manual_seed(2)) if with_text else None
    cpu = select_concepts(x, 64, text_tokens=text)
    gpu, stats = select_concepts_with_stats(x.cuda(), 64, text_tokens=None if text is None else text.cuda())
    assert gpu.device.type == "cuda" and not stats.dense
    assert torch.equal(gpu.cpu(), cpu)


def test_cuda_bfloat16_tokens_small_dense_path():
    x = _clustered(200, 32, seed=3).to(torch.bfloat16)
    assert torch.equal(select_concepts(x.cuda(), 16).cpu(), select_concepts(x, 16))

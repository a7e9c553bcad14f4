"""CUDA checks (run by deploy/gpu-check.sh on a GPU machine; skipped elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest

from daskorym.backend import get_backend
from daskorym.losses import LSQLoss
from daskorym.models import MODELS
from model_cases import make_case

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_cuda_kernel_equals_cpu(name):
    model, params, batch, measured, _ = make_case(name, experiment=True)
    out = {}
    for device in ("cpu", "cuda"):
        be = get_backend("torch", "float64", device)
        out[device] = be.value_and_grad(
            lambda p: model.tile_loss(be, p, batch, measured, LSQLoss())[0], params,
            list(model.inputs))
    assert np.isclose(out["cpu"][0], out["cuda"][0], rtol=1e-10)
    for k in model.inputs:
        g_cpu, g_gpu = out["cpu"][1][k], out["cuda"][1][k]
        assert np.linalg.norm(g_cpu - g_gpu) <= 1e-9 * np.linalg.norm(g_cpu)

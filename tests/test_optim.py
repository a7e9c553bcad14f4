"""Tests of daskorym.optim: convergence, reference updates, slab invariance,
checkpoint/restore, GD schedule, configuration and option validation."""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest

from daskorym import optim
from daskorym.optim import (OPTIMIZERS, AdamOptimizer, CGOptimizer, GDOptimizer,
                            MomentumOptimizer, ScipyOptimizer, from_config, get_optimizer)

# ------------------------------------------------------------------ problems


class Quadratic:
    """f(x) = 0.5 x^T A x - b^T x in 20 dims, eigenvalues of A in [1, 100]."""

    def __init__(self, n: int = 20, seed: int = 0):
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        self.a = (q * np.logspace(0, 2, n)) @ q.T
        self.b = rng.standard_normal(n)
        self.f_min = self.loss(np.linalg.solve(self.a, self.b))
        self.x0 = np.zeros(n)

    def loss(self, x):
        return float(0.5 * x @ self.a @ x - self.b @ x)

    def __call__(self, x):
        return self.loss(x), self.a @ x - self.b


class LeastSquares:
    """f(x) = 0.5 ||M x.ravel() - y||^2 with x of shape (4, 5), float32."""

    def __init__(self, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.m = rng.standard_normal((60, 20)) / np.sqrt(60)
        self.y = self.m @ rng.standard_normal(20)
        self.x0 = np.zeros((4, 5), dtype=np.float32)
        self.f_min = 0.0

    def __call__(self, x):
        r = self.m @ x.astype(np.float64).ravel() - self.y
        return float(0.5 * r @ r), (self.m.T @ r).reshape(x.shape).astype(x.dtype)


def run(opt, problem, n_steps, x=None, state=None, start=0):
    """Run ``n_steps`` updates from ``x`` (default problem.x0); return x, state."""
    x = problem.x0.copy() if x is None else x
    state = opt.init_state(x.shape, x.dtype) if state is None else state
    for i in range(start, start + n_steps):
        _, g = problem(x)
        opt.step(x, g, state, i, closure=problem)
    return x, state


# (optimizer, steps) pairs that must cut the excess loss f - f_min by a factor
CONVERGENCE_CASES = {
    "gd": (lambda: GDOptimizer(step_size=0.015, dynamic_rate=False), 200, 1e-2),
    "gd_dynamic": (lambda: GDOptimizer(step_size=0.015), 200, 0.2),
    "momentum": (lambda: MomentumOptimizer(step_size=0.005, gamma=0.9), 200, 1e-3),
    "adam": (lambda: AdamOptimizer(step_size=0.05), 200, 1e-2),
    "cg": (lambda: CGOptimizer(step_size=1e-3), 80, 1e-6),
    "scipy": (lambda: ScipyOptimizer(maxiter=10), 3, 1e-4),
}


@pytest.mark.parametrize("problem_cls", [Quadratic, LeastSquares])
@pytest.mark.parametrize("case", sorted(CONVERGENCE_CASES))
def test_reduces_loss(case, problem_cls):
    make, n_steps, factor = CONVERGENCE_CASES[case]
    problem = problem_cls()
    gap0 = problem(problem.x0)[0] - problem.f_min
    x, _ = run(make(), problem, n_steps)
    gap = problem(x)[0] - problem.f_min
    print(f"{case} on {problem_cls.__name__}: excess loss {gap0:.3e} -> {gap:.3e}")
    assert gap < factor * gap0


# ------------------------------------------------------------------ Adam reference


def adam_reference(x, grads, step, b1, b2, eps, steps=None):
    """Textbook Adam with bias correction, float64, written out step by step (``steps``:
    the step of each update, default ``step`` throughout)."""
    x = x.astype(np.float64).copy()
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g ** 2
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        x = x - (step if steps is None else steps[t - 1]) * m_hat / (np.sqrt(v_hat) + eps)
    return x


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 1e-6)])
def test_adam_matches_reference(dtype, rtol):
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal((6, 5)).astype(dtype)
    grads = [rng.standard_normal((6, 5)).astype(dtype) for _ in range(3)]
    opt = AdamOptimizer(step_size=0.1, b1=0.8, b2=0.99, eps=1e-3)
    x, state = x0.copy(), opt.init_state(x0.shape, dtype)
    for i, g in enumerate(grads):
        opt.step(x, g, state, i)
    expected = adam_reference(x0, [g.astype(np.float64) for g in grads], 0.1, 0.8, 0.99, 1e-3)
    assert x.dtype == dtype
    np.testing.assert_allclose(x, expected, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 1e-6)])
def test_adam_halving_schedule_matches_reference(dtype, rtol):
    """``dynamic_rate``: Adam's step halved at updates 3, 6, 12 (``first_downrate_iteration``
    3), both update paths (fused in place, and blocked NumPy for non-contiguous arrays)."""
    rng = np.random.default_rng(4)
    x0 = rng.standard_normal((6, 5)).astype(dtype)
    grads = [rng.standard_normal((6, 5)).astype(dtype) for _ in range(13)]
    opt = AdamOptimizer(step_size=0.1, b1=0.8, b2=0.99, eps=1e-3, dynamic_rate=True,
                        first_downrate_iteration=3)
    steps = [0.1] * 3 + [0.05] * 3 + [0.025] * 6 + [0.0125]
    assert [opt.step_size_at(i) for i in range(13)] == steps
    expected = adam_reference(x0, [g.astype(np.float64) for g in grads], 0.1, 0.8, 0.99, 1e-3,
                              steps)
    for layout in ("contiguous", "strided"):
        big = np.zeros((6, 10), dtype)
        x = x0.copy() if layout == "contiguous" else big[:, ::2]
        x[...] = x0
        state = opt.init_state(x0.shape, dtype)
        for i, g in enumerate(grads):
            opt.step(x, g, state, i)
        np.testing.assert_allclose(x, expected, rtol=rtol, atol=rtol)
    assert AdamOptimizer(step_size=0.1).step_size_at(500) == 0.1  # off by default


def test_momentum_matches_reference():
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal(7)
    grads = [rng.standard_normal(7) for _ in range(3)]
    opt = MomentumOptimizer(step_size=0.3, gamma=0.5)
    x, state = x0.copy(), opt.init_state(x0.shape, x0.dtype)
    v, expected = np.zeros(7), x0.copy()
    for i, g in enumerate(grads):
        opt.step(x, g, state, i)
        v = 0.5 * v + 0.3 * g
        expected = expected - v
    np.testing.assert_allclose(x, expected, rtol=1e-14)


# ------------------------------------------------------------------ slab invariance

ELEMENTWISE = [GDOptimizer(step_size=0.3, first_downrate_iteration=2),
               MomentumOptimizer(step_size=0.3), AdamOptimizer(step_size=0.1)]


@pytest.mark.parametrize("block_elements", [0, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt", ELEMENTWISE, ids=lambda o: o.name)
def test_slabs_bit_identical(opt, dtype, block_elements, monkeypatch):
    if block_elements:  # also exercise the internal blocking
        monkeypatch.setattr(optim._base, "BLOCK_ELEMENTS", block_elements)
    assert opt.elementwise and not opt.needs_closure
    rng = np.random.default_rng(4)
    shape = (9, 4, 3, 2)
    x_whole = rng.standard_normal(shape).astype(dtype)
    x_slabs = x_whole.copy()
    s_whole, s_slabs = opt.init_state(shape, dtype), opt.init_state(shape, dtype)
    bounds = [(0, 2), (2, 7), (7, 9)]
    for i in range(6):
        g = rng.standard_normal(shape).astype(dtype)
        opt.step(x_whole, g, s_whole, i)
        for a, b in bounds:
            opt.step(x_slabs[a:b], g[a:b], {k: v[a:b] for k, v in s_slabs.items()}, i)
    assert np.array_equal(x_whole, x_slabs)
    for key in s_whole:
        assert np.array_equal(s_whole[key], s_slabs[key])
    assert not np.array_equal(x_whole, rng.standard_normal(shape))


@pytest.mark.parametrize("opt", ELEMENTWISE + [CGOptimizer(step_size=0.1)], ids=lambda o: o.name)
def test_zero_and_one_dimensional_parameters(opt):
    for x in (np.array(2.0), np.full(3, 2.0, dtype=np.float32)):
        x0 = x.copy()
        state = opt.init_state(x.shape, x.dtype)
        opt.step(x, x.copy(), state, 0, closure=lambda z: (float(np.sum(z * z)) / 2, z))
        assert x.shape == x0.shape and np.all(np.abs(x) < np.abs(x0))


def test_adam_scratch_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(optim._base, "BLOCK_ELEMENTS", 1 << 14)
    x = np.ones((64, 128, 32), dtype=np.float32)          # 256 Ki elements, 1 MiB
    g = np.full_like(x, 0.5)
    opt = AdamOptimizer()
    state = opt.init_state(x.shape, x.dtype)
    tracemalloc.start()
    try:
        opt.step(x, g, state, 0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"Adam step peak scratch: {peak / x.nbytes:.3f} x nbytes")
    assert peak < 0.1 * x.nbytes


# ------------------------------------------------------------------ checkpoint / restore

CHECKPOINT_CASES = [GDOptimizer(step_size=0.01, first_downrate_iteration=3),
                    MomentumOptimizer(step_size=0.004), AdamOptimizer(step_size=0.05),
                    CGOptimizer(step_size=1e-3), ScipyOptimizer(maxiter=2)]


@pytest.mark.parametrize("problem_cls", [Quadratic, LeastSquares])
@pytest.mark.parametrize("opt", CHECKPOINT_CASES, ids=lambda o: o.name)
def test_checkpoint_restore_bit_identical(opt, problem_cls, tmp_path):
    problem = problem_cls()
    x_ref, state_ref = run(opt, problem, 10)

    x, state = run(opt, problem, 5)
    np.save(tmp_path / "x.npy", x)
    for key, arr in state.items():
        np.save(tmp_path / f"state_{key}.npy", arr)
    (tmp_path / "opt.json").write_text(json.dumps(opt.config()))
    del x, state

    restored = from_config(json.loads((tmp_path / "opt.json").read_text()))
    assert type(restored) is type(opt) and restored is not opt
    x = np.load(tmp_path / "x.npy")
    state = {key: np.load(tmp_path / f"state_{key}.npy") for key in state_ref}
    x, state = run(restored, problem, 5, x=x, state=state, start=5)

    assert np.array_equal(x, x_ref)
    assert sorted(state) == sorted(state_ref)
    for key in state_ref:
        assert np.array_equal(state[key], state_ref[key]), key


# ------------------------------------------------------------------ GD schedule


@pytest.mark.parametrize("n_first", [20, 7, 1])
def test_gd_halving_schedule(n_first):
    opt = GDOptimizer(step_size=0.8, first_downrate_iteration=n_first)
    for i in range(201):
        k = 0 if i < n_first else math.floor(math.log2(i / n_first)) + 1
        assert opt.step_size_at(i) == 0.8 / 2 ** k, i
    changes = [i for i in range(1, 201) if opt.step_size_at(i) != opt.step_size_at(i - 1)]
    expected = [n_first * 2 ** j for j in range(10) if n_first * 2 ** j <= 200]
    assert changes == expected
    if n_first == 20:
        assert changes[:3] == [20, 40, 80]


def test_gd_step_uses_schedule():
    opt = GDOptimizer(step_size=1.0, first_downrate_iteration=2)
    for i in range(10):
        x = np.zeros(3)
        opt.step(x, np.ones(3), {}, i)
        assert np.all(x == -opt.step_size_at(i))
    fixed = GDOptimizer(step_size=0.25, dynamic_rate=False)
    assert {fixed.step_size_at(i) for i in range(200)} == {0.25}


# ------------------------------------------------------------------ CG specifics


def test_cg_failed_line_search_leaves_x_and_restarts():
    opt = CGOptimizer(step_size=1.0, max_line_search=3, shrink=0.5)
    x = np.ones(4)
    state = opt.init_state(x.shape, x.dtype)
    calls = []

    def closure(z):  # every trial is worse than x
        calls.append(z.copy())
        return (0.0 if np.array_equal(z, np.ones(4)) else 1.0), np.ones(4)

    opt.step(x, np.ones(4), state, 0, closure=closure)
    assert np.array_equal(x, np.ones(4))
    assert bool(state["restart"]) and float(state["alpha"]) == 0.125
    assert len(calls) == 4  # reference loss + 3 trials


def test_cg_grows_step_on_first_try_acceptance():
    problem = Quadratic()
    opt = CGOptimizer(step_size=1e-4, grow=2.0)
    x, state = run(opt, problem, 1)
    assert float(state["alpha"]) == 2e-4 and not bool(state["restart"])


# ------------------------------------------------------------------ config and options


def test_registry_and_get_optimizer():
    assert set(OPTIMIZERS) == {"gd", "momentum", "adam", "cg", "scipy"}
    for name, cls in OPTIMIZERS.items():
        assert cls.name == name
        assert cls.elementwise == (name in ("gd", "momentum", "adam"))
        assert cls.needs_closure == (name in ("cg", "scipy"))
        assert isinstance(get_optimizer(name.upper()), cls)
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'.*adam"):
        get_optimizer("lbfgs")


@pytest.mark.parametrize("opt", [
    GDOptimizer("obj", step_size=0.5, dynamic_rate=False, first_downrate_iteration=3),
    MomentumOptimizer(step_size=0.2, gamma=0.5),
    AdamOptimizer("probe", step_size=1e-2, b1=0.5, b2=0.9, eps=1e-8, output_folder="out"),
    CGOptimizer(step_size=0.1, max_line_search=4, shrink=0.3, grow=1.5, c1=0.01),
    ScipyOptimizer(method="CG", maxiter=5, options={"gtol": 1e-9}),
], ids=lambda o: o.name)
def test_config_round_trip(opt):
    cfg = json.loads(json.dumps(opt.config()))
    rebuilt = from_config(cfg)
    assert type(rebuilt) is type(opt)
    assert rebuilt.config() == opt.config() == cfg
    assert rebuilt.param_name == opt.param_name
    assert repr(rebuilt) == repr(opt)


def test_adorym_style_constructor():
    opt = AdamOptimizer("obj", output_folder="recon", distribution_mode=None,
                        options_dict={"step_size": 1e-2, "b1": 0.8})
    assert opt.param_name == "obj" and opt.step_size == 1e-2 and opt.b1 == 0.8
    assert opt.output_folder == "recon" and opt.distribution_mode is None
    plain = AdamOptimizer(step_size=1e-3)
    assert plain.param_name is None and plain.step_size == 1e-3
    assert optim.Adam is AdamOptimizer
    assert GDOptimizer().step_size_at(0) == GDOptimizer().step_size


@pytest.mark.parametrize("make, exc, option", [
    (lambda: AdamOptimizer(bogus=1), TypeError, "bogus"),
    (lambda: AdamOptimizer("obj", options_dict={"stepsize": 1}), TypeError, "stepsize"),
    (lambda: AdamOptimizer(b1=1.0), ValueError, "b1"),
    (lambda: AdamOptimizer(eps=0), ValueError, "eps"),
    (lambda: AdamOptimizer(step_size=-1e-3), ValueError, "step_size"),
    (lambda: AdamOptimizer(step_size=float("nan")), ValueError, "step_size"),
    (lambda: AdamOptimizer(step_size="big"), TypeError, "step_size"),
    (lambda: MomentumOptimizer(gamma=-0.1), ValueError, "gamma"),
    (lambda: GDOptimizer(first_downrate_iteration=0), ValueError, "first_downrate_iteration"),
    (lambda: GDOptimizer(first_downrate_iteration=2.5), TypeError, "first_downrate_iteration"),
    (lambda: GDOptimizer(dynamic_rate="yes"), TypeError, "dynamic_rate"),
    (lambda: CGOptimizer(shrink=1.0), ValueError, "shrink"),
    (lambda: CGOptimizer(grow=0.5), ValueError, "grow"),
    (lambda: CGOptimizer(max_line_search=True), TypeError, "max_line_search"),
    (lambda: ScipyOptimizer(method="nelder-mead"), ValueError, "method"),
    (lambda: ScipyOptimizer(options={"maxiter": 3}), ValueError, "maxiter"),
    (lambda: ScipyOptimizer(options={"f": object()}), ValueError, "options"),
    (lambda: AdamOptimizer(step_size=1e-3, options_dict={"step_size": 1e-2}), ValueError,
     "step_size"),
    (lambda: AdamOptimizer(42), TypeError, "param_name"),
    (lambda: from_config({"step_size": 1.0}), ValueError, "name"),
])
def test_bad_options_rejected(make, exc, option):
    with pytest.raises(exc, match=option):
        make()


def test_step_argument_errors():
    adam = AdamOptimizer()
    x = np.zeros((3, 2))
    state = adam.init_state(x.shape, x.dtype)
    with pytest.raises(TypeError, match="float32 or float64"):
        adam.step(np.zeros(3, dtype=int), np.zeros(3), {}, 0)
    with pytest.raises(ValueError, match="shape"):
        adam.step(x, np.zeros((2, 3)), state, 0)
    with pytest.raises(ValueError, match="state\\['m'\\]"):
        adam.step(x, np.zeros_like(x), {"m": np.zeros(3), "v": state["v"]}, 0)
    with pytest.raises(KeyError, match="lacks"):
        adam.step(x, np.zeros_like(x), {}, 0)
    with pytest.raises(ValueError, match="update counter"):
        adam.step(x, np.zeros_like(x), state, -1)
    for opt in (CGOptimizer(), ScipyOptimizer()):
        with pytest.raises(ValueError, match="closure"):
            opt.step(x, np.zeros_like(x), opt.init_state(x.shape, x.dtype), 0)


def test_scipy_writes_back_in_dtype():
    problem = LeastSquares()
    x = problem.x0.copy()
    ScipyOptimizer(method="BFGS", maxiter=50).step(x, np.zeros_like(x), {}, 0, closure=problem)
    assert x.dtype == np.float32 and problem(x)[0] < 1e-8

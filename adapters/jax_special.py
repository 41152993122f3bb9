"""JAX adapters: ``jax.scipy.special.rel_entr`` and ``jax.scipy.special.kl_div``
(elementwise, the JAX ports of the SciPy ufuncs), plus the shared JAX worker setup that
the optax adapters (adapters/optax_losses.py) reuse.

Both take P first and Q second, as probabilities (KL-ARG-1, ``target_kind = pred_kind =
"prob"``), broadcast with numpy rules and return the elementwise result (``reduction="none"``,
KL-RED-NONE).  What the implementation does (jax/_src/scipy/special.py, jax 0.10.2)::

    both_gt_zero = (p > 0) & (q > 0);  one_zero = (p == 0) & (q >= 0)
    safe_p, safe_q = where(both_gt_zero, p, 1), where(both_gt_zero, q, 1)
    rel_entr = where(both_gt_zero, xlogx(safe_p) - xlogy(safe_p, safe_q),
                     where(one_zero, 0, inf))
    kl_div   = rel_entr(p, q) - p + q

* ``rel_entr`` is the canonical term with SciPy's "otherwise inf" for negative entries
  (``Point("none", negative="inf")``, KL-NEG-INF) -- but "otherwise" also catches **NaN**
  (NaN > 0 is false), so a NaN entry gives ``+inf`` where KL-NEG-INF keeps NaN, and
  ``p = +inf`` goes through ``xlogx(inf) - xlogy(inf, q)`` = inf - inf = NaN for q >= 1;
* ``kl_div`` is the generalised term (KL-GEN-1/2, ``Point("none", generalised=True,
  negative="inf")``); its ``- p + q`` turns the ``+inf`` of a NaN entry back into NaN;
* gradients (``jax.vjp`` with a head of ones, KL-GRAD-1) go through the ``where``: at
  ``p = 0`` the masked branch gives ∂/∂p = 0 (rel_entr) and -1 (kl_div), where SPEC's
  right derivative is -inf (KL-GRAD-ZERO, KL-GRAD-GEN).

float64 needs JAX's x64 mode (by default JAX silently computes float64 input in float32):
:meth:`_Jax.setup` switches it on, as the JAX documentation tells float64 users to
("Double (64bit) precision", jax.readthedocs.io sharp bits), and reports it in the
environment facts.  Each case runs through one compiled executable per signature (value
and VJP together, :meth:`_Jax._run_compiled`; XLA options :data:`COMPILE_OPTIONS`), which
gives the bits of JAX's op-by-op path (``compiled = False``) at a fraction of its compile
cost.  jax is imported only in :meth:`_Jax.setup` (the worker, under the side
environment ``jax``: run as ``jax.rel_entr@jax``).  Records: klconform/known/jax_*.toml;
notes: docs/frameworks/jax.md.
"""
from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from klconform.adapters.base import Adapter, Capabilities, DEVICE_ENV, Outcome, asked_device, input_text
from klconform.reference.family import Point

DOC_REL_ENTR = "https://docs.jax.dev/en/latest/_autosummary/jax.scipy.special.rel_entr.html"
DOC_KL_DIV = "https://docs.jax.dev/en/latest/_autosummary/jax.scipy.special.kl_div.html"
DTYPES = ("float16", "bfloat16", "float32", "float64")
DOC_VERSION = "0.10.2"
#: XLA options of the per-signature executables (see docs/frameworks/jax.md).  JAX's op-by-op
#: path runs each operation as its own small executable: every result is stored in its dtype,
#: no multiply is contracted with an add.  One fused executable with XLA's defaults gives other
#: bits: a fused sum contracts t*x + acc into an FMA (optax), bfloat16/float16 intermediates
#: keep float32 precision (``xla_allow_excess_precision``), broadcast operands are simplified
#: differently (the value is therefore taken on explicitly broadcast inputs).  Without HLO
#: fusion and excess precision, every operation stores its result as the op-by-op path does.
#: The elementwise functions (no reduction) compile with the legacy emitters at LLVM -O0
#: instead, 2-3x faster and the same bits on the corpus (excess precision does not show there);
#: a reduction over all axes compiled so sums in another order, so optax keeps those defaults.
COMPILE_OPTIONS = {"xla_disable_hlo_passes": "fusion", "xla_allow_excess_precision": False}
ELEMENTWISE_COMPILE_OPTIONS = {"xla_disable_hlo_passes": "fusion", "xla_cpu_use_fusion_emitters": False,
                               "xla_backend_optimization_level": 0}
#: inputs above this many elements take the op-by-op path: unoptimised code would cost more
#: than the compile it saves (a large case's signature is seldom seen twice)
COMPILED_MAX_SIZE = 1 << 16


class _Jax(Adapter):
    """Shared worker side of the JAX-based adapters: setup, arrays, calls with gradients.

    Subclasses set the class attributes, :meth:`capabilities`/:meth:`documented`,
    :meth:`unsupported_reason` and :meth:`_call` (the jax function of (pred, target) arrays
    and its text)."""

    framework = "jax"
    doc_version = DOC_VERSION

    devices = ("cpu", "cuda")
    #: True: one compiled executable per signature (:meth:`_run_compiled`); False: the
    #: op-by-op path (``jax.vjp`` traced per call), which the compiled one reproduces bit for
    #: bit (tests/adapters/test_jax.py compares both over the frozen corpus)
    compiled = True
    #: XLA options of those executables
    compile_options = COMPILE_OPTIONS

    def __init__(self) -> None:
        self._jax = None
        self._jnp = None
        self._executables: dict[tuple, tuple] = {}
        self._compiles = False

    def setup(self) -> dict[str, Any]:
        wanted = os.environ.get(DEVICE_ENV) or "cpu"
        os.environ.setdefault("JAX_PLATFORMS", "cpu" if wanted == "cpu" else "cuda")
        import jax

        jax.config.update("jax_enable_x64", True)   # float64 as float64 (see module docstring)
        import jax.numpy as jnp

        platform = str(jax.devices()[0].platform)
        device = asked_device([{"gpu": "cuda"}.get(platform, platform)])
        self._jax, self._jnp = jax, jnp
        # the compiled path's bit-for-bit check was made with XLA's CPU compiler only
        self._compiles = platform == "cpu"
        facts = {"framework": self.framework, "version": self._version(), "jax": jax.__version__,
                 "device": device, "numpy": np.__version__, "jax_enable_x64": True}
        return facts

    def _version(self) -> str:
        return self._jax.__version__

    def _array(self, case, side: str):
        # the values as sent, exact in the case's dtype (Case invariant): the conversion is exact
        return self._jnp.asarray(case.sent_values(side), dtype=getattr(self._jnp, case.dtype))

    def unsupported_reason(self, case) -> str | None:
        raise NotImplementedError

    def _call(self, case):
        """``(function of (pred, target) jax arrays, native call text)``."""
        raise NotImplementedError

    def evaluate(self, case) -> Outcome:
        if self._jax is None:
            self.setup()
        why = self.unsupported_reason(case)
        if why is not None:
            return Outcome(status="unsupported", error_message=why)
        fn, native = self._call(case)
        pred = self._array(case, "pred")
        target = self._array(case, "target")
        if self.compiled and self._compiles and max(pred.size, target.size) <= COMPILED_MAX_SIZE:
            out, g_pred, g_target = self._run_compiled(case, fn, pred, target)
        elif case.grad:
            out, vjp = self._jax.vjp(fn, pred, target)
            # head gradient of ones == d sum(output) (KL-GRAD-1)
            g_pred, g_target = vjp(self._jnp.ones_like(out))
        else:
            out, g_pred, g_target = fn(pred, target), None, None
        grads: dict[str, np.ndarray] = {}
        grad_dtypes: dict[str, str] = {}
        if case.grad:
            wanted = self.capabilities().gradients
            for name, g in (("pred", g_pred), ("target", g_target)):
                if name in wanted:
                    grads[name] = _to_f64(g)
                    grad_dtypes[name] = str(g.dtype)
        return Outcome(status="ok", value=_to_f64(out), dtype=str(out.dtype), shape=tuple(out.shape),
                       grads=grads, grad_dtypes=grad_dtypes, native_call=native)

    def _options_key(self, case) -> tuple:
        """What besides dtypes and shapes makes :meth:`_call`'s function differ (its options)."""
        return ()

    def _run_compiled(self, case, fn, pred, target):
        """``(out, g_pred, g_target)`` of ``fn`` from one executable per signature (value and
        VJP together, compiled once), bit for bit what the eager path gives (see
        :data:`COMPILE_OPTIONS`).  Warnings raised while tracing are raised again on every
        call, as the eager path traces (and warns) on every call."""
        jax, jnp = self._jax, self._jnp
        key = (case.grad, self._options_key(case), str(pred.dtype), pred.shape, str(target.dtype), target.shape)
        entry = self._executables.get(key)
        if entry is None:
            entry = self._executables[key] = self._compile(case.grad, fn, pred, target)
        executable, head, traced_warnings, broadcast_value = entry
        for message in traced_warnings:
            warnings.warn(message)
        out, (g_pred, g_target) = executable(pred, target, head)
        if broadcast_value is not None:
            # XLA simplifies the broadcast operands' terms differently from the op-by-op
            # path; on explicitly broadcast inputs the value is the eager one
            out = broadcast_value(*(jnp.asarray(a) for a in np.broadcast_arrays(np.asarray(pred), np.asarray(target))))
        return out, g_pred, g_target

    def _compile(self, grad: bool, fn, pred, target):
        jax, jnp = self._jax, self._jnp
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # this extra trace's warnings are not the call's
            shape = jax.eval_shape(fn, pred, target)
        # the head is an argument: a constant head of ones would let XLA drop the product by
        # it, and with it the flush of subnormal gradients the eager path does
        head = jnp.ones(shape.shape, shape.dtype)

        def value_and_grads(p, t, ct):
            if not grad:
                return fn(p, t), (None, None)
            out, vjp = jax.vjp(fn, p, t)
            return out, vjp(ct)           # head of ones == d sum(output) (KL-GRAD-1)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            lowered = jax.jit(value_and_grads).lower(pred, target, head)
        executable = lowered.compile(self.compile_options)
        broadcast_value = None
        if pred.shape != target.shape:
            full = [jnp.asarray(a) for a in np.broadcast_arrays(np.asarray(pred), np.asarray(target))]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                broadcast_value = jax.jit(fn).lower(*full).compile(self.compile_options)
        return executable, head, [w.message for w in caught], broadcast_value


def _to_f64(a) -> np.ndarray:
    """A jax array as float64 numpy (bfloat16 and float16 widen exactly)."""
    return np.asarray(a).astype(np.float64)


class _JaxSpecial(_Jax):
    """``jax.scipy.special.<fn>(p=P, q=Q)``: elementwise, probabilities, broadcasting."""

    function = ""
    compile_options = ELEMENTWISE_COMPILE_OPTIONS

    def capabilities(self) -> Capabilities:
        return Capabilities(
            dtypes=frozenset(DTYPES),
            reductions=frozenset({"none"}),   # elementwise; users sum themselves
            pred_kinds=frozenset({"prob"}),
            target_kinds=frozenset({"prob"}),
            weights=frozenset(),
            gradients=frozenset({"pred", "target"}),
            devices=frozenset({"cpu"}),
            batch_axis=False,
            class_axis=False,
            broadcasting=True,                # promote_args_inexact + jnp.where broadcast
            min_ndim=0,
            max_ndim=8,
            options=(),
        )

    def unsupported_reason(self, case) -> str | None:
        if case.dtype not in DTYPES:
            return f"dtype {case.dtype!r} not supported"
        if case.reduction != "none":
            return f"reduction {case.reduction!r}: {self.api} is elementwise (none only)"
        if case.target_kind != "prob" or case.pred_kind != "prob":
            return f"{self.api} takes probabilities for both arguments"
        if case.weight is not None or case.sample_weight is not None:
            return "no weight arguments"
        return None

    def _call(self, case):
        f = getattr(self._jax.scipy.special, self.function)
        text = (f"jax.scipy.special.{self.function}({input_text(case, 'target')}, "
                f"{input_text(case, 'pred')})")
        return (lambda pred, target: f(target, pred)), text

    def setup(self) -> dict[str, Any]:
        facts = super().setup()
        import jax.scipy.special  # noqa: F401  (the API driven)
        return facts


class JaxRelEntr(_JaxSpecial):
    """``jax.scipy.special.rel_entr(p=P, q=Q)``: elementwise relative entropy."""

    name = "jax.rel_entr"
    api = "jax.scipy.special.rel_entr"
    doc_url = DOC_REL_ENTR
    function = "rel_entr"

    def documented(self, case) -> Point:
        """The docs: p·log(p/q) for p > 0, q > 0; 0 for p = 0, q ≥ 0; ∞ otherwise (SciPy's
        rel_entr, KL-NEG-INF); read with NaN in, NaN out as everywhere in the family."""
        return Point(reduction=case.reduction, negative="inf")


class JaxKLDiv(_JaxSpecial):
    """``jax.scipy.special.kl_div(p=P, q=Q)``: elementwise generalised KL, p·log(p/q) − p + q."""

    name = "jax.kl_div"
    api = "jax.scipy.special.kl_div"
    doc_url = DOC_KL_DIV
    function = "kl_div"

    def documented(self, case) -> Point:
        """The docs: p·log(p/q) − p + q for p > 0, q > 0; q for p = 0, q ≥ 0; ∞ otherwise
        (the generalised term, KL-GEN-1/2, KL-NEG-INF)."""
        return Point(reduction=case.reduction, generalised=True, negative="inf")

"""SciPy adapters: ``scipy.special.rel_entr``, ``scipy.special.kl_div`` (elementwise ufuncs)
and ``scipy.stats.entropy(pk, qk, axis=...)`` (the KL of the normalised inputs).

None of them is the canonical KL loss of SPEC.md §1; each is a point of the §11 family:

* ``rel_entr(x, y)``: ``x·log(x/y)`` for x > 0, y > 0; 0 for x = 0, y ≥ 0; ``+inf``
  otherwise -- the canonical term with negative entries giving ``+inf``
  (``Point("none", negative="inf")``, KL-NEG-INF);
* ``kl_div(x, y)``: ``x·log(x/y) − x + y`` for x > 0, y > 0; ``y`` for x = 0, y ≥ 0;
  ``+inf`` otherwise -- the generalised term (KL-GEN-1, KL-GEN-2, KL-NEG-INF);
* ``entropy(pk, qk, axis)``: ``pk`` and ``qk`` divided by their sums along ``axis``, then
  ``sum(rel_entr(pk, qk), axis)`` -- ``Point("distribution", normalise=True,
  negative="inf")`` (KL-NORM-1).  Its ``axis`` defaults to **0**, not the last axis: the
  adapter always passes the case's class axis (docs/frameworks/scipy.md).

P is ``x`` / ``pk`` and Q is ``y`` / ``qk``, both probabilities (KL-ARG-1).  The ufuncs
take float16/float32/float64 (no bfloat16 in numpy) and are not differentiable (no
gradients).  SciPy is imported only in :meth:`setup`.  Recorded discrepancies:
klconform/known/scipy_*.toml.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from klconform.adapters.base import Adapter, Capabilities, Outcome, shape_text
from klconform.reference.family import Point

DOC_REL_ENTR = "https://docs.scipy.org/doc/scipy/reference/generated/scipy.special.rel_entr.html"
DOC_KL_DIV = "https://docs.scipy.org/doc/scipy/reference/generated/scipy.special.kl_div.html"
DOC_ENTROPY = "https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.entropy.html"
DTYPES = ("float16", "float32", "float64")


class _Scipy(Adapter):
    framework = "scipy"
    doc_version = "1.15"
    reductions: tuple[str, ...] = ("none",)

    def __init__(self) -> None:
        self._scipy = None

    def capabilities(self) -> Capabilities:
        return Capabilities(
            dtypes=frozenset(DTYPES),
            reductions=frozenset(self.reductions),
            pred_kinds=frozenset({"prob"}),
            target_kinds=frozenset({"prob"}),
            weights=frozenset(),
            gradients=frozenset(),        # numpy ufuncs: no autodiff
            devices=frozenset({"cpu"}),
            batch_axis=False,
            class_axis=self.reductions != ("none",),
            broadcasting=True,            # numpy broadcasting
            min_ndim=0 if self.reductions == ("none",) else 1,
            max_ndim=8,
            options=self.options,
        )

    options: tuple[str, ...] = ()

    def setup(self) -> dict[str, Any]:
        import scipy
        import scipy.special
        import scipy.stats
        self._scipy = scipy
        return {"framework": "scipy", "version": scipy.__version__, "numpy": np.__version__, "device": "cpu"}

    def unsupported_reason(self, case) -> str | None:
        if case.dtype not in DTYPES:
            return f"dtype {case.dtype!r}: numpy has no such dtype"
        if case.reduction not in self.reductions:
            return f"reduction {case.reduction!r}: this API computes {self.reductions}"
        if case.target_kind != "prob" or case.pred_kind != "prob":
            return "SciPy takes probabilities for both arguments"
        if case.weight is not None or case.sample_weight is not None:
            return "no weight arguments"
        return None

    def evaluate(self, case) -> Outcome:
        if self._scipy is None:
            self.setup()
        why = self.unsupported_reason(case)
        if why is not None:
            return Outcome(status="unsupported", error_message=why)
        x, y = case.sent_values("target"), case.sent_values("pred")     # in case.dtype: no mixed inputs
        with np.errstate(all="ignore"):
            out, native = self._call(case, x, y)
        out = np.asarray(out)
        return Outcome(status="ok", value=out.astype(np.float64), dtype=str(out.dtype), shape=tuple(out.shape),
                       native_call=native)

    def _call(self, case, x, y):
        raise NotImplementedError


class ScipyRelEntr(_Scipy):
    """``scipy.special.rel_entr(x=P, y=Q)``: elementwise relative entropy."""

    name = "scipy.rel_entr"
    api = "scipy.special.rel_entr"
    doc_url = DOC_REL_ENTR

    def documented(self, case) -> Point:
        # Docs: x log(x/y) (x > 0, y > 0); 0 (x = 0, y >= 0); inf otherwise.
        return Point(reduction=case.reduction, negative="inf")

    def _call(self, case, x, y):
        return (self._scipy.special.rel_entr(x, y),
                f"scipy.special.rel_entr({shape_text(x, case.dtype)}, {shape_text(y, case.dtype)})")


class ScipyKLDiv(_Scipy):
    """``scipy.special.kl_div(x=P, y=Q)``: elementwise generalised KL, x log(x/y) − x + y."""

    name = "scipy.kl_div"
    api = "scipy.special.kl_div"
    doc_url = DOC_KL_DIV

    def documented(self, case) -> Point:
        # Docs: x log(x/y) - x + y (x > 0, y > 0); y (x = 0, y >= 0); inf otherwise.
        return Point(reduction=case.reduction, generalised=True, negative="inf")

    def _call(self, case, x, y):
        return (self._scipy.special.kl_div(x, y),
                f"scipy.special.kl_div({shape_text(x, case.dtype)}, {shape_text(y, case.dtype)})")


class ScipyEntropy(_Scipy):
    """``scipy.stats.entropy(pk=P, qk=Q, axis=<class axis>)``: KL of the normalised inputs
    along ``axis`` (the adapter passes it; the default is 0)."""

    name = "scipy.entropy"
    api = "scipy.stats.entropy"
    doc_url = DOC_ENTROPY
    reductions = ("distribution",)
    options = ("axis", "base")

    def documented(self, case) -> Point:
        # Docs: "If qk is not None, then compute the relative entropy D = sum(pk * log(pk / qk))
        # ... This routine will normalize pk and qk if they don't sum to 1."  The terms are
        # scipy.special.rel_entr (negative entries -> inf).
        return Point(reduction=case.reduction, normalise=True, negative="inf")

    def _call(self, case, x, y):
        axis = case.class_axis
        return (self._scipy.stats.entropy(x, y, axis=axis),
                f"scipy.stats.entropy({shape_text(x, case.dtype)}, {shape_text(y, case.dtype)}, axis={axis})")

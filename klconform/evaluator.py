"""The reference as the verdicts call it: ``reference.evaluate`` memoised per (case, point).

One :class:`ReferenceCache` per run lets both comparisons of an outcome (canonical and
documented), the explanation search and byte-identical cases sent to several adapters
reuse the reference's answers.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable

import numpy as np

from klconform.reference.evaluate import evaluate as reference_evaluate
from klconform.reference.family import Point
from klconform.reference.variants import UndefinedCase
from klconform.reference._quiet import quiet

from .case import Case


class ReferenceUndefined(Exception):
    """Raised by an ``evaluate`` function when the spec defines an *error* for the case."""


# Exception types by which an evaluate function says "the spec defines an error" (KL-RED-0D).
UNDEFINED = (ReferenceUndefined, UndefinedCase)


def default_evaluate(case: Case, point: Point | None = None):
    """``reference.evaluate``."""
    return reference_evaluate(case, point)


class ReferenceCache:
    """Memoises ``evaluate(case, point)`` (exceptions included) per (digest, point).

    ``values_only=True`` evaluates a gradient-free copy of the case: the candidate search
    checks a point's value first and computes its gradients only when the value fits."""

    def __init__(self, evaluate: Callable):
        self.evaluate = evaluate
        self.store: dict[tuple[str, Point], Any] = {}
        # per adapter: points that explained earlier outcomes, most recent first (search order)
        self.hints: dict[str, list[Point]] = {}
        self._digests: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._gradless: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def digest(self, case: Case) -> str:
        """``case.digest``, computed once per case object (it hashes the payload)."""
        d = self._digests.get(case)
        if d is None:
            d = self._digests[case] = case.digest
        return d

    def _without_grad(self, case: Case) -> Case:
        c = self._gradless.get(case)
        if c is None:
            c = self._gradless[case] = case.replace(grad=False) if case.grad else case
        return c

    def __call__(self, case: Case, point: Point, *, candidate: bool = False, values_only: bool = False):
        """The reference's ``Expected``, or the UndefinedCase exception when the spec defines
        an error; for a ``candidate`` point any exception means "not applicable"."""
        if values_only and case.grad:
            full = self.store.get((self.digest(case), point))
            if full is not None:
                return full
            case = self._without_grad(case)
        key = (self.digest(case), point)
        if key not in self.store:
            try:
                with quiet:
                    self.store[key] = self.evaluate(case, point)
            except UNDEFINED as exc:
                self.store[key] = exc
            except Exception as exc:
                # A candidate point the reference cannot evaluate for this case (e.g. a
                # misread encoding outside its domain) is simply no explanation; for the
                # compared point the same failure is a bug and propagates.
                if not candidate:
                    raise
                self.store[key] = exc
        return self.store[key]

    def forget(self, digest: str) -> None:
        """Drop the cached results of one case (bounded memory on long runs)."""
        for k in [k for k in self.store if k[0] == digest]:
            del self.store[k]


def make_evaluator(evaluate: Callable | None = None) -> ReferenceCache:
    """A memoising wrapper around ``evaluate`` (default :func:`default_evaluate`); share one
    per run so both comparisons and the candidate search reuse reference results."""
    return evaluate if isinstance(evaluate, ReferenceCache) else ReferenceCache(evaluate or default_evaluate)

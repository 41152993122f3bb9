"""Documentation claims (klconform/claims.toml) checked against a run's observed behaviour.

    claims = load_claims()                       # ClaimsError (one line) on a malformed file
    results = check_claims(run_result, claims)   # one ClaimResult per claim and adapter run

Every check reads only the results (cases, outcomes, fingerprints) and the float64
reference; the check kinds are documented at the top of claims.toml.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable

import numpy as np

from klconform.reference.evaluate import evaluate
from klconform.reference.family import Point

from .. import wire
from ..case import Case
from ..compare import value_agrees
from ..evaluator import UNDEFINED
from ..fingerprint import Template
from ..results import AdapterRun, RunResult

CLAIMS_PATH = Path(__file__).resolve().parent.parent / "claims.toml"
HOLDS, FAILS, UNCHECKED = "holds", "does not hold", "not checked"
KINDS = ("fingerprint", "value", "relation", "warning", "shape", "unchecked")
SHAPE_OUTPUT = ("input", "target", "broadcast", "scalar")   # shape check, of = "output"
SHAPE_ACCEPTED = ("same", "same_count")                      # shape check, of = "accepted"
SELECTOR_FIELDS = ("label", "dtype", "reduction", "pred_kind", "target_kind")
_TEMPLATE_FIELDS = {f.name for f in dataclasses.fields(Template)} - {"reductions"}


class ClaimsError(ValueError):
    """A malformed claims file; the message names the file and the claim."""


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str
    subject: tuple[str, ...]
    topic: str
    source: str
    quote: str
    check: dict[str, Any]
    url: str = ""
    note: str = ""


@dataclasses.dataclass
class ClaimResult:
    claim: Claim
    run: str | None          # adapter run id; None when no run of the subject is present
    status: str              # HOLDS | FAILS | UNCHECKED
    evidence: str            # one line
    cases: list[str] = dataclasses.field(default_factory=list)   # digests the verdict rests on


# ----------------------------------------------------------------------------- loading
def _validate(where: str, d: dict[str, Any]) -> Claim:
    for key in ("id", "subject", "topic", "source", "quote", "check"):
        if key not in d:
            raise ClaimsError(f"{where}: missing field {key!r}")
    unknown = set(d) - {"id", "subject", "topic", "source", "quote", "check", "url", "note"}
    if unknown:
        raise ClaimsError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    chk = d["check"]
    kind = chk.get("kind") if isinstance(chk, dict) else None
    if kind not in KINDS:
        raise ClaimsError(f"{where}: check.kind {kind!r} is not one of {', '.join(KINDS)}")
    need = {"fingerprint": ("expect",), "value": ("cases", "expect"), "relation": ("left", "right", "op"),
            "warning": ("cases", "contains"), "shape": ("cases", "expect"), "unchecked": ("reason",)}[kind]
    for key in need:
        if key not in chk:
            raise ClaimsError(f"{where}: check of kind {kind!r} needs {key!r}")
    for sel_key in ("cases", "left", "right"):
        sel = chk.get(sel_key)
        if sel is not None:
            bad = set(sel) - set(SELECTOR_FIELDS)
            if bad:
                raise ClaimsError(f"{where}: check.{sel_key}: unknown selector field(s) {', '.join(sorted(bad))}")
    if kind == "fingerprint":
        for key in chk["expect"]:
            if key not in _TEMPLATE_FIELDS and not (key.startswith("reduction[") and key.endswith("]")):
                raise ClaimsError(f"{where}: fingerprint field {key!r} is not a template field or reduction[R]")
    if chk.get("quantity", "divergence") not in ("divergence", "output"):
        raise ClaimsError(f"{where}: check.quantity {chk['quantity']!r} is not 'divergence' or 'output'")
    if kind == "relation" and chk["op"] not in ("==", "<", ">"):
        raise ClaimsError(f"{where}: relation op {chk['op']!r} is not one of ==, <, >")
    if kind == "relation" and chk.get("left_factor", "batch_size") != "batch_size":
        raise ClaimsError(f"{where}: relation left_factor {chk['left_factor']!r} is not 'batch_size'")
    if kind == "shape":
        of = chk.get("of", "output")
        allowed = {"output": SHAPE_OUTPUT, "accepted": SHAPE_ACCEPTED}.get(of)
        if allowed is None:
            raise ClaimsError(f"{where}: shape check of {of!r} is not 'output' or 'accepted'")
        if chk["expect"] not in allowed:
            raise ClaimsError(f"{where}: shape check of {of!r}: expect {chk['expect']!r} is not one of {', '.join(allowed)}")
    if kind == "value" and isinstance(chk["expect"], dict) and "printed" in chk["expect"]:
        try:
            _printed(chk["expect"]["printed"])
        except (TypeError, ValueError):
            raise ClaimsError(f"{where}: printed {chk['expect']['printed']!r} is not a decimal string or a list of them") from None
    subject = d["subject"]
    subject = (subject,) if isinstance(subject, str) else tuple(subject)
    return Claim(id=d["id"], subject=subject, topic=d["topic"], source=d["source"], quote=d["quote"],
                 check=dict(chk), url=d.get("url", ""), note=d.get("note", ""))


def load_claims(path: str | Path | None = None) -> list[Claim]:
    """The claims of ``path`` (default klconform/claims.toml), validated."""
    p = Path(path) if path else CLAIMS_PATH
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ClaimsError(f"{p}: cannot read claims file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ClaimsError(f"{p}: not valid TOML ({exc})") from None
    out, seen = [], set()
    for i, d in enumerate(data.get("claim", [])):
        claim = _validate(f"{p.name}: claim #{i + 1} ({d.get('id', '?')})", d)
        if claim.id in seen:
            raise ClaimsError(f"{p.name}: duplicate claim id {claim.id!r}")
        seen.add(claim.id)
        out.append(claim)
    return out


# ----------------------------------------------------------------------------- selection
def subject_matches(subject: Iterable[str], run_id: str) -> bool:
    base = run_id.split("@", 1)[0]
    return any(fnmatch.fnmatchcase(run_id, s) or fnmatch.fnmatchcase(base, s) for s in subject)


def _field_matches(want, have) -> bool:
    options = want if isinstance(want, list) else [want]
    for w in options:
        if isinstance(w, str) and isinstance(have, str) and fnmatch.fnmatchcase(have, w):
            return True
        if w == have:
            return True
    return False


def select(result: RunResult, run: AdapterRun, selector: dict[str, Any]) -> list[str]:
    """Digests of the cases ``run`` answered that match ``selector``, in digest order.  A
    counterexample the shrinker derived from a corpus case keeps that case's label but is
    not the documented question (the tf_keras docstring's (2, 2) example shrinks to a
    (1, 1) one): those are left out, and so are large cases (docs/large.md: claims are
    checked on the frozen corpus; a large case costs a generation and a 10⁷-term reference
    evaluation per look)."""
    shrunk = {cx.get("case") for cx in (run.counterexamples or {}).values()
              if isinstance(cx, dict) and cx.get("case") != cx.get("found_as")}
    out = []
    for digest in sorted(run.outcomes):
        if digest in shrunk:
            continue
        c = result.cases.get(digest)
        if c is not None and c.get("recipe") is None and all(_field_matches(w, c.get(k)) for k, w in selector.items()):
            out.append(digest)
    return out


# ----------------------------------------------------------------------------- helpers
class _Data:
    """Decoded cases and outcomes of one run, with reference results memoised."""

    def __init__(self, result: RunResult, run: AdapterRun):
        self.result, self.run = result, run
        self._cases: dict[str, Case] = {}
        self._outcomes: dict[str, Any] = {}
        self._exp: dict[tuple[str, Point], Any] = {}

    def case(self, d: str) -> Case:
        if d not in self._cases:
            self._cases[d] = Case.from_json(self.result.cases[d])
        return self._cases[d]

    def outcome(self, d: str):
        if d not in self._outcomes:
            self._outcomes[d] = wire.from_json(self.run.outcomes[d])
        return self._outcomes[d]

    def expected(self, d: str, point: Point | None = None):
        case = self.case(d)
        point = point or Point(reduction=case.reduction)
        key = (d, point)
        if key not in self._exp:
            try:
                with np.errstate(all="ignore"):
                    self._exp[key] = evaluate(case.replace(grad=False), point)
            except UNDEFINED as exc:   # the spec defines an error here (KL-RED-0D ...)
                self._exp[key] = exc
        return self._exp[key]


def _short(v) -> str:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.size == 1:
        return f"{a[0]:.9g}"
    if a.size <= 4:
        return "[" + ", ".join(f"{x:.6g}" for x in a) + "]"
    return f"array[{a.size}] max |.| {np.nanmax(np.abs(a)) if np.any(~np.isnan(a)) else float('nan'):.6g}"


def _printed(text) -> tuple[np.ndarray, np.ndarray]:
    """A documented number (or list of numbers) as printed, e.g. ``"0.458"`` or
    ``["0.916", "-3.08e-06"]``: the values and half a unit in each one's last printed digit
    (what "to the printed precision" allows)."""
    items = [text] if isinstance(text, str) else list(text)
    vals, tols = [], []
    for t in items:
        if not isinstance(t, str):
            raise TypeError(t)
        m = re.fullmatch(r"\s*([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?\s*", t)
        if not m or not (m.group(2) or m.group(3)):
            raise ValueError(t)
        digits = len(m.group(3) or "")
        exp = int(m.group(4) or 0)
        vals.append(float(t))
        tols.append(0.5 * 10.0 ** (exp - digits))
    return np.array(vals), np.array(tols)


def _describe(data: _Data, d: str) -> str:
    c = data.result.cases[d]
    return f"{c.get('label') or d} ({c['dtype']}, {c['reduction']}, case {d})"


def _judged(data: _Data, d: str, quantity: str):
    """(outcome, reduction) a value claim is judged on.  A claim about the divergence
    (``quantity = "divergence"``, the default) is about KL per distribution (SPEC.md
    KL-DEF-1), so a ``none``-reduction outcome is summed along the class axis first
    (``[0, inf, 0]`` is a divergence of inf); ``quantity = "output"`` takes what was returned."""
    o = data.outcome(d)
    case = data.case(d)
    if quantity != "divergence" or case.reduction != "none" or o.value is None:
        return o, case.reduction
    obs = np.asarray(o.value, dtype=np.float64)
    if obs.shape != tuple(case.shape) or not obs.ndim:
        return o, case.reduction      # judged as returned: the shape check below says why it fails
    with np.errstate(invalid="ignore", over="ignore"):
        summed = np.sum(obs, axis=case.class_axis % obs.ndim)
    return SimpleNamespace(status=o.status, value=summed, shape=summed.shape, dtype=o.dtype), "distribution"


def _satisfies(data: _Data, d: str, expect, quantity: str = "divergence") -> tuple[bool, str]:
    """Whether outcome ``d`` satisfies a value expectation, and what was seen.  Any outcome
    an adapter can return is judged, never raised on: a value of another shape than the
    reference's fails the claim with the shapes as evidence."""
    o = data.outcome(d)
    if o.status != "ok" or o.value is None:
        return False, f"{o.status}: {getattr(o, 'error_type', None) or ''} {(getattr(o, 'error_message', None) or '')[:80]}".strip()
    if isinstance(expect, dict) and "printed" in expect:
        return _satisfies_printed(data, d, expect["printed"])
    o, reduction = _judged(data, d, quantity)
    obs = np.asarray(o.value, dtype=np.float64)
    seen = f"observed {_short(obs)}" + (" (summed over the class axis)" if reduction != data.case(d).reduction else "")
    if isinstance(expect, str) and expect in ("nan", "inf", "-inf", "finite"):
        with np.errstate(invalid="ignore"):
            ok = {"nan": np.isnan(obs), "inf": np.isposinf(obs), "-inf": np.isneginf(obs),
                  "finite": np.isfinite(obs)}[expect]
        return bool(obs.size and np.all(ok)), seen
    exp = data.expected(d, Point(reduction=reduction))
    if isinstance(exp, Exception):
        return False, f"{seen}; the reference defines no value ({exp})"
    want_shape = np.shape(exp.value)
    if obs.shape != want_shape:
        return False, f"{seen}: shape {list(obs.shape)} where the reference has {list(want_shape)}"
    bound = np.asarray(exp.bound, dtype=np.float64)
    case = data.case(d)
    if expect == "canonical":
        return value_agrees(exp, o, case), f"{seen}, canonical {_short(exp.value)}"
    if expect == "nonnegative":
        with np.errstate(invalid="ignore"):
            ok = bool(np.all((obs >= -bound) | np.isposinf(obs)))
        return ok, seen
    if isinstance(expect, (int, float)) and not isinstance(expect, bool):
        with np.errstate(invalid="ignore"):
            ok = bool(obs.size and np.all(np.abs(obs - float(expect)) <= bound))
        return ok, f"{seen} (bound {_short(bound)})"
    if isinstance(expect, dict) and "point" in expect:
        fields = {"reduction": reduction, **expect["point"]}
        pexp = data.expected(d, Point(**fields))
        if isinstance(pexp, Exception):
            return False, f"{seen}; {Point(**fields).name} is undefined here"
        if np.shape(pexp.value) != obs.shape:
            return False, f"{seen}: shape {list(obs.shape)} where {Point(**fields).name} has {list(np.shape(pexp.value))}"
        f = float(expect.get("factor", 1.0))
        scaled = SimpleNamespace(value=pexp.value * f, value_in_dtype=pexp.value_in_dtype * f,
                                 bound=np.abs(pexp.bound * f) + np.broadcast_to(bound, np.shape(pexp.bound)))
        what = Point(**fields).name + (f" x {f:g}" if f != 1.0 else "")
        return value_agrees(scaled, o, case), f"{seen}, {what} = {_short(scaled.value)}"
    raise ClaimsError(f"unsupported value expectation {expect!r}")


def _satisfies_printed(data: _Data, d: str, printed) -> tuple[bool, str]:
    """A documented example's printed output against the outcome as returned: every
    element within half a unit of its last printed digit, or the observed value with its
    trailing digits cut off (docs print 0.366 for 0.36652; the evidence says so).  The evidence also says whether
    the printed numbers are the canonical value of the case's reduction (to the same
    precision): a doc's example can match its framework and still not be the KL."""
    o = data.outcome(d)
    want, tol = _printed(printed)
    obs = np.asarray(o.value, dtype=np.float64).reshape(-1)
    text = printed if isinstance(printed, str) else "[" + ", ".join(printed) + "]"
    seen = f"observed {_short(obs)}, printed {text}"
    if obs.size != want.size:
        return False, f"{seen}: {obs.size} value(s) where {want.size} are printed"
    with np.errstate(invalid="ignore"):
        rounded = np.abs(obs - want) <= tol
        # printed digits that cut the observed value off (toward zero) instead of rounding it
        truncated = (np.sign(obs) * np.sign(want) >= 0) & (np.abs(want) <= np.abs(obs)) & (np.abs(obs) < np.abs(want) + 2 * tol)
        ok = bool(np.all(rounded | truncated))
        if not ok:
            off = f" (off by {_short(np.abs(obs - want))}, precision +-{_short(tol)})"
        elif not np.all(rounded):
            off = f" (the printed digits are the observed value truncated, not rounded: off by {_short(np.abs(obs - want))})"
        else:
            off = ""
    exp = data.expected(d)
    if isinstance(exp, Exception):
        return ok, f"{seen}{off}; the reference defines no value ({exp})"
    canon = np.asarray(exp.value, dtype=np.float64).reshape(-1)
    if canon.size != want.size:
        return ok, f"{seen}{off}; canonical {data.case(d).reduction} has shape {list(np.shape(exp.value))}"
    with np.errstate(invalid="ignore"):
        is_kl = bool(np.all((np.abs(canon - want) <= tol) | ((np.sign(canon) * np.sign(want) >= 0)
                            & (np.abs(want) <= np.abs(canon)) & (np.abs(canon) < np.abs(want) + 2 * tol))))
    return ok, (f"{seen}{off}; canonical {data.case(d).reduction} {_short(canon)}: the printed value "
                + ("is" if is_kl else "is NOT") + " the canonical value to the printed precision")


# ----------------------------------------------------------------------------- checks
def _check_fingerprint(claim: Claim, run: AdapterRun, data: _Data) -> tuple[str, str, list[str]]:
    fp = run.fingerprint or {}
    obs = (fp.get("observed") or {}).get("template")
    if not obs:
        return UNCHECKED, f"no observed fingerprint ({fp.get('reason', 'no outcomes with values')})", []
    t = Template.from_json(obs)
    asked = set((fp.get("observed") or {}).get("points", {}))
    ties = [Template.from_json(x["template"]) for x in fp.get("ties_templates", [])]
    good, bad, skipped = [], [], []
    for key, want in claim.check["expect"].items():
        if key.startswith("reduction["):
            r = key[len("reduction["):-1]
            if r not in asked:
                skipped.append(f"{key}: no case asked for {r}")
                continue
            have, tie_vals = t.applied(r), {x.applied(r) for x in ties}
        else:
            have, tie_vals = getattr(t, key), {getattr(x, key) for x in ties}
        same = (math.isclose(have, want, rel_tol=1e-9) if isinstance(want, float) and isinstance(have, float)
                else have == want)
        if any(v != have for v in tie_vals):
            skipped.append(f"{key}: an equally good template has {key}={sorted(map(str, tie_vals - {have}))[0]}")
            continue
        (good if same else bad).append(f"{key}={have!r}" + ("" if same else f" (claimed {want!r})"))
    caveat = "" if fp.get("status") == "exact" else f"; fingerprint is {fp.get('status')} ({fp.get('agree')}/{fp.get('compared')} cases)"
    if bad:
        return FAILS, f"observed {t.name}: " + ", ".join(bad) + caveat, []
    if skipped and not good:
        return UNCHECKED, "; ".join(skipped), []
    return HOLDS, f"observed {t.name}: " + ", ".join(good) + caveat, []


def _check_value(claim: Claim, run: AdapterRun, data: _Data) -> tuple[str, str, list[str]]:
    chosen = select(data.result, run, claim.check["cases"])
    if not chosen:
        return UNCHECKED, f"no case matching {claim.check['cases']} was sent to this adapter", []
    fails = []
    first_ok = None
    for d in chosen:
        ok, seen = _satisfies(data, d, claim.check["expect"], claim.check.get("quantity", "divergence"))
        if not ok:
            fails.append((d, seen))
        elif first_ok is None:
            first_ok = (d, seen)
    if fails:
        d, seen = fails[0]
        return FAILS, (f"{len(fails)} of {len(chosen)} outcomes differ from {claim.check['expect']!r}; "
                       f"e.g. {_describe(data, d)}: {seen}"), [f[0] for f in fails[:5]]
    d, seen = first_ok
    return HOLDS, f"all {len(chosen)} outcomes agree; e.g. {_describe(data, d)}: {seen}", chosen[:5]


def _pairs(data: _Data, run: AdapterRun, chk: dict) -> list[tuple[str, str]]:
    keys = chk.get("pair_on", ["dtype", "reduction"])
    left = select(data.result, run, chk["left"])
    right = select(data.result, run, chk["right"])
    def key(d):
        return tuple(str(data.result.cases[d].get(k)) for k in keys)
    rmap: dict[tuple, str] = {}
    for d in right:
        rmap.setdefault(key(d), d)
    return [(l, rmap[key(l)]) for l in left if key(l) in rmap and rmap[key(l)] != l]


def _check_relation(claim: Claim, run: AdapterRun, data: _Data) -> tuple[str, str, list[str]]:
    pairs = _pairs(data, run, claim.check)
    op = claim.check["op"]
    scaled = "left_factor" in claim.check      # left x the case's batch size (e.g. batchmean x N vs sum)
    skipped = 0
    if scaled:
        kept = [(l, r) for l, r in pairs if _batch_size(data.case(l))]
        skipped, pairs = len(pairs) - len(kept), kept
    if not pairs:
        return UNCHECKED, "no pair of outcomes to compare (the selected cases were not sent to this adapter)", []
    fails = []
    for l, r in pairs:
        ol, orr = data.outcome(l), data.outcome(r)
        if ol.status != "ok" or orr.status != "ok" or ol.value is None or orr.value is None:
            fails.append((l, r, f"status {ol.status} / {orr.status}"))
            continue
        a, b = np.asarray(ol.value, dtype=np.float64), np.asarray(orr.value, dtype=np.float64)
        n = _batch_size(data.case(l)) if scaled else 1
        a = a * n
        if a.shape != b.shape:
            fails.append((l, r, f"shapes {list(a.shape)} / {list(b.shape)}"))
            continue
        with np.errstate(invalid="ignore"):
            if op == "==":
                ea, eb = data.expected(l), data.expected(r)
                bounds = [np.asarray(e.bound, dtype=np.float64) * (n if e is ea else 1)
                          for e in (ea, eb) if not isinstance(e, Exception)]
                if any(np.shape(b) not in ((), a.shape) for b in bounds):
                    fails.append((l, r, f"shape {list(a.shape)} differs from the reference's"))
                    continue
                bound = sum(bounds)
                same_special = np.all((np.isnan(a) == np.isnan(b)) & (np.isinf(a) == np.isinf(b)))
                fin = np.isfinite(a) & np.isfinite(b)
                ok = bool(same_special and np.all(np.where(fin, np.abs(a - b) <= bound, a == b) | (np.isnan(a) & np.isnan(b))))
            else:
                ok = bool(np.all(a < b) if op == "<" else np.all(a > b))
        if not ok:
            if scaled:
                c = data.case(l)
                with np.errstate(all="ignore"):
                    div = np.asarray(b, dtype=np.float64).reshape(-1)[:1] / np.asarray(ol.value, dtype=np.float64).reshape(-1)[:1]
                fails.append((l, r, f"{_short(ol.value)} x batch size {n} = {_short(a)} {op} {_short(b)} is false "
                                    f"(observed divisor {_short(div)}; pred {list(c.pred.shape)}, target {list(c.target.shape)})"))
            else:
                fails.append((l, r, f"{_short(a)} {op} {_short(b)} is false"))
    extra = f"; {skipped} pair(s) with batch size 0 left out" if skipped else ""
    if fails:
        l, r, why = fails[0]
        return FAILS, (f"{len(fails)} of {len(pairs)} pairs fail; e.g. {_describe(data, l)} vs "
                       f"{_describe(data, r)}: {why}{extra}"), [f[0] for f in fails[:4]] + [fails[0][1]]
    l, r = pairs[0]
    lhs = f"{_short(data.outcome(l).value)}" + (" x batch size" if scaled else "")
    return HOLDS, (f"all {len(pairs)} pairs satisfy {op}; e.g. {lhs} {op} "
                   f"{_short(data.outcome(r).value)} ({_describe(data, l)}){extra}"), [l, r]


def _batch_size(case: Case) -> int:
    """The size of the batch axis of the broadcast shape (KL-RED-BATCHMEAN's divisor); 0 for
    a 0-D case or an empty batch."""
    shape = case.shape
    return int(shape[case.batch_axis % len(shape)]) if shape else 0


def _check_shape(claim: Claim, run: AdapterRun, data: _Data) -> tuple[str, str, list[str]]:
    """``of = "output"``: every successful outcome has the ``expect`` shape (the input's =
    the prediction's, the target's, the broadcast shape, or a scalar).  ``of = "accepted"``:
    the shape pairs the framework accepted (status ok) or refused (error) against what the
    docs allow: ``same`` (only equal shapes) or ``same_count`` (any shapes with equal element
    counts).  Cases the adapter declined (unsupported) say nothing about the framework."""
    chosen = select(data.result, run, claim.check["cases"])
    if not chosen:
        return UNCHECKED, f"no case matching {claim.check['cases']} was sent to this adapter", []
    expect = claim.check["expect"]

    def shapes(d):
        c = data.case(d)   # the target as sent (case.target_sent_shape, KL-SHAPE-3)
        return tuple(c.pred.shape), tuple(c.sent_target.shape)

    def pair_text(d):
        p, t = shapes(d)
        return f"pred {list(p)} / target {list(t)}"

    if claim.check.get("of", "output") == "output":
        ok_cases = [d for d in chosen if data.outcome(d).status == "ok" and data.outcome(d).value is not None]
        if not ok_cases:
            return UNCHECKED, f"no successful outcome among {len(chosen)} selected cases", []
        bad = []
        for d in ok_cases:
            c = data.case(d)
            want = {"input": c.pred.shape, "target": c.target.shape, "broadcast": c.shape, "scalar": ()}[expect]
            got = np.shape(data.outcome(d).value)
            if tuple(got) != tuple(want):
                bad.append((d, got, want))
        differ = sum(1 for d in ok_cases if shapes(d)[0] != shapes(d)[1])
        summary = f"{len(ok_cases)} outcomes ({differ} with pred and target shapes differing)"
        if bad:
            d, got, want = bad[0]
            as_broadcast = sum(1 for b, g, _ in bad if tuple(g) == data.case(b).shape)
            return FAILS, (f"{len(bad)} of {summary} do not have the {expect} shape ({as_broadcast} of them have "
                           f"the broadcast shape); e.g. {_describe(data, d)}: "
                           f"{pair_text(d)} -> returned {list(got)}, {expect} shape {list(want)}"), [b[0] for b in bad[:5]]
        return HOLDS, f"all {summary} have the {expect} shape; e.g. {_describe(data, ok_cases[0])}: {pair_text(ok_cases[0])}", ok_cases[:5]

    # "same": a requirement (only equal shapes are accepted); "same_count": a permission (any
    # shapes with equal element counts are accepted; other pairs are only reported).
    accepted = [d for d in chosen if data.outcome(d).status == "ok"]
    refused = [d for d in chosen if data.outcome(d).status == "error"]
    judged = accepted + refused
    if not judged:
        return UNCHECKED, f"no selected case reached the framework ({len(chosen)} declined by the adapter)", []

    def allowed(d):
        p, t = shapes(d)
        return p == t if expect == "same" else int(np.prod(p)) == int(np.prod(t))

    def groups(ds):
        seen = {}
        for d in ds:
            seen.setdefault(pair_text(d), d)
        return seen

    wrongly_accepted = [d for d in accepted if not allowed(d)] if expect == "same" else []
    # an equal-shape pair refused was refused for something else (empty arrays, ...): not shapes
    wrongly_refused = [d for d in refused if allowed(d) and shapes(d)[0] != shapes(d)[1]]
    acc_diff = groups(d for d in accepted if shapes(d)[0] != shapes(d)[1])
    ref_diff = groups(d for d in refused if shapes(d)[0] != shapes(d)[1])
    seen = (f"{len(accepted)} accepted, {len(refused)} refused by the framework, {len(chosen) - len(judged)} "
            f"declined by the adapter; differing shape pairs accepted: "
            f"{', '.join(list(acc_diff)[:4]) or 'none'}; refused: {', '.join(list(ref_diff)[:4]) or 'none'}")
    if wrongly_accepted or wrongly_refused:
        d = (wrongly_accepted or wrongly_refused)[0]
        what = "accepted although the docs rule it out" if wrongly_accepted else "refused although the docs allow it"
        return FAILS, f"{_describe(data, d)}: {pair_text(d)} {what}; {seen}", (wrongly_accepted + wrongly_refused)[:5]
    if expect == "same_count":
        distinctive = [d for d in judged if shapes(d)[0] != shapes(d)[1] and allowed(d)
                       and not _broadcastable(*shapes(d))]
        if not distinctive:
            return UNCHECKED, ("the claim is about equal-count shapes that do not broadcast, and no such pair "
                               "(a case with target_sent_shape, KL-SHAPE-3) reached the framework; "
                               f"what was sent agrees with it: {seen}"), judged[:5]
    return HOLDS, seen, judged[:5]


def _broadcastable(a, b) -> bool:
    try:
        np.broadcast_shapes(a, b)
    except ValueError:
        return False
    return True


def _check_warning(claim: Claim, run: AdapterRun, data: _Data) -> tuple[str, str, list[str]]:
    chosen = [d for d in select(data.result, run, claim.check["cases"]) if data.outcome(d).status == "ok"]
    if not chosen:
        return UNCHECKED, f"no successful outcome for cases matching {claim.check['cases']}", []
    text = claim.check["contains"].lower()
    missing = [d for d in chosen if not any(text in w.lower() for w in data.outcome(d).warnings)]
    if missing:
        return FAILS, f"{len(missing)} of {len(chosen)} outcomes carry no such warning; e.g. {_describe(data, missing[0])}", missing[:5]
    return HOLDS, f"all {len(chosen)} outcomes carry the warning", chosen[:5]


_CHECKS = {"fingerprint": _check_fingerprint, "value": _check_value, "relation": _check_relation,
           "warning": _check_warning, "shape": _check_shape}


def check_claim(claim: Claim, result: RunResult) -> list[ClaimResult]:
    """The claim checked on every run of its subject (one result per run)."""
    runs = [r for r in result.runs if subject_matches(claim.subject, r.adapter)]
    kind = claim.check["kind"]
    if kind == "unchecked":
        return [ClaimResult(claim, r.adapter if runs else None, UNCHECKED, claim.check["reason"]) for r in runs] or \
               [ClaimResult(claim, None, UNCHECKED, claim.check["reason"])]
    if not runs:
        return [ClaimResult(claim, None, UNCHECKED, f"no run of {', '.join(claim.subject)} in these results")]
    out = []
    for r in runs:
        if r.status != "ok":
            out.append(ClaimResult(claim, r.adapter, UNCHECKED, f"adapter not run: {r.status} ({r.reason[:120]})"))
            continue
        status, evidence, cases = _CHECKS[kind](claim, r, _Data(result, r))
        out.append(ClaimResult(claim, r.adapter, status, evidence, cases))
    return out


def check_claims(result: RunResult, claims: list[Claim] | None = None) -> list[ClaimResult]:
    """Every claim (default: klconform/claims.toml) on every run of its subject."""
    out: list[ClaimResult] = []
    for c in (load_claims() if claims is None else claims):
        out += check_claim(c, result)
    return out

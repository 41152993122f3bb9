"""The large family: KL losses at the sizes they run at (docs/large.md).

Rows of 10³…2·10⁵ classes (language-model vocabularies: 32000, 50257, 131072), batches up
to 10³, in every dtype.  A case of 64×131072 float32 values is 32 MiB per input, too big
to commit, so the corpus stores a :class:`Recipe` and its :class:`~klconform.case.Case`
digest; :func:`generate` rebuilds the case bit for bit, and :func:`load` proves it did
(the digest of the wire bytes must match).  Generation therefore uses nothing whose
result can differ between machines or numpy versions: the PCG64 bit generator's raw
64-bit output, integer arithmetic, and correctly rounded IEEE float64 operations
(conversion, multiplication by powers of two, division, rounding to the dtype).  The
transcendental steps — each row's log-sum-exp, which makes log-probabilities sum to one,
and the sparse profile's log-probabilities — are the exact values rounded onto the row's
dyadic grid (:func:`klconform.exactmath.logsumexp_on_grid`, :func:`~klconform.exactmath.log_on_grid`):
numpy's ``exp``/``log`` only propose them, under an error bound, and a value that bound
leaves near a grid mid-point is computed again with ``decimal``.

Values, per row (a row is one distribution along the last axis):

* logits ``z``: dyadic, approximately normal — the sum of four 16-bit uniforms from one
  raw draw, centred, times ``2**(spread - 17)`` (σ ≈ 0.29·2**spread);
* log-probabilities ``z - c`` with ``c`` the row's log-sum-exp on the same grid (exact in
  float32; rounded to float16/bfloat16);
* probabilities ``w / Σw`` for integer weights ``w = (2**16 + r)·2**e``, ``e`` following
  the logits (clipped to 25 octaves), so they have the logits' shape, arbitrary mantissas
  and an exactly computed row sum; the ``sparse`` profile keeps about 1/64 of the target's
  entries (a top-k teacher) and sets the rest to exactly 0.

Profiles: ``flat`` (spread 0: nearly uniform rows, every term of the same size — the
accumulation-heavy case), ``peaked`` (spread 4: language-model-like rows), ``sparse``
(peaked, with most target entries 0).
"""
from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import exactmath
from .case import REDUCTIONS, Case, CaseError
from .frozen import digests_digest
from .reference.dtypes import DTYPES, round_to
from .reference.family import PRED_KINDS, TARGET_KINDS

FORMAT = "klconform-large-corpus"
FORMAT_VERSION = 1
LARGE_PATH = Path(__file__).resolve().parent / "data" / "large-corpus.jsonl"
PROFILES = {"flat": 0, "peaked": 4, "sparse": 4}    # profile -> spread (log2 of the logit scale)
_INV_LN2 = float.fromhex("0x1.71547652b82fep+0")   # 1/ln 2 rounded to float64 (a literal: no libm)
MIN_CLASSES, MAX_CLASSES, MAX_BATCH = 1000, 200_000, 1000
#: elements per input above which a recipe is refused: 2**24 float64 values are 128 MiB
#: per array, and the reference holds a dozen extended-precision arrays of that shape
MAX_ELEMENTS = 2**24
#: reductions of the family: ``none`` returns every term (no accumulation to test)
LARGE_REDUCTIONS = tuple(r for r in REDUCTIONS if r != "none")
_SPARSE_KEEP = 1024      # of 65536: a target entry is kept with probability 1/64


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How to build one large case: ``batch`` rows of ``classes`` entries (class axis
    last, batch axis first), values from ``seed`` per ``profile``, value-only
    (``grad=False``: the gradient is elementwise, KL-GRAD-1, so size adds nothing to it
    that the small cases do not check, and 2·10⁸ gradient entries would be the bulk of
    a results file)."""

    seed: int
    batch: int
    classes: int
    dtype: str = "float32"
    target_kind: str = "prob"
    pred_kind: str = "logprob"
    reduction: str = "batchmean"
    profile: str = "peaked"

    def __post_init__(self):
        for name, value, allowed in (("dtype", self.dtype, DTYPES), ("target_kind", self.target_kind, TARGET_KINDS),
                                     ("pred_kind", self.pred_kind, PRED_KINDS),
                                     ("reduction", self.reduction, LARGE_REDUCTIONS),
                                     ("profile", self.profile, tuple(PROFILES))):
            if value not in allowed:
                raise CaseError(f"recipe {name}: {value!r} is not one of {', '.join(allowed)}")
        for name, value, lo, hi in (("seed", self.seed, 0, 2**63 - 1), ("batch", self.batch, 1, MAX_BATCH),
                                    ("classes", self.classes, MIN_CLASSES, MAX_CLASSES)):
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise CaseError(f"recipe {name}: {value!r} is not an integer in {lo}..{hi}")
        if self.elements > MAX_ELEMENTS:
            raise CaseError(f"recipe: {self.batch}x{self.classes} = {self.elements} elements per input; "
                            f"at most {MAX_ELEMENTS}")

    @property
    def elements(self) -> int:
        return self.batch * self.classes

    @property
    def label(self) -> str:
        return (f"large/{self.profile}/{self.batch}x{self.classes}/{self.dtype}/"
                f"{self.target_kind}-{self.pred_kind}/{self.reduction}/s{self.seed}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: Any) -> "Recipe":
        if not isinstance(d, dict):
            raise CaseError("recipe: not an object")
        fields = {f.name for f in dataclasses.fields(cls)}
        if set(d) - fields or not {"seed", "batch", "classes"} <= set(d):
            raise CaseError(f"recipe: expected the fields {', '.join(sorted(fields))}")
        return cls(**d)


# ----------------------------------------------------------------------------- values
def _logits(bits: np.random.PCG64, n: int, spread: int) -> np.ndarray:
    """``n`` dyadic, roughly normal logits: four 16-bit lanes of one raw draw each."""
    raw = bits.random_raw(n)
    s = np.zeros(n, dtype=np.int64)
    for lane in range(4):
        s += ((raw >> np.uint64(16 * lane)) & np.uint64(0xFFFF)).astype(np.int64)
    return np.ldexp((s - 2 * 0xFFFF).astype(np.float64), spread - 17)


def _log_probs(z: np.ndarray, spread: int) -> np.ndarray:
    """``z - c`` per row, ``c`` the row's exact log-sum-exp rounded to the logits' grid."""
    return z - exactmath.logsumexp_on_grid(z, _step(spread))


def _probs(z: np.ndarray, lanes: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """Probabilities shaped like softmax(z): integer weights ``(2**16 + r)·2**e``, ``e`` =
    the logit in octaves above the row's floor (25 octaves), divided by their exact sum."""
    octaves = np.floor(z * _INV_LN2)
    e = np.clip(octaves - octaves.max(axis=-1, keepdims=True) + 24, 0, 24).astype(np.int64)
    w = (np.int64(65536) + lanes) << e                    # < 2**41: exact in float64
    if keep is not None:
        w = np.where(keep, w, 0)
    total = w.sum(axis=-1, keepdims=True)                 # exact: < 2**59
    return w.astype(np.float64) / total.astype(np.float64)


def _side(bits: np.random.PCG64, shape: tuple[int, int], kind: str, spread: int, sparse: bool) -> np.ndarray:
    n = shape[0] * shape[1]
    z = _logits(bits, n, spread).reshape(shape)
    extra = bits.random_raw(n).reshape(shape)
    lanes = (extra & np.uint64(0xFFFF)).astype(np.int64)
    keep = None
    if sparse:
        keep = ((extra >> np.uint64(16)) & np.uint64(0xFFFF)) < _SPARSE_KEEP
        keep[np.arange(shape[0]), z.argmax(axis=-1)] = True        # never an all-zero row
    if kind == "logits":
        return z
    if kind == "prob":
        return _probs(z, lanes, keep)
    lp = _log_probs(z, spread)                                      # "logprob"
    if keep is not None:
        p = _probs(z, lanes, keep)
        lp = np.full(p.shape, -np.inf)                              # exact zeros: log 0 = -inf
        lp[keep] = exactmath.log_on_grid(p[keep], _step(spread))
    return lp


def _step(spread: int) -> float:
    """The logits' grid: steps of 2**(spread - 17)."""
    return 2.0 ** (spread - 17)


@functools.lru_cache(maxsize=2)      # a report looks a case up several times in a row
def generate(recipe: Recipe) -> Case:
    """The case ``recipe`` describes (the same bytes on every machine; see the module doc).
    The returned case remembers its recipe: its JSON form (results files, blobs) is the
    recipe plus the digest, not 2·10⁷ numbers."""
    bits = np.random.PCG64(recipe.seed)
    shape = (recipe.batch, recipe.classes)
    spread = PROFILES[recipe.profile]
    target = _side(bits, shape, recipe.target_kind, spread, recipe.profile == "sparse")
    pred = _side(bits, shape, recipe.pred_kind, spread, False)
    case = Case(target=round_to(target, recipe.dtype), pred=round_to(pred, recipe.dtype), dtype=recipe.dtype,
                target_kind=recipe.target_kind, pred_kind=recipe.pred_kind, reduction=recipe.reduction,
                class_axis=-1, batch_axis=0, grad=False, label=recipe.label)
    object.__setattr__(case, "recipe", recipe)
    return case


def expressible(recipe: Recipe, caps) -> bool:
    """Whether an adapter with capabilities ``caps`` takes ``recipe``'s case as it is (no
    conversion of encoding or layout): decided before generating 10⁷ values for nothing."""
    return (recipe.dtype in caps.dtypes and recipe.reduction in caps.reductions
            and recipe.pred_kind in caps.pred_kinds and recipe.target_kind in caps.target_kinds
            and caps.min_ndim <= 2 <= caps.max_ndim)


# ----------------------------------------------------------------------------- the catalogue
_SIZES = ((64, 131072), (1, 200_000), (256, 32000), (128, 50257), (1000, 8192), (8, 131072), (1000, 1000))
_KIND_PAIRS = (("prob", "logprob"), ("prob", "prob"), ("prob", "logits"), ("logprob", "logprob"))


def catalogue() -> list[Recipe]:
    """The recipes of the committed large corpus: every dtype × encoding pair × reduction
    of the family, sizes and profiles cycling through realistic shapes (a recipe per
    combination, so each adapter gets every combination it can express).  float16 and
    bfloat16 probabilities of a peaked row underflow to 0 (a realistic, separate question:
    the small cases ask it), so those dtypes use the flat profile where Q is a
    probability."""
    out, i = [], 0
    for dtype in DTYPES:
        for target_kind, pred_kind in _KIND_PAIRS:
            for reduction in LARGE_REDUCTIONS:
                batch, classes = _SIZES[i % len(_SIZES)]
                profile = ("flat", "peaked", "sparse")[i % 3]
                if dtype in ("float16", "bfloat16") and "prob" in (pred_kind,) and profile != "flat":
                    profile = "flat"
                out.append(Recipe(seed=1000 + i, batch=batch, classes=classes, dtype=dtype, target_kind=target_kind,
                                  pred_kind=pred_kind, reduction=reduction, profile=profile))
                i += 1
    return out


#: what ``klconform run`` and the default test command run of the family (``--large quick``),
#: with their frozen digests: float32 cases of 6·10⁴–2.6·10⁵ elements, one per encoding pair
#: and reduction some adapter takes as it is (every adapter that reduces gets at least one:
#: torch and Paddle 0, 4, 6; the Keras classes and metrics 1; scipy.entropy, the Keras
#: functions, torch.distributions and tfp 2; optax 3 and 6; MXNet 5), about a second each;
#: then six float16 and bfloat16 cases of 10⁵–1.3·10⁵ elements (3.2·10⁴–5·10⁴ classes: low-precision
#: accumulation, KL-BOUND-7; peaked or sparse rows, whose KL is large beside the rounding of
#: each term's logarithms, except float16 probabilities of Q, flat lest they underflow), so every adapter that reduces in those dtypes gets one or two:
#: torch 7 and 8 (KLDivLoss_legacy 8); the Keras classes 9 and 10, their metrics 9;
#: scipy.entropy and the Keras functions 10; torch.distributions and tfp 10 and 12; optax 8
#: (the log-target one 12); MXNet 11 (Paddle takes neither dtype)
QUICK = (
    (Recipe(seed=7, batch=16, classes=32000),
     'ed2fe9f8a447fab6'),
    (Recipe(seed=8, batch=4, classes=50257, pred_kind='prob', reduction='distribution_mean', profile='flat'),
     'ec103cf4663569ca'),
    (Recipe(seed=9, batch=8, classes=32000, pred_kind='prob', reduction='distribution', profile='sparse'),
     '5ba42246ca2ccab0'),
    (Recipe(seed=10, batch=4, classes=50257, reduction='distribution', profile='flat'),
     '74896ae3004ce817'),
    (Recipe(seed=11, batch=2, classes=131072, reduction='mean'),
     '4d3025655079a86e'),
    (Recipe(seed=12, batch=8, classes=32000, reduction='sample_sum', profile='sparse'),
     '62ff00b05f3283bf'),
    (Recipe(seed=13, batch=4, classes=32000, target_kind='logprob', reduction='sum'),
     'd08c747dea426462'),
    (Recipe(seed=14, batch=4, classes=32000, dtype='float16'),
     '15922a78d1c62bf7'),
    (Recipe(seed=15, batch=2, classes=50257, dtype='bfloat16', reduction='sum'),
     '8c138589e09c8b8f'),
    (Recipe(seed=16, batch=2, classes=50257, dtype='bfloat16', pred_kind='prob', reduction='distribution_mean'),
     'bd975f13e1ebbe53'),
    (Recipe(seed=17, batch=4, classes=32000, dtype='float16', pred_kind='prob', reduction='distribution', profile='flat'),
     '627fbd7544117bfd'),
    (Recipe(seed=18, batch=4, classes=32000, dtype='float16', reduction='sample_sum', profile='sparse'),
     'bcc467639396c769'),
    (Recipe(seed=19, batch=4, classes=32000, dtype='bfloat16', target_kind='logprob', reduction='distribution'),
     'd1d55000ffd21f3a'),
)


# ----------------------------------------------------------------------------- corpus file
class LargeCorpusError(ValueError):
    """A large-corpus file that cannot be used: the message starts with ``file:line``."""


def dumps(entries: Sequence[tuple[Recipe, str]], made_by: str) -> str:
    head = {"format": FORMAT, "version": FORMAT_VERSION, "made_by": made_by, "cases": len(entries),
            "digest": digests_digest(d for _, d in entries)}
    lines = [json.dumps(head, separators=(",", ":"))]
    lines += [json.dumps({"digest": d, "recipe": r.to_json()}, separators=(",", ":")) for r, d in entries]
    return "\n".join(lines) + "\n"


def read(path: str | Path | None = None) -> list[tuple[Recipe, str]]:
    """The (recipe, digest) entries of a large-corpus file, validated but not generated."""
    from .resultsio import read_input
    path = Path(path) if path is not None else LARGE_PATH
    try:
        lines = read_input(path).decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LargeCorpusError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        head = json.loads(lines[0]) if lines else None
    except (ValueError, RecursionError):
        head = None
    if not isinstance(head, dict) or head.get("format") != FORMAT or head.get("version") != FORMAT_VERSION:
        raise LargeCorpusError(f"{path}:1: not a {FORMAT} version {FORMAT_VERSION} file")
    entries = []
    for no, line in enumerate(lines[1:], 2):
        try:
            d = json.loads(line)
            if not isinstance(d, dict) or set(d) != {"digest", "recipe"} or not isinstance(d["digest"], str):
                raise CaseError("expected {\"digest\": ..., \"recipe\": {...}}")
            entries.append((Recipe.from_json(d["recipe"]), d["digest"]))
        except (ValueError, TypeError, RecursionError) as exc:
            raise LargeCorpusError(f"{path}:{no}: {exc}") from None
    if len(entries) != head.get("cases") or digests_digest(d for _, d in entries) != head.get("digest"):
        raise LargeCorpusError(f"{path}:1: header count/digest do not match the entries")
    return entries


def check(entry: tuple[Recipe, str], where: str = "") -> Case:
    """Generate one entry and prove it is the frozen case (digest)."""
    recipe, digest = entry
    case = generate(recipe)
    if case.digest != digest:
        raise LargeCorpusError(f"{where}recipe {recipe.label} generated case {case.digest}, the corpus froze "
                               f"{digest} (numpy {np.__version__}: generation is not reproducible here)")
    return case


def select(which: str, resolve=Path) -> list[tuple[Recipe, str]]:
    """The entries ``which`` names: ``quick`` (:data:`QUICK`), ``all`` (the committed large
    corpus), ``none``, or a file in the large-corpus format (``resolve`` turns the text
    into its path).  :class:`LargeCorpusError` for a bad file."""
    if which == "none":
        return []
    if which == "quick":
        return list(QUICK)
    return read(None if which == "all" else resolve(which))


def freeze(path: str | Path | None = None, recipes: Sequence[Recipe] | None = None) -> Path:
    """Write the large corpus: every recipe of ``recipes`` (default :func:`catalogue`) with
    the digest of the case it generates here."""
    path = Path(path) if path is not None else LARGE_PATH
    entries = [(r, generate(r).digest) for r in (catalogue() if recipes is None else recipes)]
    from .resultsio import atomic_write_text      # the one rule of every writer (resultsio.output_target)
    atomic_write_text(path, dumps(entries, "klconform corpus freeze-large (klconform.large.catalogue)"))
    return path


"""`restarts.search`: members' numeric hyperparameters sampled from ranges, as a value.

Written like a sweep, one range per field (`optimizer.learning_rate=loguniform(1e-3, 0.3);
model.dropout=uniform(0, 0.5)`), or as a mapping field -> 'loguniform(1e-3, 0.3)' or
('loguniform', 1e-3, 0.3). `restarts.num` points in [0, 1) are drawn by `METHODS` seeded from the
config's `seed` and mapped onto the ranges; member i trains point i from random start i. Every
value is then checked by its field's own rule, as its flag would be.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from jaxnn.config.fields import NumericField, is_number
from jaxnn.config.sweep import NESTING_ERRORS, PARSE_ERRORS, clauses, too_nested
from jaxnn.errors import ConfigError

SearchSpec = str | Mapping[str, Any]
# Mixed into the seed of the search's generator, so its draws are not those of another
# numpy generator seeded with the config's seed alone.
SEARCH_TAG = 0x5EA2C4
_FORM = "field=DISTRIBUTION(low, high), e.g. optimizer.learning_rate=loguniform(1e-3, 0.3)"


@dataclasses.dataclass(frozen=True)
class Distribution:
    """How a point u float64 [N] in [0, 1) becomes values of [low, high) (`from_unit`), and
    what is wrong with a range it refuses (`problem`, None when it takes it)."""

    from_unit: Callable[[np.ndarray, float, float], np.ndarray]
    problem: Callable[[float, float], str | None]


def _ordered(low: float, high: float) -> str | None:
    return None if low <= high else "has low > high; write it as (low, high) with low <= high"


def _positive_ordered(low: float, high: float) -> str | None:
    if low <= 0:
        return "includes 0 or a negative number; a log-uniform range needs 0 < low <= high"
    return _ordered(low, high)


def _log_uniform(u: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.exp(math.log(low) + u * (math.log(high) - math.log(low)))


DISTRIBUTIONS: dict[str, Distribution] = {
    "uniform": Distribution(lambda u, low, high: low + u * (high - low), _ordered),
    "loguniform": Distribution(_log_uniform, _positive_ordered),
}


def primes(count: int) -> list[int]:
    """The first `count` prime numbers."""
    found: list[int] = []
    candidate = 2
    while len(found) < count:
        if all(candidate % p for p in found if p * p <= candidate):
            found.append(candidate)
        candidate += 1
    return found


def halton(num: int, dims: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Halton points float64 [num, dims] in [0, 1): dimension j in base primes(dims)[j].

    Without `rng` the plain sequence of indices 1..num (index i in base b is i's base-b digits
    mirrored behind the point: 1 -> 1/2, 2 -> 1/4, 3 -> 3/4 in base 2; the seed does not change
    it). With `rng`, indices 0..num-1 and every digit position of every dimension through its
    own random permutation of the digits 0..b-1 (Braaten and Weller's scrambling, which breaks
    the correlation between high prime bases; all float64 digits, so the points fill [0, 1)).
    """
    points = np.zeros((num, dims), np.float64)
    indices = np.arange(num, dtype=np.int64) + (0 if rng is not None else 1)
    for j, base in enumerate(primes(dims)):
        # Enough digits that base ** -digits is below float64's resolution.
        digits = math.ceil(53 / math.log2(base))
        remaining = indices.copy()
        scale = 1.0 / base
        for _ in range(digits):
            digit = remaining % base
            if rng is not None:
                digit = rng.permutation(base)[digit]
            points[:, j] += digit * scale
            remaining //= base
            scale /= base
    # A scrambled point of all top digits rounds to 1.0 in float64; keep [0, 1).
    return np.minimum(points, np.nextafter(1.0, 0.0))


# name -> f(num, dims, rng) -> points float64 [num, dims] in [0, 1).
METHODS: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = {
    "random": lambda num, dims, rng: rng.random((num, dims)),
    "halton": lambda num, dims, rng: halton(num, dims, rng=rng),
    "halton_unscrambled": lambda num, dims, rng: halton(num, dims),
}


def unit_points(method: str, num: int, dims: int, seed: int) -> np.ndarray:
    """`num` points float64 [num, dims] in [0, 1) by `method`, reproducible from `seed`."""
    check_method(method)
    words = [SEARCH_TAG, seed % 2**32, (seed // 2**32) % 2**32]
    return METHODS[method](num, dims, np.random.default_rng(words))


def check_method(method: Any) -> None:
    """Raises ConfigError unless `method` names an entry of METHODS."""
    if method not in METHODS:
        raise ConfigError(
            f"restarts.search_method: unknown {method!r}; choose one of {', '.join(METHODS)}"
        )


@dataclasses.dataclass(frozen=True)
class Range:
    """One field's range: a distribution over [low, high]."""

    distribution: str
    low: float
    high: float

    def to_spec(self) -> str:
        return f"{self.distribution}({self.low!r}, {self.high!r})"


@dataclasses.dataclass(frozen=True)
class Search:
    """A resolved search: dotted field -> Range in the order written, the key of METHODS that
    drew the points, and per member a point (dotted field -> its checked value)."""

    ranges: dict[str, Range]
    method: str
    points: tuple[dict[str, float], ...]

    def to_spec(self) -> str:
        """The `restarts.search` string of this search (what config.json records)."""
        return "; ".join(f"{field}={r.to_spec()}" for field, r in self.ranges.items())

    def describe(self) -> dict[str, Any]:
        """The search as summary.json records it (method and each field's range)."""
        return {
            "method": self.method,
            "ranges": {field: dataclasses.asdict(r) for field, r in self.ranges.items()},
        }


def _range(field: str, value: Any) -> Range:
    """One field's Range from 'loguniform(1e-3, 0.3)' or ('loguniform', 1e-3, 0.3)."""
    written = value if isinstance(value, str) else repr(value)
    written = written if len(written) <= 80 else f"{written[:60]}... ({len(written)} characters)"
    where = f"restarts.search: {field}={written}"
    if isinstance(value, str):
        try:
            call = ast.parse(value.strip(), mode="eval").body
        except NESTING_ERRORS:
            raise too_nested(f"restarts.search: {field}", value) from None
        except PARSE_ERRORS:
            call = None
        if (
            not isinstance(call, ast.Call)
            or not isinstance(call.func, ast.Name)
            or call.keywords
            or len(call.args) != 2
        ):
            raise ConfigError(f"{where} is not of the form {_FORM}")
        name = call.func.id
        try:
            bounds = [ast.literal_eval(arg) for arg in call.args]
        except NESTING_ERRORS:
            raise too_nested(f"restarts.search: {field}", value) from None
        except PARSE_ERRORS:
            bounds = [ast.unparse(arg) for arg in call.args]
    elif isinstance(value, Sequence) and len(value) == 3:
        name, *bounds = value
    else:
        raise ConfigError(f"{where} is not of the form {_FORM}")
    if name not in DISTRIBUTIONS:
        raise ConfigError(
            f"restarts.search: {field}: unknown distribution {name!r}; choose one of "
            f"{', '.join(DISTRIBUTIONS)}"
        )
    if not all(is_number(b) for b in bounds):
        raise ConfigError(f"{where}: the bounds must be finite numbers")
    low, high = (float(b) for b in bounds)
    problem = DISTRIBUTIONS[name].problem(low, high)
    if problem:
        raise ConfigError(f"{where} {problem}")
    return Range(name, low, high)


def split_search(spec: SearchSpec) -> dict[str, Range]:
    """The fields and ranges of a search string or mapping (syntax and ranges checked)."""
    if isinstance(spec, str):
        raw: Mapping[str, Any] = clauses(spec, flag="restarts.search", form=_FORM)
    elif isinstance(spec, Mapping):
        raw = spec
    else:
        raise ConfigError(
            f"a search is a string '{_FORM}; ...' or a mapping field -> range, got {spec!r}"
        )
    return {str(field): _range(str(field), value) for field, value in raw.items()}


def _values(field: NumericField, spec: Range, u: np.ndarray) -> np.ndarray:
    distribution = DISTRIBUTIONS[spec.distribution]
    if not field.integer:
        return distribution.from_unit(u, spec.low, spec.high)
    if spec.low != int(spec.low) or spec.high != int(spec.high):
        raise ConfigError(
            f"restarts.search: {field.field} takes integers; give its range integer bounds, "
            f"got {spec.to_spec()}"
        )
    drawn = np.floor(distribution.from_unit(u, spec.low, spec.high + 1.0))
    return np.minimum(drawn, spec.high)


# Host bytes per drawn point while drawing and holding it: the point's dict and its floats,
# and the float64 / int64 working arrays of the draw (the peak tracemalloc measures).
POINT_BYTES = 216
FIELD_BYTES = 32
# The share of the machine's memory the points may take (the run's members need the rest).
POINTS_SHARE = 0.5


def machine_bytes() -> int | None:
    """The machine's physical memory (os.sysconf), or None where it is not known."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_size(num: int, dims: int) -> None:
    """Refuses, before anything is drawn, a search whose points alone would not fit in half of
    the machine's memory (the run's full estimate, `jaxnn.core.memory`, comes later)."""
    have = machine_bytes()
    need = num * (POINT_BYTES + FIELD_BYTES * dims)
    if have is not None and need > POINTS_SHARE * have:
        raise ConfigError(
            f"restarts.num={num} points of restarts.search ({dims} field(s)) need about "
            f"{need / 2**30:.1f} GiB of host memory to draw, more than half of this machine's "
            f"{have / 2**30:.1f} GiB; ask for fewer restarts.num"
        )


def resolve(
    spec: SearchSpec,
    *,
    method: str,
    num: int,
    seed: int,
    numeric_fields: Mapping[str, NumericField],
) -> Search | None:
    """Parses a search, draws its `num` points and checks every value by its field's rule.

    `spec` is the `restarts.search` string or a mapping field -> range; None when it names no
    field. `numeric_fields`: dotted field -> NumericField, every field a member may vary.

    Raises:
      ConfigError: bad syntax, an unknown distribution or method, a range it refuses, a field
        that is not numeric, or a drawn value that its field's rule refuses.
    """
    check_method(method)
    ranges = split_search(spec)
    if not ranges:
        return None
    for field in ranges:
        if field not in numeric_fields:
            raise ConfigError(
                f"restarts.search draws only numeric fields that this run's members carry, not "
                f"{field!r}; those here: {', '.join(sorted(numeric_fields))} (vary other fields "
                "with restarts.sweep)"
            )
    check_size(num, len(ranges))
    units = unit_points(method, num, len(ranges), seed)
    columns = {
        field: _values(numeric_fields[field], r, units[:, j])
        for j, (field, r) in enumerate(ranges.items())
    }
    points = tuple(
        {field: float(values[i]) for field, values in columns.items()} for i in range(num)
    )
    for i, point in enumerate(points):
        for field, value in point.items():
            problem = numeric_fields[field].problem(value, where=f"restarts.search: {field}")
            if problem:
                raise ConfigError(
                    f"{problem} (member {i}'s draw from {ranges[field].to_spec()}); narrow the range"
                )
    return Search(ranges=ranges, method=method, points=points)

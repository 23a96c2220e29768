"""The machinery behind :func:`maskvid_edu.exercises.check`.

An :class:`Exercise` is a list of *properties*, checked in order. Each property is a small
function that calls the learner's code on inputs it chooses, compares the answer with the
library's and, when they disagree, raises :class:`Hint` with a sentence that says what to
change — the specific slip it recognised (a per-frame mask where a tube was asked for, a biased
standard deviation, ...) rather than "wrong answer". Checking stops at the first failed property:
later properties usually assume the earlier ones (a count is meaningless on a wrongly shaped
mask), and one precise hint is more useful than five vague ones.

A learner's function that *raises* is reported, never re-raised: the report shows the last line
of the traceback (``TypeError: ...``) and the line of the learner's own code where it happened.
Properties may turn known error messages into hints (``crash_hints``).

Everything runs inside ``torch.random.fork_rng`` with a fixed seed, so a check gives the same
verdict every time and leaves the notebook's random state exactly as it was.
"""

from __future__ import annotations

import math
import numbers
import textwrap
import traceback
from dataclasses import dataclass, field
from typing import Callable

import torch

PASS, FAIL, SKIP = "✓", "✗", "·"
WIDTH = 92


class Hint(Exception):
    """A property does not hold; the message tells the learner what to change."""


class LearnerError(Exception):
    """The learner's function raised ``error`` (wrapped so it is not mistaken for a checker bug)."""

    def __init__(self, error: BaseException, function: Callable):
        super().__init__(str(error))
        self.error = error
        self.function = function

    def last_line(self) -> str:
        """The traceback's last line, ``ExcType: message`` (first line of a long message)."""
        text = traceback.format_exception_only(type(self.error), self.error)[-1].strip()
        first = text.splitlines()[0] if text else type(self.error).__name__
        return first if len(first) <= 240 else first[:237] + "..."

    def location(self) -> str | None:
        """``in name, line n: source`` for the innermost frame of the learner's own file."""
        frames = traceback.extract_tb(self.error.__traceback__)
        code = getattr(self.function, "__code__", None)
        own = [f for f in frames if code is not None and f.filename == code.co_filename]
        frame = own[-1] if own else (frames[-1] if frames else None)
        if frame is None:
            return None
        where = f"in {frame.name}, line {frame.lineno}"
        return f"{where}: {frame.line.strip()}" if frame.line else where


def call(function: Callable, *args, **kwargs):
    """Call the learner's ``function``; any exception it raises becomes a :class:`LearnerError`."""
    try:
        return function(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 — whatever the learner's code raises is reported
        raise LearnerError(error, function) from error


@dataclass
class Property:
    """One checked statement about the learner's function.

    Attributes:
        title: what must hold, phrased as a fact (shown with ✓ or ✗).
        test: ``test(function)``; returns normally when the property holds, raises
            :class:`Hint` when it does not.
        crash_hints: ``(substring, hint)`` pairs: when the learner's code raises an error whose
            message contains ``substring``, ``hint`` is added to the report.
    """

    title: str
    test: Callable[[Callable], None]
    crash_hints: tuple[tuple[str, str], ...] = ()


@dataclass
class Exercise:
    """A task of the book with its checker.

    Attributes:
        name: registry key, e.g. ``"tube_mask"``.
        title: one line shown on top of the report.
        topic: the subject and the library file it exercises.
        signature: the function the learner writes.
        task: what the function must do (shown by :func:`maskvid_edu.exercises.describe`).
        properties: checked in order; filled by :meth:`property`.
    """

    name: str
    title: str
    topic: str
    signature: str
    task: str
    properties: list[Property] = field(default_factory=list)

    def property(self, title: str, crash_hints: tuple[tuple[str, str], ...] = ()):
        """Decorator: register ``test(function)`` as the next property of this exercise."""

        def register(test: Callable[[Callable], None]):
            self.properties.append(Property(title, test, tuple(crash_hints)))
            return test

        return register

    def describe(self) -> str:
        body = textwrap.fill(" ".join(self.task.split()), WIDTH)
        return f"{self.name} — {self.title} ({self.topic})\n\n    {self.signature}\n\n{body}"


@dataclass
class Report:
    """The outcome of checking one function against one exercise.

    Attributes:
        exercise: the exercise's name.
        passed: every property holds.
        results: ``(symbol, property title)`` for every property, in order (``·`` = not reached).
        failed: the title of the first failed property, or ``None``.
        hint: what to change (for a crash: the error, where it happened, and a hint if one is
            known), or ``None``.
        text: the printed report.
    """

    exercise: str
    passed: bool
    results: list[tuple[str, str]]
    failed: str | None
    hint: str | None
    text: str

    def __bool__(self) -> bool:
        return self.passed


REGISTRY: dict[str, Exercise] = {}


def exercise(name: str, *, title: str, topic: str, signature: str, task: str) -> Exercise:
    """Create and register an exercise (one call per exercise, at import time)."""
    if name in REGISTRY:
        raise ValueError(f"exercise {name!r} is registered twice")
    REGISTRY[name] = Exercise(name, title, topic, signature, task)
    return REGISTRY[name]


def _crash_hint(err: LearnerError, prop: Property) -> str:
    lines = [f"your function raised {err.last_line()}"]
    where = err.location()
    if where:
        lines.append(f"({where})")
    message = str(err.error)
    if isinstance(err.error, NotImplementedError):
        lines.append("— it is not written yet: replace `raise NotImplementedError` with your code.")
    for needle, hint in prop.crash_hints:
        if needle in message:
            lines.append(hint)
            break
    return "\n".join(lines)


def _indent(text: str, prefix: str) -> str:
    out = []
    for paragraph in text.split("\n"):
        out.extend(textwrap.wrap(paragraph, WIDTH - len(prefix), break_on_hyphens=False) or [""])
    return "\n".join(prefix + line for line in out)


def run(ex: Exercise, function) -> Report:
    """Check ``function`` against every property of ``ex``; stop at the first failure."""
    results: list[tuple[str, str]] = []
    failed = hint = None
    if not callable(function):
        failed, hint = "is a function", f"expected your function, got a {type(function).__name__}: pass the function itself (no parentheses)"
        results.append((FAIL, failed))
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the learner's own use of the global generator is reproducible
            for prop in ex.properties:
                if failed is not None:
                    results.append((SKIP, prop.title))
                    continue
                try:
                    prop.test(function)
                except Hint as h:
                    failed, hint = prop.title, str(h)
                except LearnerError as err:
                    failed, hint = prop.title, _crash_hint(err, prop)
                except Exception as err:  # noqa: BLE001 — a result the checker could not take apart
                    last = traceback.format_exception_only(type(err), err)[-1].strip()
                    failed = prop.title
                    hint = f"the checker could not read your function's result ({last}); check what it returns: {ex.signature}"
                results.append((PASS if failed is None else FAIL, prop.title))
    lines = [f"{ex.name} — {ex.title}"]
    for symbol, title in results:
        lines.append(f"  {symbol} {title}")
        if symbol == FAIL and hint:
            lines.append(_indent(hint, "      "))
    passed = failed is None
    done = sum(1 for s, _ in results if s == PASS)
    if passed:
        lines.append(f"All {done} checks passed — well done.")
    else:
        left = sum(1 for s, _ in results if s == SKIP)
        more = f"; {left} more check{'s' if left != 1 else ''} will run once it does" if left else ""
        lines.append(f"{done} of {len(results)} checks passed. Fix the one marked ✗{more}.")
    return Report(ex.name, passed, results, failed, hint, "\n".join(lines))


# --------------------------------------------------------------------------------------------
# helpers shared by the exercise modules
# --------------------------------------------------------------------------------------------


def expect_tensor(out, what: str) -> torch.Tensor:
    """``out`` must be a tensor; otherwise say what came back."""
    if out is None:
        raise Hint(f"{what} returned None: did you forget the `return` statement?")
    if not isinstance(out, torch.Tensor):
        raise Hint(f"{what} returned a {type(out).__name__}; return a torch.Tensor")
    return out


def expect_shape(out: torch.Tensor, shape: tuple[int, ...], what: str, explain: str = "") -> None:
    if tuple(out.shape) != tuple(shape):
        raise Hint(f"{what} has shape {tuple(out.shape)}, expected {tuple(shape)}{explain}")


def expect_real(out, what: str) -> float:
    """``out`` must be a real number (Python or NumPy scalar)."""
    if out is None:
        raise Hint(f"{what} returned None: did you forget the `return` statement?")
    if isinstance(out, torch.Tensor):
        raise Hint(f"{what} returned a tensor; return a plain Python number (float(...) or .item())")
    if isinstance(out, bool) or not isinstance(out, numbers.Real):
        raise Hint(f"{what} returned a {type(out).__name__}; return a Python number")
    value = float(out)
    if not math.isfinite(value):
        raise Hint(f"{what} returned {value}; expected a finite number")
    return value


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    """Same shape and allclose, compared in float64; NaN never matches."""
    if not isinstance(a, torch.Tensor) or tuple(a.shape) != tuple(b.shape):
        return False
    a64, b64 = a.detach().to(torch.float64).cpu(), b.detach().to(torch.float64).cpu()
    return bool(torch.allclose(a64, b64, rtol=rtol, atol=atol))


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)

"""CEL expressions (cel-python): checked when the YAML loads, evaluated in a worker process.

Workflows validate answers and choose branches with CEL, and qualifications grade with it.
cel-python has no cost limit, no timeout and no depth limit (a few nested ``map`` macros run
for seconds; ~60 nested parentheses overflow Python's stack), so an expression is held to
static limits before it is parsed, and is evaluated in a pool of worker processes, each with
a memory cap and a deadline: an expression that overruns it kills that worker, not us, and
fails with ``CelFailed`` (a new worker takes its place). The event loop never evaluates.

A problem in an expression names where it is: ``line 1, column 14: ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import celpy
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

log = logging.getLogger(__name__)

MAX_LENGTH = 1000
MAX_NESTING = 12  # brackets of any kind, one inside another
MAX_MACROS = 3
MACROS = ("map", "filter", "all", "exists", "exists_one")
DEADLINE_SECONDS = 1.0
STARTUP_SECONDS = 10.0  # for a new worker to load Python and cel-python
WORKER_MEMORY_BYTES = 512 * 1024 * 1024

_MACRO_CALL = re.compile(r"\.\s*(?:" + "|".join(MACROS) + r")\s*\(")
_STRINGS = re.compile(r"'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"", re.S)


class CelProblem(ValueError):
    """An expression that cannot be used, and where (1-based line and column, if known)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        self.message, self.line, self.column = message, line, column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__(f"{where}{message}")


class CelFailed(RuntimeError):
    """Evaluating an expression failed: an error in it, or it overran its deadline."""


def _limits(expression: str) -> None:
    if len(expression) > MAX_LENGTH:
        raise CelProblem(f"longer than {MAX_LENGTH} characters")
    code = _STRINGS.sub('""', expression)  # brackets inside string literals do not nest
    depth = 0
    for index, char in enumerate(code):
        depth += 1 if char in "([{" else -1 if char in ")]}" else 0
        if depth > MAX_NESTING:
            line = code.count("\n", 0, index) + 1
            column = index - (code.rfind("\n", 0, index) + 1) + 1
            raise CelProblem(f"nested deeper than {MAX_NESTING} brackets", line, column)
    if len(_MACRO_CALL.findall(code)) > MAX_MACROS:
        raise CelProblem(f"more than {MAX_MACROS} of {', '.join(MACROS)}")


@lru_cache(maxsize=1)
def _environment() -> Any:
    """One Environment per process (creating it sets the recursion limit to 2500)."""
    return celpy.Environment()


@lru_cache(maxsize=512)
def parse(expression: str) -> Any:
    """The parse tree of ``expression``; ``CelProblem`` if it is not usable CEL."""
    _limits(expression)
    if not expression.strip():
        raise CelProblem("the expression is empty")
    try:
        return _environment().compile(expression)
    except CELParseError as exc:
        detail = str(exc.args[0]).strip().splitlines()[0] if exc.args else "syntax error"
        raise CelProblem(f"not valid CEL ({detail})", exc.line, exc.column) from None
    except RecursionError:
        raise CelProblem("too deeply nested") from None


def names(expression: str) -> set[str]:
    """The variables ``expression`` reads (its free identifiers, macro variables excluded)."""
    tree = parse(expression)
    found: set[str] = set()
    bound: set[str] = set()
    for node in tree.iter_subtrees():
        if node.data == "member_dot_arg" and str(node.children[1]) in MACROS:
            args = node.children[2]
            if args is not None and args.children:  # map(x, ...): x is the macro's own
                bound |= {str(s.children[0]) for s in args.children[0].iter_subtrees()
                          if s.data == "ident"}  # fmt: skip
        if node.data == "ident":
            found.add(str(node.children[0]))
    return found - bound


def fields_read(expression: str, root: str) -> set[str]:
    """The ``root.<name>`` fields ``expression`` reads (``fields.email`` -> ``email``)."""
    found = set()
    for node in parse(expression).iter_subtrees():
        if node.data != "member_dot":
            continue
        inner, name = node.children
        primary: Any = inner.children[0] if inner.children else None
        ident: Any = primary.children[0] if primary is not None and primary.children else None
        if getattr(ident, "data", None) == "ident" and str(ident.children[0]) == root:
            found.add(str(name))
    return found


def check(expression: str, allowed: set[str]) -> None:
    """Parse ``expression`` and insist it reads only the variables in ``allowed``."""
    unknown = names(expression) - allowed
    if unknown:
        raise CelProblem(
            f"unknown name {', '.join(sorted(unknown))} (available: {', '.join(sorted(allowed))})"
        )


_RULE = re.compile(r"Token\('RULE', '(\w+?)_(\w+)'\)")
_TYPE = re.compile(r"<class 'celpy\.celtypes\.(\w+?)Type'>")


def readable(message: str) -> str:
    """cel-python's message in CEL's words: ``Token('RULE', 'addition_add')`` becomes
    ``add``, ``<class 'celpy.celtypes.StringType'>`` becomes ``string``."""
    message = _RULE.sub(lambda m: m.group(2), message)
    return _TYPE.sub(lambda m: m.group(1).lower(), message)


def _plain(value: Any) -> Any:
    """A CEL value as plain JSON-like Python (bool before int: CEL's bool is an int)."""
    if isinstance(value, celpy.celtypes.BoolType):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None:
        return None
    return str(value)


def _serve(connection: Connection) -> None:  # pragma: no cover - runs in the worker process
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    env = _environment()
    programs: dict[str, Any] = {}
    connection.send(("ready", None))
    while True:
        try:
            expression, activation = connection.recv()
        except EOFError:
            return
        try:
            program = programs.get(expression)
            if program is None:
                program = programs[expression] = env.program(parse(expression))
            result = program.evaluate({k: json_to_cel(v) for k, v in activation.items()})
            if isinstance(result, CELEvalError):
                raise result
            connection.send(("ok", _plain(result)))
        except CELEvalError as exc:
            connection.send(("error", str(exc.args[0]) if exc.args else "evaluation failed"))
        except (CelProblem, MemoryError, RecursionError, TypeError, ValueError) as exc:
            connection.send(("error", str(exc) or type(exc).__name__))


@dataclass
class _Worker:
    process: BaseProcess
    connection: Connection


class CelRunner:
    """A pool of worker processes evaluating expressions, each within a deadline.

    ``workers`` evaluations run at once (one per process); more wait for a free worker.
    Each worker compiles an expression once and keeps the program. A worker that overruns
    its deadline or its memory is killed and replaced; the others go on.
    """

    def __init__(self, deadline: float = DEADLINE_SECONDS, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError("a pool needs at least one worker")
        self._deadline = deadline
        self._closed = False
        self._slots: list[_Worker | None] = [None] * workers
        self._free: asyncio.Queue[int] = asyncio.Queue()
        for slot in range(workers):
            self._free.put_nowait(slot)

    @property
    def size(self) -> int:
        return len(self._slots)

    def _start(self) -> _Worker:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=_serve, args=(theirs,), daemon=True, name="cel")
        process.start()
        theirs.close()
        return _Worker(process, ours)

    def _call(self, slot: int, expression: str, activation: Mapping[str, Any]) -> tuple[str, Any]:
        worker = self._slots[slot]
        if worker is None or not worker.process.is_alive():
            worker = self._slots[slot] = self._start()
            # Python and cel-python load first; the deadline is the expression's alone.
            ready = False
            if worker.connection.poll(STARTUP_SECONDS):
                with contextlib.suppress(EOFError, OSError):  # EOF: it died starting
                    ready = worker.connection.recv()[0] == "ready"
            if not ready:
                self._stop(slot)
                return ("error", "the CEL worker did not start")
        try:
            worker.connection.send((expression, dict(activation)))
        except OSError:  # it died since (killed from outside): the next call starts another
            self._stop(slot)
            return ("error", "the CEL worker stopped")
        if worker.connection.poll(self._deadline):
            with contextlib.suppress(EOFError, OSError):  # the worker died: out of memory
                answer: tuple[str, Any] = worker.connection.recv()
                return answer
            self._stop(slot)
            return ("error", "the expression used too much memory")
        self._stop(slot)
        return ("error", f"took longer than {self._deadline:g}s")

    async def evaluate(self, expression: str, activation: Mapping[str, Any]) -> Any:
        """``expression``'s value over ``activation`` (JSON-like values); ``CelFailed`` if not."""
        parse(expression)
        if self._closed:
            raise CelFailed("the CEL workers have stopped")
        slot = await self._free.get()
        work = asyncio.ensure_future(asyncio.to_thread(self._call, slot, expression, activation))
        # The slot is free again when the thread is done with the worker's pipe -- not when
        # a caller who gave up (a turn's deadline) stops waiting.
        work.add_done_callback(lambda _: self._free.put_nowait(slot))
        status, value = await asyncio.shield(work)
        if status != "ok":
            raise CelFailed(readable(str(value)))
        return value

    async def warm_up(self) -> None:
        """Start every worker now, not in the first evaluation that needs one."""
        await asyncio.gather(*(self.evaluate("true", {}) for _ in self._slots))

    def _stop(self, slot: int) -> None:
        worker, self._slots[slot] = self._slots[slot], None
        if worker is not None:
            worker.connection.close()
            worker.process.kill()
            worker.process.join(timeout=5)

    async def close(self) -> None:
        """Stop every worker once its evaluation (if any) is done; later ones fail."""
        self._closed = True
        taken = [await self._free.get() for _ in self._slots]
        for slot in taken:
            await asyncio.to_thread(self._stop, slot)
            self._free.put_nowait(slot)

"""Grading a qualification attempt: what each criterion sees, and how it is judged.

A formula criterion is CEL evaluated in the worker pool (``people.cel``) over the
attempt's *activation* -- and nothing else:

- ``answer``: the text of a knowledge question's answer; for a simulated chat, the
  member's turns joined by newlines;
- ``choices``: the question's choices (empty for a chat);
- ``transcript``: a chat's turns, each ``{author, text, at}`` (``author`` is ``customer``
  or ``member``, ``at`` an ISO 8601 time); empty for a question;
- ``metrics``: ``turns`` (the member's turns), ``words`` (the member's words),
  ``duration_seconds`` (first turn to last) and ``first_reply_seconds`` (the customer's
  opening to the member's first reply); a question counts one turn, zero seconds;
- ``member``: the candidate's ``name``, ``role`` and ``labels`` (no contact details, no
  data fields, no one else's anything).

A rubric criterion goes to a ``Grader``: a LangChain model with structured output
(``agents.examiner`` implements this Protocol; the app wires it), or, without a grading
model, the deterministic ``FallbackGrader`` here. A runaway, failing or non-boolean
formula, or a grader that fails, is an *error* on that criterion -- it does not pass --
and never a crash. A requirement passes when all its criteria pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from people import cel
from people.qualifications.definitions import Criterion, QualificationSettings, Requirement
from people.similarity import SimilarityIndex

MAX_ERROR = 300


@dataclass(frozen=True)
class CriterionResult:
    kind: Literal["formula", "ai", "ai-fallback"]
    passed: bool
    score: float | None = None
    rationale: str = ""
    error: str | None = None


@dataclass(frozen=True)
class RequirementResult:
    requirement: str
    passed: bool
    criteria: tuple[CriterionResult, ...]


class Evaluator(Protocol):
    async def evaluate(self, expression: str, activation: Mapping[str, Any]) -> Any: ...


class Grader(Protocol):
    """Grades one rubric criterion of a requirement over its activation (``facts``)."""

    async def grade(
        self, criterion: Criterion, requirement: Requirement, facts: Mapping[str, Any]
    ) -> CriterionResult:
        """The verdict; raising is the criterion's error (it does not pass)."""
        ...


class FallbackGrader:
    """The deterministic grader used when no grading model is configured: similarity of
    the answer to the reference answer, against the criterion's ``pass_score``."""

    async def grade(
        self, criterion: Criterion, requirement: Requirement, facts: Mapping[str, Any]
    ) -> CriterionResult:
        best = SimilarityIndex([criterion.reference or ""]).best(str(facts["answer"]))
        score = round(best[1], 3) if best else 0.0
        passed = score >= criterion.pass_score
        why = (
            f"fallback grader (no grading model): similarity {score:.2f} to the reference "
            f"answer, {'at or above' if passed else 'below'} the bar of {criterion.pass_score}"
        )
        return CriterionResult("ai-fallback", passed, score, why)


@dataclass(frozen=True)
class Candidate:
    """The member's fields a formula may read."""

    name: str
    role: str
    labels: tuple[str, ...]

    def facts(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "labels": list(self.labels)}


def _seconds(later: str, earlier: str) -> float:
    return round(
        (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds(), 3
    )


def metrics(transcript: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Turns, words and timings of a simulated chat (see the module's docstring)."""
    mine = [t for t in transcript if t["author"] == "member"]
    first_reply = _seconds(mine[0]["at"], transcript[0]["at"]) if mine else 0
    return {
        "turns": len(mine),
        "words": sum(len(str(t["text"]).split()) for t in mine),
        "duration_seconds": _seconds(transcript[-1]["at"], transcript[0]["at"])
        if transcript
        else 0,
        "first_reply_seconds": first_reply,
    }


def activation(requirement: Requirement, answer: Any, candidate: Candidate) -> dict[str, Any]:
    """What a formula sees for this requirement's ``answer`` (text, or a chat transcript)."""
    if requirement.kind == "scenario":
        transcript = [dict(t) for t in answer or []]
        text = "\n".join(str(t["text"]) for t in transcript if t["author"] == "member")
        return {"answer": text, "choices": [], "transcript": transcript,
                "metrics": metrics(transcript), "member": candidate.facts()}  # fmt: skip
    text = str(answer or "")
    return {"answer": text, "choices": list(requirement.choices), "transcript": [],
            "metrics": {"turns": 1, "words": len(text.split()), "duration_seconds": 0,
                        "first_reply_seconds": 0},
            "member": candidate.facts()}  # fmt: skip


async def grade(
    requirement: Requirement, facts: Mapping[str, Any], runner: Evaluator, grader: Grader
) -> RequirementResult:
    """Every criterion of ``requirement`` over ``facts`` (its activation)."""
    results = []
    for criterion in requirement.criteria:
        if criterion.formula is not None:
            results.append(await _formula(criterion.formula, facts, runner))
        else:
            try:
                results.append(await grader.grade(criterion, requirement, facts))
            except Exception as exc:  # a provider's failure, in its words: not a pass
                error = f"the grading model failed: {exc}"[:MAX_ERROR]
                results.append(CriterionResult("ai", False, error=error))
    passed = all(r.passed for r in results)
    return RequirementResult(requirement.id, passed, tuple(results))


async def grade_attempt(
    qualification: QualificationSettings, answers: Mapping[str, Any], candidate: Candidate,
    runner: Evaluator, grader: Grader,
) -> list[RequirementResult]:  # fmt: skip
    """Every requirement of ``qualification`` over the stored ``answers`` of one attempt."""
    results = []
    for requirement in qualification.requirements:
        try:
            facts = activation(requirement, answers.get(requirement.id), candidate)
        except (KeyError, TypeError, ValueError) as exc:  # the definition changed shape since
            error = f"the stored answer does not fit this requirement: {exc!r}"[:MAX_ERROR]
            results.append(RequirementResult(requirement.id, False, (
                CriterionResult("formula", False, error=error),)))  # fmt: skip
            continue
        results.append(await grade(requirement, facts, runner, grader))
    return results


async def _formula(formula: str, facts: Mapping[str, Any], runner: Evaluator) -> CriterionResult:
    try:
        value = await runner.evaluate(formula, facts)
    except (cel.CelFailed, cel.CelProblem) as exc:
        # cel-python appends its whole activation to some messages: keep what explains.
        message = str(exc).split(" (in activation", 1)[0]
        return CriterionResult("formula", False, error=message[:MAX_ERROR])
    if not isinstance(value, bool):
        return CriterionResult(
            "formula", False, error=f"the formula gave {value!r}, not true/false"
        )
    why = "the formula holds" if value else "the formula does not hold"
    return CriterionResult("formula", value, 1.0 if value else 0.0, why)

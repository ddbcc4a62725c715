"""Qualifications: certify a member before real conversations of a workflow reach them.

A qualification (YAML ``qualifications:``, or defined over the API, which replaces the YAML
one of the same name) names the workflows it unlocks and its requirements:

- a **knowledge question**: a prompt, optional choices, criteria;
- a **simulated chat** (``kind: scenario``): a customer with a ``persona`` and a ``goal``
  opens with ``opening``; the member answers as they would a real customer. The customer
  is played by the embedded model following ``script`` (one line per member turn, then
  ``closing``) or, with ``customer: {model: provider:name}``, by a LangChain model in
  character. The chat ends at the customer's last line or after ``turn_limit`` member
  turns; the transcript is the submission.

Criteria (``criteria``): a CEL ``formula``, or a ``rubric`` with a ``reference``
answer graded by the qualification's ``grader`` model (structured output: pass/fail, a
score, a rationale) or, without one, by a deterministic fallback labelled as such.

Lifecycle per member and qualification: ``enrolled -> submitted -> provisional ->
qualified``, and ``failed`` / ``revoked``. A submission is recorded at once and graded
outside the request (``gateway.examinations``): all requirements pass -> ``provisional``
(or ``qualified`` directly with ``admin_review: false``); else ``failed``. A failed member
may be enrolled again after ``cooldown_hours``, up to ``max_attempts``. An admin's review
moves ``provisional`` to ``qualified`` or back to ``enrolled``, with a note. Every
transition is recorded: who (None: the grader), when, why.

The package: ``definitions`` (the YAML/API models and the catalog in force),
``lifecycle`` (enrol, chats, submit, review, revoke, history), ``criteria`` (what a
formula sees, grading, and the ``Grader`` Protocol through which a model grades:
``agents`` implements it, the app wires it; the deterministic fallback grader is here).
"""

from people.qualifications.criteria import (
    Candidate,
    CriterionResult,
    FallbackGrader,
    Grader,
    RequirementResult,
    grade_attempt,
)
from people.qualifications.definitions import (
    ACTIVATION,
    NAME,
    Criterion,
    LanguageModel,
    QualificationSettings,
    Requirement,
    catalog,
    language_models,
    unknown_workflows,
)
from people.qualifications.lifecycle import (
    QualificationError,
    candidate,
    customer_turn,
    enroll,
    enroll_once,
    history,
    member_turn,
    orphaned,
    progress_by_name,
    progress_of,
    qualified_by_workflow,
    record,
    review,
    revoke,
    start_chat,
    submit,
)

__all__ = [
    "ACTIVATION",
    "NAME",
    "Candidate",
    "Criterion",
    "CriterionResult",
    "FallbackGrader",
    "Grader",
    "LanguageModel",
    "QualificationError",
    "QualificationSettings",
    "Requirement",
    "RequirementResult",
    "candidate",
    "catalog",
    "customer_turn",
    "enroll",
    "enroll_once",
    "grade_attempt",
    "history",
    "language_models",
    "member_turn",
    "orphaned",
    "progress_by_name",
    "progress_of",
    "qualified_by_workflow",
    "record",
    "review",
    "revoke",
    "start_chat",
    "submit",
    "unknown_workflows",
]

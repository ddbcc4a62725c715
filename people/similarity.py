"""TF-IDF cosine similarity over stemmed words and character 4-grams.

Small enough to write here (a few dozen lines) rather than pull scikit-learn and SciPy
into every install for one vectoriser. Words are stemmed with the Snowball stemmer, so
"opening"/"open" match; character 4-grams of each stem tolerate typos ("insurence").
Stop words carry no weight, so "when are you open" is about "open", not "are you".
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Mapping

import snowballstemmer

_WORD = re.compile(r"[a-z0-9]+")
_STEMMER = snowballstemmer.stemmer("english")
_GRAM_WEIGHT = 0.3
STOP_WORDS = frozenset(
    [
        "a",
        "about",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "been",
        "being",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "done",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "just",
        "may",
        "me",
        "might",
        "must",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "out",
        "please",
        "she",
        "should",
        "so",
        "some",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "too",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "whats",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
        "would",
        "yes",
        "you",
        "your",
        "yours",
    ]
)

Vector = dict[str, float]


def features(text: str) -> defaultdict[str, float]:
    """Weighted terms of ``text``: stems of its content words and their 4-grams."""
    terms: defaultdict[str, float] = defaultdict(float)
    for word in _WORD.findall(text.lower()):
        if word in STOP_WORDS:
            continue
        stem = _STEMMER.stemWord(word)
        terms["w:" + stem] += 1.0
        padded = f"#{stem}#"
        for i in range(len(padded) - 3):
            terms["g:" + padded[i : i + 4]] += _GRAM_WEIGHT
    return terms


class SimilarityIndex:
    """Scores a query against a fixed list of documents, 0 (nothing shared) to 1."""

    def __init__(self, documents: list[str]) -> None:
        counted = [features(d) for d in documents]
        frequency: Counter[str] = Counter()
        for terms in counted:
            frequency.update(terms.keys())
        n = len(documents)
        self._idf = {t: math.log((1 + n) / (1 + k)) + 1.0 for t, k in frequency.items()}
        self._vectors = [self._weigh(terms) for terms in counted]

    def _weigh(self, terms: Mapping[str, float]) -> Vector:
        vector = {t: count * self._idf.get(t, 0.0) for t, count in terms.items()}
        norm = math.sqrt(sum(x * x for x in vector.values())) or 1.0
        return {t: x / norm for t, x in vector.items()}

    def ranked(self, query: str) -> list[tuple[int, float]]:
        """Every document's (index, score), best first."""
        q = self._weigh(features(query))
        scores = [sum(x * doc.get(t, 0.0) for t, x in q.items()) for doc in self._vectors]
        return sorted(enumerate(scores), key=lambda pair: (-pair[1], pair[0]))

    def best(self, query: str) -> tuple[int, float] | None:
        """The index and score of the closest document, or None when nothing is shared."""
        ranked = self.ranked(query) if self._vectors else []
        return ranked[0] if ranked and ranked[0][1] > 0 else None

"""Is this answer its own text's answer? A check is only as good as its tolerance is small next to the spread
between different texts' answers: ``assert_discriminating`` states that relation for the texts a test sends."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from common.protocol import Prediction

# fp32 answers of one text in different passes (alone, padded among others) differ by ~1e-7 on the tiny model.
SCORE_TOLERANCE = 1e-5
# A misrouted answer passes the check only when the two texts' answers are within the tolerance: allow that
# for at most this fraction of pairs of different texts.
MAX_CONFUSABLE = 0.02


def expected_answers(predictor, texts: Iterable[str]) -> dict[str, Prediction]:
    """Each distinct text's answer computed in-process, one text per forward pass (no padding)."""
    return {text: predictor.predict([text])[0] for text in dict.fromkeys(texts)}


def same_answer(label: str, score: float, expected: Prediction, tolerance: float = SCORE_TOLERANCE) -> bool:
    return label == expected.label and abs(score - expected.score) < tolerance


def confusable_fraction(answers: Mapping[str, Prediction], tolerance: float = SCORE_TOLERANCE) -> float:
    """The fraction of pairs of different texts whose answers the check could not tell apart (same label,
    scores within the tolerance)."""
    by_label: dict[str, list[float]] = {}
    for prediction in answers.values():
        by_label.setdefault(prediction.label, []).append(prediction.score)
    confusable = 0
    for scores in by_label.values():
        scores.sort()
        start = 0
        for end, score in enumerate(scores):  # pairs (start..end-1, end) within the tolerance
            while score - scores[start] >= tolerance:
                start += 1
            confusable += end - start
    pairs = len(answers) * (len(answers) - 1) // 2
    return confusable / pairs if pairs else 0.0


def assert_discriminating(answers: Mapping[str, Prediction], tolerance: float = SCORE_TOLERANCE, *,
                          max_confusable: float = MAX_CONFUSABLE) -> None:
    fraction = confusable_fraction(answers, tolerance)
    assert fraction <= max_confusable, (
        f"{fraction:.1%} of text pairs have answers within {tolerance:g} of each other: the check could not tell "
        "a misrouted answer from the right one")
    if len(answers) >= 20:
        assert len({p.label for p in answers.values()}) > 1, "every text got the same label"

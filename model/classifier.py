"""The statistical half of the engine: a scikit-learn Pipeline and what explains its answers.

Word and character n-gram TF-IDF feed a linear SVM whose scores are turned
into probabilities by cross-validated sigmoid calibration. The model reads
cleaned, masked text of candidate windows, never raw logs.
"""

from __future__ import annotations

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

# Placeholders such as <num> stay one token; single letters survive ("E:" and "W:" of apt matter).
TOKEN_PATTERN = r"<\w+>|\b\w+\b"


def build_pipeline(c: float = 0.5, random_state: int = 0) -> Pipeline:
    """An unfitted pipeline; same data and parameters give the same model."""
    features = FeatureUnion([
        ("words", TfidfVectorizer(token_pattern=TOKEN_PATTERN, ngram_range=(1, 2), sublinear_tf=True,
                                  min_df=1, dtype=np.float32)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True,
                                  min_df=2, max_features=150_000, dtype=np.float32)),
    ])
    classifier = CalibratedClassifierCV(
        LinearSVC(C=c, class_weight="balanced", random_state=random_state, max_iter=5000),
        method="sigmoid", cv=3,
    )
    return Pipeline([("features", features), ("classifier", classifier)])


class Explainer:
    """Per-class linear weights of a fitted pipeline: which terms and which lines drove an answer."""

    def __init__(self, pipeline: Pipeline):
        self.features = pipeline.named_steps["features"]
        classifier = pipeline.named_steps["classifier"]
        self.classes = [str(c) for c in classifier.classes_]
        coefs = [calibrated.estimator.coef_ for calibrated in classifier.calibrated_classifiers_]
        self.weights = np.mean(coefs, axis=0).astype(np.float32)
        self._words = self.features.transformer_list[0][1]
        self._n_words = len(self._words.vocabulary_)
        self._word_names = None

    def top_terms(self, row, category: str, k: int = 6) -> list[str]:
        """The word n-grams of one transformed document that pushed most towards `category`."""
        weights = self.weights[self.classes.index(category)]
        row = row.tocsr()
        indices = row.indices[row.indices < self._n_words]
        if not len(indices):
            return []
        contributions = row[0, indices].toarray().ravel() * weights[indices]
        order = np.argsort(-contributions)[:k]
        if self._word_names is None:
            self._word_names = self._words.get_feature_names_out()
        return [str(self._word_names[indices[i]]) for i in order if contributions[i] > 0]

    def line_scores(self, texts: list[str], category: str) -> np.ndarray:
        """How strongly each line on its own points to `category` (its linear score)."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        matrix = self.features.transform(texts)
        return np.asarray(matrix @ self.weights[self.classes.index(category)]).ravel()

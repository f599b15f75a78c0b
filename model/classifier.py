"""The statistical half of the engine: a scikit-learn Pipeline and a fast way to read it.

Word and character n-gram counts, TF-IDF weighted, feed a linear SVM whose
scores become probabilities by cross-validated sigmoid calibration. No
n-gram crosses a line break, so the counts of any group of lines are the sum
of its lines' counts: `Reader` counts each selected line once and builds
every window of a log from those counts with one sparse product, instead of
re-reading text shared by overlapping windows.
"""

from __future__ import annotations

import re

import numpy as np
import scipy.sparse as sp
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

# Placeholders such as <num> stay one token; single letters survive ("E:" and "W:" of apt matter).
TOKEN_PATTERN = r"<\w+>|\b\w+\b"


class LineWords:
    """Word unigrams and bigrams, lower-cased, that never span two lines."""

    def __init__(self, pattern: str = TOKEN_PATTERN):
        self.pattern = pattern
        self._regex = re.compile(pattern)

    def __getstate__(self):
        return {"pattern": self.pattern}

    def __setstate__(self, state):
        self.__init__(state["pattern"])

    def __call__(self, text: str) -> list[str]:
        grams: list[str] = []
        for line in text.lower().split("\n"):
            tokens = self._regex.findall(line)
            grams.extend(tokens)
            grams.extend(f"{a} {b}" for a, b in zip(tokens, tokens[1:]))
        return grams


def build_pipeline(c: float = 0.5, random_state: int = 0) -> Pipeline:
    """An unfitted pipeline; same data and parameters give the same model."""
    words = Pipeline([("counts", CountVectorizer(analyzer=LineWords(), dtype=np.float32)),
                      ("tfidf", TfidfTransformer(sublinear_tf=True))])
    chars = Pipeline([("counts", CountVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=2,
                                                 max_features=150_000, dtype=np.float32)),
                      ("tfidf", TfidfTransformer(sublinear_tf=True))])
    classifier = CalibratedClassifierCV(
        LinearSVC(C=c, class_weight="balanced", random_state=random_state, max_iter=5000),
        method="sigmoid", cv=3,
    )
    return Pipeline([("features", FeatureUnion([("words", words), ("chars", chars)])), ("classifier", classifier)])


class Reader:
    """A fitted pipeline, read line by line: probabilities for many views, terms and line scores.

    Equal to `pipeline.predict_proba` on the joined text of each view (a test
    keeps it so), but each line is counted once, character n-grams come from
    a per-word cache, and the calibrated SVMs are evaluated as one matrix
    product instead of through scikit-learn's per-call validation.
    """

    WORD_CACHE = 200_000

    def __init__(self, pipeline: Pipeline):
        union = pipeline.named_steps["features"]
        self._parts = [(part.named_steps["counts"], part.named_steps["tfidf"]) for _, part in union.transformer_list]
        self._words, self._chars = (counts for counts, _ in self._parts)
        self._char_grams = self._chars.build_analyzer()
        self._char_vocabulary = self._chars.vocabulary_
        self._word_grams = self._words.build_analyzer()
        self._word_vocabulary = self._words.vocabulary_
        self._idf = [tfidf.idf_.astype(np.float64) for _, tfidf in self._parts]
        self._word_cache: dict[str, list[int]] = {}
        self._n_words = len(self._words.vocabulary_)
        self._word_names = None

        classifier = pipeline.named_steps["classifier"]
        self.classes = [str(c) for c in classifier.classes_]
        # The calibration folds' SVMs side by side: one product per feature family gives every decision.
        members = classifier.calibrated_classifiers_
        self._weights_all = np.ascontiguousarray(
            np.hstack([m.estimator.coef_.T for m in members]), dtype=np.float32)   # feature × (fold, class)
        self._intercepts = np.concatenate([m.estimator.intercept_ for m in members]).astype(np.float64)
        self._a = np.concatenate([[c.a_ for c in m.calibrators] for m in members])
        self._b = np.concatenate([[c.b_ for c in m.calibrators] for m in members])
        self._columns = [np.searchsorted(classifier.classes_, m.estimator.classes_) for m in members]
        self._weights = np.mean([m.estimator.coef_ for m in members], axis=0).astype(np.float32)  # class × feature

    def _word_counts(self, texts: list[str]) -> sp.csr_matrix:
        vocabulary, analyze = self._word_vocabulary, self._word_grams
        indices: list[int] = []
        indptr = [0]
        for text in texts:
            indices.extend(vocabulary[g] for g in analyze(text) if g in vocabulary)
            indptr.append(len(indices))
        return self._matrix(indices, indptr, len(vocabulary))

    def _char_counts(self, texts: list[str]) -> sp.csr_matrix:
        cache, vocabulary, grams = self._word_cache, self._char_vocabulary, self._char_grams
        indices: list[int] = []
        indptr = [0]
        for text in texts:
            for word in text.split():
                found = cache.get(word)
                if found is None:
                    found = [vocabulary[g] for g in grams(word) if g in vocabulary]
                    if len(cache) >= self.WORD_CACHE:
                        cache.clear()
                    cache[word] = found
                indices.extend(found)
            indptr.append(len(indices))
        return self._matrix(indices, indptr, len(vocabulary))

    @staticmethod
    def _matrix(indices: list[int], indptr: list[int], width: int) -> sp.csr_matrix:
        """Per-line counts; repeated entries are left unsummed (every use goes through a product)."""
        indices_array = np.array(indices, dtype=np.int32)
        return sp.csr_matrix((np.ones(len(indices_array), np.float32), indices_array,
                              np.array(indptr, dtype=np.int32)), shape=(len(indptr) - 1, width))

    def count_lines(self, texts: list[str]) -> list[sp.csr_matrix]:
        """Raw n-gram counts of each line: words, then characters."""
        return [self._word_counts(texts), self._char_counts(texts)]

    def features(self, counts: list[sp.csr_matrix], membership: sp.csr_matrix) -> list[sp.csr_matrix]:
        """TF-IDF rows of each feature family for views; `membership[v, l]` is 1 when line l is in view v."""
        return [self._tfidf(membership @ c, idf) for c, idf in zip(counts, self._idf)]

    @staticmethod
    def _tfidf(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
        """What TfidfTransformer(sublinear_tf=True, norm='l2') does, without its per-call checks."""
        matrix = counts.tocsr()
        matrix.sum_duplicates()
        matrix.data = ((np.log(matrix.data) + 1.0) * idf[matrix.indices]).astype(np.float32)
        norms = np.sqrt(np.add.reduceat(matrix.data ** 2, matrix.indptr[:-1])) if matrix.nnz else np.zeros(0)
        lengths = np.diff(matrix.indptr)
        if matrix.nnz:
            norms = np.where(lengths > 0, norms, 1.0)
            matrix.data /= np.repeat(norms, lengths)
        return matrix

    def predict_proba(self, features: list[sp.csr_matrix]) -> np.ndarray:
        """Calibrated probabilities, averaged over the calibration folds (as scikit-learn does)."""
        words, chars = features
        decision = (np.asarray(words @ self._weights_all[:self._n_words], dtype=np.float64)
                    + np.asarray(chars @ self._weights_all[self._n_words:], dtype=np.float64) + self._intercepts)
        calibrated = 1.0 / (1.0 + np.exp(self._a * decision + self._b))
        total = np.zeros((words.shape[0], len(self.classes)))
        start = 0
        for columns in self._columns:
            proba = np.zeros_like(total)
            proba[:, columns] = calibrated[:, start:start + len(columns)]
            start += len(columns)
            denominator = proba.sum(axis=1, keepdims=True)
            total += np.divide(proba, denominator, out=np.full_like(proba, 1 / len(self.classes)),
                               where=denominator != 0)
        total /= len(self._columns)
        total[(1.0 < total) & (total <= 1.0 + 1e-5)] = 1.0
        return total

    def line_scores(self, counts: list[sp.csr_matrix], rows: list[int], category: str) -> np.ndarray:
        """How strongly each of the given lines, on its own, points to `category`."""
        if not rows:
            return np.zeros(0, dtype=np.float32)
        selector = sp.csr_matrix((np.ones(len(rows), np.float32), (np.arange(len(rows)), rows)),
                                 shape=(len(rows), counts[0].shape[0]))
        words, chars = self.features(counts, selector)
        weights = self._weights[self.classes.index(category)]
        return np.asarray(words @ weights[:self._n_words] + chars @ weights[self._n_words:]).ravel()

    def top_terms(self, features: list[sp.csr_matrix], view: int, category: str, k: int = 6) -> list[str]:
        """The word n-grams of one view that pushed most towards `category`."""
        weights = self._weights[self.classes.index(category)]
        row = features[0][view]
        indices, values = row.indices, row.data
        if not len(indices):
            return []
        contributions = values * weights[indices]
        order = np.argsort(-contributions)[:k]
        if self._word_names is None:
            self._word_names = self._words.get_feature_names_out()
        return [str(self._word_names[indices[i]]) for i in order if contributions[i] > 0]

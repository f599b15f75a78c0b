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
from typing import NamedTuple

import numpy as np
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


_NONE = np.zeros(0, dtype=np.int32)


def _unique_inverse(indices: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(indices, return_inverse=True)` for indices below `size`: past a few thousand, marking each
    feature seen is faster than sorting (75 against 134 us for a 10 KB log's 4,600)."""
    if len(indices) < 2000:
        return np.unique(indices, return_inverse=True)
    seen = np.zeros(size, dtype=bool)
    seen[indices] = True
    used = np.flatnonzero(seen)
    position = np.empty(size, dtype=np.int32)
    position[used] = np.arange(len(used), dtype=np.int32)
    return used, position[indices]


class Counts(NamedTuple):
    """Feature indices of some lines, each as often as it occurs: word n-grams of all lines (line by line),
    then character n-grams. Line i's are words[word_ends[i]:word_ends[i + 1]] and the same of chars."""

    words: np.ndarray
    word_ends: np.ndarray
    chars: np.ndarray
    char_ends: np.ndarray


class Views(NamedTuple):
    """TF-IDF rows of several views over the features any of them uses."""

    features: np.ndarray   # sorted feature indices (words first, then characters)
    values: np.ndarray     # view × feature


class Reader:
    """A fitted pipeline, read line by line: probabilities for many views, terms and line scores.

    Equal to `pipeline.predict_proba` on the joined text of each view (a test
    keeps it so), but each line is counted once (and a line seen recently, not
    at all: its counts are cached), character n-grams come from a per-word
    cache, and a view is a short vector of feature indices: its
    TF-IDF weights and the calibrated SVMs' decisions are a few numpy
    operations, without scikit-learn's per-call checks or sparse matrices.
    """

    WORD_CACHE = 50_000
    CACHED_WORD_CHARS = 64  # longer "words" (base64 blobs, minified code) are split every time
    # Masked lines recur: from step to step of one log, and from build to build (two sets of 64 different
    # 10 KB logs of the load benchmark share 68% of their masked lines). 2M indices (4 bytes each), counting
    # keys and overheads as indices too: about 8 MB per worker.
    LINE_CACHE_INDICES = 2_000_000

    def __init__(self, pipeline: Pipeline):
        union = pipeline.named_steps["features"]
        parts = [(part.named_steps["counts"], part.named_steps["tfidf"]) for _, part in union.transformer_list]
        (words, word_tfidf), (chars, char_tfidf) = parts
        self._words, self._chars = words, chars
        self._word_grams, self._word_vocabulary = words.build_analyzer(), words.vocabulary_
        self._char_grams, self._char_vocabulary = chars.build_analyzer(), chars.vocabulary_
        self._n_words = len(words.vocabulary_)
        self._word_cache: dict[str, np.ndarray] = {}
        self._line_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._line_cache_size = 0
        self._word_names = None
        # Both families in one index space: words first, then characters (as the FeatureUnion stacks them).
        self._idf32 = np.concatenate([word_tfidf.idf_, char_tfidf.idf_]).astype(np.float32)

        classifier = pipeline.named_steps["classifier"]
        self.classes = [str(c) for c in classifier.classes_]
        # The calibration folds' SVMs side by side: one product gives every decision.
        members = classifier.calibrated_classifiers_
        self._weights_all = np.ascontiguousarray(
            np.hstack([m.estimator.coef_.T for m in members]), dtype=np.float32)   # feature × (fold, class)
        self._intercepts = np.concatenate([m.estimator.intercept_ for m in members]).astype(np.float64)
        self._a = np.concatenate([[c.a_ for c in m.calibrators] for m in members])
        self._b = np.concatenate([[c.b_ for c in m.calibrators] for m in members])
        self._columns = [np.searchsorted(classifier.classes_, m.estimator.classes_) for m in members]
        self._every_fold_has_every_class = all(
            np.array_equal(columns, np.arange(len(self.classes))) for columns in self._columns)
        self._weights = np.mean([m.estimator.coef_ for m in members], axis=0)  # class × feature

    def _char_arrays(self, words: list[str]) -> list[np.ndarray]:
        """The character n-gram indices of each word (from the per-word cache)."""
        cache = self._word_cache
        arrays = [cache.get(word) for word in words]
        missing = [position for position, array in enumerate(arrays) if array is None]
        if missing:
            vocabulary, grams, offset = self._char_vocabulary, self._char_grams, self._n_words
            if len(cache) >= self.WORD_CACHE:
                cache.clear()
            for position in missing:
                word = words[position]
                found = [offset + vocabulary[g] for g in grams(word) if g in vocabulary]
                arrays[position] = np.array(found, dtype=np.int32) if found else _NONE
                if len(word) <= self.CACHED_WORD_CHARS:
                    cache[word] = arrays[position]
        return arrays

    def _count_line(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """One masked line's (word n-gram, character n-gram) indices, kept in the per-line cache."""
        get = self._word_vocabulary.get
        words = np.array([i for i in map(get, self._word_grams(text)) if i is not None], dtype=np.int32)
        arrays = self._char_arrays(text.split())
        counted = (words, np.concatenate(arrays) if arrays else _NONE)
        if self._line_cache_size >= self.LINE_CACHE_INDICES:
            self._line_cache.clear()
            self._line_cache_size = 0
        self._line_cache[text] = counted
        self._line_cache_size += len(counted[0]) + len(counted[1]) + len(text) // 4 + 32  # the key and overheads too
        return counted

    def count_lines(self, texts: list[str]) -> Counts:
        """Every line's feature indices (word n-grams, then character n-grams), as often as they occur."""
        cache = self._line_cache
        counted = [cache.get(text) for text in texts]
        for position in [position for position, pair in enumerate(counted) if pair is None]:
            counted[position] = self._count_line(texts[position])
        words = [pair[0] for pair in counted]
        chars = [pair[1] for pair in counted]
        return Counts(np.concatenate(words) if words else _NONE, np.cumsum([0, *map(len, words)]),
                      np.concatenate(chars) if chars else _NONE, np.cumsum([0, *map(len, chars)]))

    def features(self, counts: Counts, views: list[list[int]]) -> Views:
        """The TF-IDF rows of the views (a view is a list of line positions), over the features they use."""
        words, word_ends, chars, char_ends = counts
        used, inverse = _unique_inverse(np.concatenate([words, chars]), len(self._idf32))
        word_inverse, char_inverse = inverse[:len(words)], inverse[len(words):]
        tf = np.zeros((len(views), len(used)), dtype=np.float32)
        for row, view in enumerate(views):
            if not view:
                continue
            if view[-1] - view[0] + 1 == len(view):  # consecutive lines (every window is): two slices
                first, last = view[0], view[-1] + 1
                picked = np.concatenate([word_inverse[word_ends[first]:word_ends[last]],
                                         char_inverse[char_ends[first]:char_ends[last]]])
            else:
                picked = np.concatenate([word_inverse[word_ends[i]:word_ends[i + 1]] for i in view]
                                        + [char_inverse[char_ends[i]:char_ends[i + 1]] for i in view])
            tf[row] = np.bincount(picked, minlength=len(used))
        present = tf > 0
        np.log(tf, out=tf, where=present)
        tf += present
        tf *= self._idf32[used]
        split = int(np.searchsorted(used, self._n_words))  # `used` is sorted: words, then characters
        for family in (tf[:, :split], tf[:, split:]):
            norms = np.sqrt(np.einsum("ij,ij->i", family, family))[:, None]
            family /= np.where(norms > 0, norms, 1.0)
        return Views(used, tf)

    def predict_proba(self, views: Views) -> np.ndarray:
        """Calibrated probabilities, averaged over the calibration folds (as scikit-learn does)."""
        weights = np.take(self._weights_all, views.features, axis=0)  # faster than fancy indexing, same rows
        decision = (views.values @ weights).astype(np.float64) + self._intercepts
        calibrated = 1.0 / (1.0 + np.exp(self._a * decision + self._b))
        n_classes = len(self.classes)
        if self._every_fold_has_every_class:
            # (view, fold, class): normalise each fold's row, then average the folds.
            folds = calibrated.reshape(len(calibrated), len(self._columns), n_classes)
            denominator = folds.sum(axis=2, keepdims=True)
            total = np.divide(folds, denominator, out=np.full_like(folds, 1 / n_classes),
                              where=denominator != 0).mean(axis=1)
        else:
            total = np.zeros((len(views.values), n_classes))
            start = 0
            for columns in self._columns:
                proba = np.zeros_like(total)
                proba[:, columns] = calibrated[:, start:start + len(columns)]
                start += len(columns)
                denominator = proba.sum(axis=1, keepdims=True)
                total += np.divide(proba, denominator, out=np.full_like(proba, 1 / n_classes),
                                   where=denominator != 0)
            total /= len(self._columns)
        total[(1.0 < total) & (total <= 1.0 + 1e-5)] = 1.0
        return total

    def line_scores(self, counts: Counts, rows: list[int], category: str) -> np.ndarray:
        """How strongly each of the given lines, on its own, points to `category`."""
        lines = self.features(counts, [[r] for r in rows])
        return lines.values @ self._weights[self.classes.index(category)][lines.features]

    def top_terms(self, views: Views, view: int, category: str, k: int = 6) -> list[str]:
        """The word n-grams of one view that pushed most towards `category`."""
        words = (views.features < self._n_words) & (views.values[view] > 0)
        indices, values = views.features[words], views.values[view][words]
        if not len(indices):
            return []
        contributions = values * self._weights[self.classes.index(category)][indices]
        order = np.argsort(-contributions)[:k]
        if self._word_names is None:
            self._word_names = self._words.get_feature_names_out()
        return [str(self._word_names[indices[i]]) for i in order if contributions[i] > 0]

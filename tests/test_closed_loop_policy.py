"""The closed loop's tree baseline decides exactly as scikit-learn's predict, one packet at a time."""

from __future__ import annotations

import numpy as np
import pytest

from l4stb.pipeline.closed_loop_policy import tree_decider

sklearn_tree = pytest.importorskip("sklearn.tree")


def test_the_walked_tree_decides_as_predict_even_on_its_thresholds():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4000, 7)).astype(np.float32)
    y = np.where(x[:, 5] > 1.0, 2, (x[:, 0] + 0.5 * x[:, 3] > 0.2).astype(int))  # 0/1/2, as the AQM's actions
    clf = sklearn_tree.DecisionTreeClassifier(max_depth=6, class_weight="balanced", random_state=0).fit(x, y)
    probe = rng.normal(size=(3000, 7)).astype(np.float32)
    inner = np.flatnonzero(clf.tree_.children_left != -1)
    for k, node in enumerate(inner):  # rows sitting exactly on a threshold (as float32), and just above it
        f, t = clf.tree_.feature[node], clf.tree_.threshold[node]
        probe[2 * k, f] = np.float32(t)
        probe[2 * k + 1, f] = np.nextafter(np.float32(t), np.float32(np.inf))
    walk = tree_decider(clf)
    got = np.array([walk(row) for row in probe])
    assert np.array_equal(got, clf.predict(probe))
    assert len(set(got.tolist())) == 3

"""Tree peers for scripts/bench-trees.sh, timed on the same CSV and an 80/20 split:
LightGBM (depth 5, 100 trees; and its rf mode, depth 10), XGBoost hist (depth 5) and
scikit-learn's RandomForestClassifier (100 trees, depth 10), 2 threads each. Prints one
`name fit=SECONDS auc=AUC` line per peer; a peer whose package is missing is left out.

usage: trees_peers.py CSV LABEL [PEERS...]   (PEERS: lightgbm xgboost sklearn_rf lightgbm_rf)
More than two classes: LightGBM's multiclass objective (255 bins, its default), reported as
test log-loss.
With SAME_SPLIT=1 the test rows are submit's own (seed 42, test_fraction 0.2, recomputed as in
spark_same_split.py), so AUCs compare on exactly the same rows; otherwise scikit-learn's split.
"""
import os
import sys
import time

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import train_test_split

path, label = sys.argv[1], sys.argv[2]
wanted = set(sys.argv[3:]) or {"lightgbm", "xgboost", "sklearn_rf", "lightgbm_rf"}
frame = pd.read_csv(path)
y = frame.pop(label).to_numpy()
if os.environ.get("SAME_SPLIT") == "1":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from spark_same_split import SPLIT_STREAM, mix_scalar, unit_vector

    is_test = unit_vector(mix_scalar(42, SPLIT_STREAM), np.arange(len(y))) < 0.2
    x_train, x_test = frame[~is_test], frame[is_test]
    y_train, y_test = y[~is_test], y[is_test]
else:
    x_train, x_test, y_train, y_test = train_test_split(frame, y, test_size=0.2, random_state=42)


def report(name, fit, model):
    probabilities = model.predict_proba(x_test)
    if probabilities.shape[1] > 2:
        loss = log_loss(y_test, probabilities, labels=model.classes_)
        print(f"{name} fit={fit:.2f} log_loss={loss:.4f}", flush=True)
        return
    auc = roc_auc_score(y_test, probabilities[:, 1])
    print(f"{name} fit={fit:.2f} auc={auc:.4f}", flush=True)


def timed(name, make):
    start = time.time()
    model = make().fit(x_train, y_train)
    report(name, time.time() - start, model)


if "lightgbm" in wanted or "lightgbm_rf" in wanted:
    try:
        import lightgbm as lgb
    except ImportError:
        lgb = None
    if lgb and "lightgbm" in wanted:
        timed("lightgbm", lambda: lgb.LGBMClassifier(n_estimators=100, max_depth=5, num_leaves=32, learning_rate=0.1, n_jobs=2, verbose=-1))
    if lgb and "lightgbm_rf" in wanted:
        timed("lightgbm_rf", lambda: lgb.LGBMClassifier(boosting_type="rf", n_estimators=100, max_depth=10, num_leaves=1024, bagging_fraction=0.632, bagging_freq=1, feature_fraction=0.5, n_jobs=2, verbose=-1))
if "xgboost" in wanted:
    try:
        import xgboost as xgb
        timed("xgboost", lambda: xgb.XGBClassifier(n_estimators=100, max_depth=5, learning_rate=0.1, tree_method="hist", n_jobs=2))
    except ImportError:
        pass
if "sklearn_rf" in wanted:
    from sklearn.ensemble import RandomForestClassifier
    timed("sklearn_rf", lambda: RandomForestClassifier(n_estimators=100, max_depth=10, n_jobs=2, random_state=42))

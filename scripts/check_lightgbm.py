"""Loads a version's model.lgb.txt with the PyPI `lightgbm` package and checks that its
predictions equal submit's predict output on the same rows.

usage: check_lightgbm.py VERSION_DIR FEATURES.csv PREDICTIONS.csv [TOLERANCE] [--contributions]
FEATURES.csv has a header with the model's feature columns, as the job read them: numbers, and
categorical columns as their values (strings, or numbers declared categorical). The script
gives those columns pandas' category dtype and predicts on the DataFrame, as a Python user
would; LightGBM maps the values to our category indices through the model's
`pandas_categorical`. PREDICTIONS.csv is what `kind = "predict"` wrote for those rows. Exit 0 when
every prediction agrees within TOLERANCE (default 1e-9), 1 otherwise. With --contributions the
`contrib_*` columns of PREDICTIONS.csv (a predict job with `predict.contributions = true`) must
also equal LightGBM's `pred_contrib` (per class: each feature, then the bias).
"""
import sys

import lightgbm
import numpy as np
import pandas as pd

arguments = [a for a in sys.argv[1:] if a != "--contributions"]
contributions = "--contributions" in sys.argv[1:]
version, features_path, predictions_path = arguments[:3]
tolerance = float(arguments[3]) if len(arguments) > 3 else 1e-9
booster = lightgbm.Booster(model_file=f"{version}/model.lgb.txt")
import json

saved = json.load(open(f"{version}/model.trees.json"))
categorical = [
    name
    for name, kind in zip(saved["feature_names"], saved["feature_kinds"])
    if kind["kind"] == "categorical"
]
features = pd.read_csv(features_path, dtype={name: str for name in categorical}, keep_default_na=False)
matrix = features[booster.feature_name()].copy()
for name in categorical:
    values = matrix[name]
    if all(text.lstrip("-").isdigit() for text in values):
        values = values.astype(np.int64)
    matrix[name] = values.astype("category")
for name in matrix.columns:
    if name not in categorical:
        matrix[name] = pd.to_numeric(matrix[name].replace("", np.nan), errors="coerce")
theirs = booster.predict(matrix)
ours_table = pd.read_csv(predictions_path)
probability = [c for c in ours_table.columns if c.startswith("probability_")]
if theirs.ndim == 2:
    # Multiclass: one probability per class, in class order.
    ours = ours_table[probability].to_numpy(dtype=np.float64)
elif probability:
    # Binary models: LightGBM predicts the probability of the second class.
    ours = ours_table[probability[-1]].to_numpy(dtype=np.float64)
else:
    ours = ours_table["prediction"].to_numpy(dtype=np.float64)
difference = np.abs(theirs - ours).max()
print(f"lightgbm {lightgbm.__version__}: {len(theirs)} rows, max |difference| {difference:.3g}")
if contributions:
    contrib_columns = [c for c in ours_table.columns if c.startswith("contrib_")]
    theirs_contrib = booster.predict(matrix, pred_contrib=True)
    if "average_output" in open(f"{version}/model.lgb.txt").read().split("tree_sizes=")[0]:
        # LightGBM sums a random forest's per-tree contributions without averaging them, so
        # they add up to num_trees x its own prediction; ours (and the average) are 1/num_trees
        # of those and add up to the prediction.
        theirs_contrib = theirs_contrib / booster.num_trees()
    ours_contrib = ours_table[contrib_columns].to_numpy(dtype=np.float64)
    if theirs_contrib.shape != ours_contrib.shape:
        print(f"contributions: lightgbm shape {theirs_contrib.shape}, ours {ours_contrib.shape}")
        sys.exit(1)
    contrib_difference = np.abs(theirs_contrib - ours_contrib).max()
    print(f"contributions: {ours_contrib.shape[1]} columns, max |difference| {contrib_difference:.3g}")
    difference = max(difference, contrib_difference)
sys.exit(0 if difference <= tolerance else 1)

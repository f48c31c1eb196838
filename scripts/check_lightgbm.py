"""Loads a version's model.lgb.txt with the PyPI `lightgbm` package and checks that its
predictions equal submit's predict output on the same rows.

usage: check_lightgbm.py VERSION_DIR FEATURES.csv PREDICTIONS.csv [TOLERANCE]
FEATURES.csv has a header with the model's feature columns (numeric; categorical columns as
category indices); PREDICTIONS.csv is what `kind = "predict"` wrote for those rows. Exit 0 when
every prediction agrees within TOLERANCE (default 1e-9), 1 otherwise.
"""
import sys

import lightgbm
import numpy as np
import pandas as pd

version, features_path, predictions_path = sys.argv[1:4]
tolerance = float(sys.argv[4]) if len(sys.argv) > 4 else 1e-9
booster = lightgbm.Booster(model_file=f"{version}/model.lgb.txt")
features = pd.read_csv(features_path)
matrix = features[booster.feature_name()].to_numpy(dtype=np.float64)
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
sys.exit(0 if difference <= tolerance else 1)

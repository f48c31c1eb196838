"""Spark MLlib ALS on exactly the train/test split `submit` uses, for a like-for-like RMSE.

submit assigns row r (0-based, file order, header excluded) of a single CSV to the test split when
unit(mix(seed, SPLIT_STREAM), r) < test_fraction, with mix the SplitMix64 finalizer as written in
src/dataset/split.rs. This script recomputes that assignment with numpy, writes the two parts, and
trains and evaluates Spark's ALS (coldStartStrategy="drop", as the bench job) on them.

    python scripts/spark_same_split.py ratings.csv [seed=42] [test_fraction=0.2] [rank=10] [max_iter=10] [reg_param=0.1]

Prints one line: `spark_same_split rmse=... fit=...s train=... test=...`.
"""
import os
import sys
import tempfile
import time

import numpy as np
import pandas as pd

MASK = (1 << 64) - 1
SPLIT_STREAM = 0x0053_504C_4954


def mix_scalar(seed, index):
    z = (seed * 0x9E3779B97F4A7C15 + index + 0x632BE59BD9B4E019) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def unit_vector(key, indices):
    with np.errstate(over="ignore"):
        z = np.uint64((key * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & MASK) + indices.astype(np.uint64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def main():
    path = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 42
    test_fraction = float(sys.argv[3]) if len(sys.argv) > 3 else 0.2
    rank = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    max_iter = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    reg_param = float(sys.argv[6]) if len(sys.argv) > 6 else 0.1

    frame = pd.read_csv(path)
    frame.columns = ["user", "item", "rating"][: len(frame.columns)]
    stream = mix_scalar(seed, SPLIT_STREAM)
    is_test = unit_vector(stream, np.arange(len(frame))) < test_fraction
    work = tempfile.mkdtemp()
    train_path, test_path = os.path.join(work, "train.csv"), os.path.join(work, "test.csv")
    frame[~is_test].to_csv(train_path, index=False)
    frame[is_test].to_csv(test_path, index=False)

    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession

    spark = (SparkSession.builder.master("local[2]").appName("same-split")
             .config("spark.driver.memory", "4g").config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")

    def load(csv):
        df = spark.read.option("header", True).option("inferSchema", True).csv(csv)
        return df.selectExpr("cast(user as int) user", "cast(item as int) item", "cast(rating as float) rating")

    train, test = load(train_path), load(test_path)
    train.cache().count()
    test.cache().count()
    started = time.time()
    model = ALS(rank=rank, maxIter=max_iter, regParam=reg_param, userCol="user", itemCol="item",
                ratingCol="rating", coldStartStrategy="drop", seed=seed).fit(train)
    fit = time.time() - started
    rmse = RegressionEvaluator(metricName="rmse", labelCol="rating", predictionCol="prediction").evaluate(
        model.transform(test))
    print(f"spark_same_split rmse={rmse:.4f} fit={fit:.2f}s train={int((~is_test).sum())} test={int(is_test.sum())}")


if __name__ == "__main__":
    main()

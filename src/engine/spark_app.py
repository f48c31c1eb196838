"""submit's Spark engine: one training job on Spark MLlib.

Written by `submit --engine spark` and run by spark-submit as
`spark_app.py PLAN.json`. The plan holds the checked job (inputs, column mapping, split,
Spark's estimator and parameters) and where to write. This application reads the inputs with
Spark's readers, numbers the rows in file order, applies the native engine's seeded split (the
same SplitMix64 hash of (seed, row number), computed in Spark SQL), fits the estimator, saves the
Spark model directory and hands the rest to submit through the exchange directory:

  result.json      counts, timings, Spark version, Spark's own evaluator figures
  error.json       on a problem with the job or its data: {"kind", "message"}
  ALS:   users.json / items.json (ids by index), user_factors.bin / item_factors.bin
         (u32 index + rank f32 per row), train.bin / test.bin (u32 user, u32 item, f32 rating)
  trees: predictions.bin (per test row: f64 label, then f64 probabilities or prediction),
         trees.json (the ensemble's nodes, when every feature is numeric)

submit computes the metrics from these with its own evaluators, so both engines report the
same metric names with the same definitions, and publishes the version. Do not edit: submit
writes this file from its own copy.
"""

import json
import math
import os
import struct
import sys
import time

MASK64 = (1 << 64) - 1


class JobProblem(Exception):
    """A problem with the job or its data, reported to submit as such (not as a crash)."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def signed(value):
    value &= MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def long_literal(value):
    # A bigint literal Spark SQL parses for any 64-bit value (even the most negative one).
    return f"CAST('{signed(value)}' AS BIGINT)"


def unit_expression(base, index_column):
    """SplitMix64's finalizer of (base + row), as submit's `split::unit`, in Spark SQL.

    `base` already holds seed * golden gamma + offset; the products wrap at 64 bits, which is
    why the application turns ANSI mode off for its session."""
    from pyspark.sql import functions as F

    z = F.expr(f"{long_literal(base)} + {index_column}")
    z = (z.bitwiseXOR(F.shiftrightunsigned(z, 30))) * F.expr(long_literal(0xBF58476D1CE4E5B9))
    z = (z.bitwiseXOR(F.shiftrightunsigned(z, 27))) * F.expr(long_literal(0x94D049BB133111EB))
    z = z.bitwiseXOR(F.shiftrightunsigned(z, 31))
    return F.shiftrightunsigned(z, 11).cast("double") * (1.0 / (1 << 53))


def column_name(frame, ref, path):
    if "name" in ref:
        if ref["name"] not in frame.columns:
            raise JobProblem(
                "input",
                f"{path}: no column `{ref['name']}` (columns: {', '.join(frame.columns)})",
            )
        return ref["name"]
    position = ref["position"]
    if position >= len(frame.columns):
        raise JobProblem(
            "input", f"{path}: no column #{position} (the file has {len(frame.columns)})"
        )
    return frame.columns[position]


def read_file(spark, source, path):
    fmt = source["format"]
    reader = spark.read
    if fmt in ("csv", "tsv", "text"):
        frame = (
            reader.option("sep", source["separator"])
            .option("header", "true" if source["header"] else "false")
            .option("inferSchema", "true")
            .option("mode", "FAILFAST")
            .csv(path)
        )
        if not source["header"]:
            # The native engine's names for headerless text.
            frame = frame.toDF(*[f"column_{i + 1}" for i in range(len(frame.columns))])
        return frame
    if fmt == "parquet":
        return reader.parquet(path)
    if fmt == "ndjson":
        return reader.json(path)
    if fmt == "libsvm":
        return reader.format("libsvm").load(path)
    raise JobProblem("config", f"format {fmt} has no Spark reader")


def number_rows(spark, frame, name):
    """Adds `name`: the row's position in file order, counted without leaving the JVM.

    monotonically_increasing_id is (partition << 33) + position in partition; partitions of a
    file come in file order, so each partition's offset is the count of the ones before it."""
    from pyspark.sql import functions as F

    tagged = frame.withColumn("__mid", F.monotonically_increasing_id()).withColumn(
        "__part", F.spark_partition_id()
    )
    counts = sorted(tagged.groupBy("__part").count().collect())
    offsets, total = [], 0
    for row in counts:
        offsets.append((row["__part"], total))
        total += row["count"]
    if not offsets:
        return tagged.withColumn(name, F.lit(0).cast("long")).drop("__mid", "__part"), 0
    offset_frame = spark.createDataFrame(offsets, "__part INT, __offset LONG")
    numbered = tagged.join(F.broadcast(offset_frame), "__part").withColumn(
        name,
        F.col("__offset")
        + (F.col("__mid") - F.shiftleft(F.col("__part").cast("long"), 33)),
    )
    return numbered.drop("__mid", "__part", "__offset"), total


def sorted_by(frame, column):
    """`frame` sorted by `column` (then dropped), with its partitions fixed for number_rows.

    number_rows counts the partitions in one Spark job and numbers them in another; a sort's
    shuffle can come out partitioned differently each time (adaptive execution coalesces by
    the sizes it sees), so the sorted rows are materialized once and both jobs read them."""
    return frame.orderBy(column).drop(column).localCheckpoint()


def quoted(name):
    """A column name as Spark SQL reads it literally (dots, spaces and backticks included)."""
    return "`" + name.replace("`", "``") + "`"


def first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def numbered_files(spark, source, limit, with_hive):
    """A source's files in order, each numbered `__global` in file order (after the rows of
    the files before it, up to `limit`), with its Hive partition columns when `with_hive` (as
    the native preparation adds them). Returns `(path, frame)` pairs, the row count and the
    rows of each file."""
    from pyspark.sql import functions as F

    hive = (source.get("hive") if with_hive else None) or {"keys": [], "per_file": []}
    frames, offset, per_file = [], 0, []
    for index, path in enumerate(source["paths"]):
        if limit is not None and offset >= limit:
            break
        frame = read_file(spark, source, path)
        parts = dict(hive["per_file"][index]) if hive["per_file"] else {}
        for key, integer in hive["keys"]:
            value = parts.get(key)
            kind = "bigint" if integer else "string"
            literal = F.lit(None) if value is None else F.lit(int(value) if integer else value)
            frame = frame.withColumn(key, literal.cast(kind))
        frame, rows = number_rows(spark, frame, "__global")
        frame = frame.withColumn("__global", F.col("__global") + F.lit(offset))
        if limit is not None:
            frame = frame.filter(F.col("__global") < F.lit(limit))
            rows = min(rows, limit - offset)
        per_file.append({"path": path, "rows": rows})
        frames.append((path, frame))
        offset += rows
    if not frames:
        raise JobProblem("input", "no input rows")
    return frames, offset, per_file


def read_source(spark, source, limit=None):
    """A source's files as one frame with Hive columns, numbered `__global` in file order.
    Returns the frame, the row count and the rows of each file."""
    frames, offset, per_file = numbered_files(spark, source, limit, with_hive=True)
    union = frames[0][1]
    for _, frame in frames[1:]:
        union = union.unionByName(frame, allowMissingColumns=True)
    return union, offset, per_file


def renumber(frame, *order):
    """`__global` as 0, 1, ... in the order of `order` (default: `__global`), the rows of the
    native engine's order-keeping joins, group-bys and dedupes."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    window = Window.orderBy(*(order or ("__global",)))
    return frame.withColumn("__global", F.row_number().over(window) - F.lit(1))


def apply_step(step, frame, tables):
    """One `[[input.steps]]` entry as DataFrame operations, keeping `__global` (the row's place
    in the native engine's order)."""
    from functools import reduce

    from pyspark.sql import Window
    from pyspark.sql import functions as F

    kind = step["kind"]
    if kind == "filter":
        return frame.filter(F.expr(step["expr"]))
    if kind == "with_columns":
        # Every expression reads the frame before the step, as polars' with_columns.
        new = {name: F.expr(text).alias(name) for name, text in step["columns"]}
        kept = [new.pop(c) if c in new else F.col(quoted(c)) for c in frame.columns]
        return frame.select(*kept, *new.values())
    if kind == "select":
        return frame.select(*[F.col(quoted(c)) for c in step["columns"]], "__global")
    if kind == "rename":
        pairs = dict(step["pairs"])
        return frame.select(
            *[F.col(quoted(c)).alias(pairs.get(c, c)) for c in frame.columns]
        )
    if kind == "join":
        other = tables[step["table"]].withColumnRenamed("__global", "__right")
        left_on, right_on = step["left_on"], step["right_on"]
        keys = [f"__key{i}" for i in range(len(right_on))]
        # The right side's keys are joined on and dropped; its other columns keep their names
        # unless the left side has one (polars' `_right` suffix).
        others = [c for c in other.columns if c not in right_on and c != "__right"]
        other = other.select(
            *[F.col(quoted(r)).alias(k) for r, k in zip(right_on, keys)],
            *[F.col(quoted(c)).alias(c + "_right" if c in frame.columns else c) for c in others],
            "__right",
        )
        condition = reduce(
            lambda a, b: a & b,
            [frame[quoted(l)] == other[k] for l, k in zip(left_on, keys)],
        )
        how = {"inner": "inner", "left": "left", "semi": "left_semi", "anti": "left_anti"}
        joined = frame.join(other, condition, how[step["how"]])
        if step["how"] in ("semi", "anti"):
            return joined
        joined = joined.drop(*keys)
        return renumber(joined, "__global", "__right").drop("__right")
    if kind == "group_by":
        aggregates = [F.expr(text).alias(name) for name, text in step["aggregations"]]
        grouped = frame.groupBy(*[F.col(quoted(c)) for c in step["keys"]]).agg(
            *aggregates, F.min("__global").alias("__global")
        )
        return renumber(grouped)
    if kind == "dedupe":
        subset = step["columns"] or [c for c in frame.columns if c != "__global"]
        order = F.col("__global").asc() if step["keep"] == "first" else F.col("__global").desc()
        window = Window.partitionBy(*[F.col(quoted(c)) for c in subset]).orderBy(order)
        kept = frame.withColumn("__rank", F.row_number().over(window)).filter("__rank = 1")
        return renumber(kept.drop("__rank"))
    if kind == "sample":
        numbered = renumber(frame)
        return numbered.filter(unit_expression(step["base"], "__global") < F.lit(step["fraction"]))
    raise JobProblem("config", f"{step['at']}: step `{kind}` has no Spark translation")


class PolarsDialect:
    """Spark SQL read as the native engine's polars SQL reads it while a query or step is
    planned: double quotes name columns (`"user"`), and a cast that fails is an error, not a
    null. The application's own hash arithmetic needs ANSI mode off, so it is restored after."""

    SETTINGS = {"spark.sql.ansi.enabled": "true", "spark.sql.ansi.doubleQuotedIdentifiers": "true"}

    def __init__(self, spark):
        self.spark = spark
        self.saved = {}

    def __enter__(self):
        for key, value in self.SETTINGS.items():
            self.saved[key] = self.spark.conf.get(key, None)
            self.spark.conf.set(key, value)
        return self

    def __exit__(self, *_):
        for key, value in self.saved.items():
            if value is None:
                self.spark.conf.unset(key)
            else:
                self.spark.conf.set(key, value)
        return False


def prepare(spark, preparation, main):
    """`input.sql` over temporary views of the input and the named tables, then the steps;
    rows numbered `__global` in the order the native engine gives them (after SQL, in the order
    Spark returns them)."""
    tables = {}
    for table in preparation["tables"]:
        frame, _, _ = read_source(spark, table["source"])
        tables[table["name"]] = frame
    frame = main
    sql = preparation["sql"]
    if sql:
        main.drop("__global").createOrReplaceTempView("input")
        for name, table in tables.items():
            table.drop("__global").createOrReplaceTempView(name)
        try:
            with PolarsDialect(spark):
                frame = spark.sql(sql["text"])
                frame.schema
        except Exception as error:
            known = "; ".join(
                f"{name} ({', '.join(c for c in table.columns if c != '__global')})"
                for name, table in [("input", main), *tables.items()]
            )
            raise JobProblem(
                "config", f"{sql['at']}: Spark SQL: {first_line(error)}; tables: {known}"
            ) from error
        frame, _ = number_rows(spark, frame, "__global")
    for step in preparation["steps"]:
        try:
            if step["kind"] == "sample":
                frame = apply_step(step, frame, tables)
            else:
                with PolarsDialect(spark):
                    frame = apply_step(step, frame, tables)
                    frame.schema
        except JobProblem:
            raise
        except Exception as error:
            raise JobProblem("config", f"{step['at']}: {first_line(error)}") from error
    return renumber(frame)


def read_input(spark, plan, used_names):
    """All files in order with `__row` (position among the kept rows), limit, null policy and
    sampling applied as the native engine applies them. Returns the frame and counts."""
    from pyspark.sql import functions as F

    source = plan["input"]
    if source.get("preparation"):
        return read_prepared(spark, plan, used_names)
    frames, offset, per_file = numbered_files(spark, source, source["limit"], with_hive=False)
    columns = None
    for path, frame in frames:
        names = used_names(frame, path)
        if columns is None:
            columns = names
        elif list(names) != list(columns):
            raise JobProblem(
                "input", f"{path}: its columns {names} differ from the first file's {columns}"
            )
    selected = None
    for path, frame in frames:
        part = frame.select(*[F.col(c) for c in columns], "__global")
        selected = part if selected is None else selected.unionByName(part)

    def missing(row, name):
        line = row["__global"] + (1 if source["header"] else 0) + 1
        return f"row {row['__global'] + 1} (line {line} of delimited text) has a missing value in column `{name}`"

    return finish_rows(
        spark, plan, selected, columns, offset, per_file, missing, "rows read", ordered=False
    )


def read_prepared(spark, plan, used_names):
    """The prepared input (the preparation over the input files and the named tables) with
    `__row`, null policy and sampling applied as natively. Returns the frame and counts."""
    from pyspark.sql import functions as F

    source = plan["input"]
    main, _, per_file = read_source(spark, source, source["limit"])
    frame = prepare(spark, source["preparation"], main).cache()
    rows_read = frame.count()
    name = "the prepared input (input.sql / input.steps)"
    columns = used_names(frame.drop("__global"), name)
    selected = frame.select(*[F.col(quoted(c)) for c in columns], "__global")

    def missing(row, column):
        return f"{name}: row {row['__global'] + 1} has a missing value in column `{column}`"

    return finish_rows(
        spark, plan, selected, columns, rows_read, per_file, missing, "rows prepared", ordered=True
    )


def finish_rows(spark, plan, selected, columns, rows_read, per_file, missing, what, ordered):
    """The null policy and `sample_fraction` over the used columns of the rows (numbered
    `__global`), then `__row` in order, as the native engine applies them; `missing(row,
    column)` words a missing value. Returns the frame and the counts."""
    from pyspark.sql import functions as F

    source = plan["input"]
    null_filter = None
    for column in columns:
        condition = F.col(quoted(column)).isNull()
        null_filter = condition if null_filter is None else (null_filter | condition)
    dropped = 0
    if null_filter is not None:
        bad = selected.filter(null_filter)
        if source["null_policy"] == "error":
            first = bad.orderBy("__global").limit(1).collect()
            if first:
                row = first[0]
                absent = [c for c in columns if row[c] is None]
                raise JobProblem(
                    "input",
                    f"{missing(row, absent[0])} (set `input.null_policy = \"drop\"` to skip "
                    "such rows)",
                )
        else:
            dropped = bad.count()
            selected = selected.filter(~null_filter)
    sampled_out = 0
    if source["sample_fraction"] < 1.0:
        keep = unit_expression(plan["split"]["sample_base"], "__global") < F.lit(
            source["sample_fraction"]
        )
        before = rows_read - dropped
        selected = selected.filter(keep)
        sampled_out = before - selected.count()
    if ordered:
        selected = sorted_by(selected, "__global")
    numbered, total = number_rows(spark, selected, "__row")
    counts = {
        "rows_read": rows_read,
        "rows_dropped_null": dropped,
        "rows_sampled_out": sampled_out,
        "rows": total,
        "per_file": per_file,
    }
    if total == 0:
        raise JobProblem(
            "input",
            f"no rows left: {rows_read} {what}, {dropped} dropped for missing values, "
            f"{sampled_out} left out by sample_fraction",
        )
    return numbered.drop("__global"), counts


NUMERIC_TYPES = ("tinyint", "smallint", "int", "bigint", "float", "double")


def first_row_where(frame, condition):
    """The first row (by `__row`) where `condition` holds, or None."""
    rows = frame.filter(condition).orderBy("__row").limit(1).collect()
    return rows[0] if rows else None


def with_time(frame, name):
    """Adds `__time`: the split column as seconds since the Unix epoch for dates and times (UTC
    when no zone is written), or as its own number, as the native engine reads it. A value
    that is neither is a job problem naming the row."""
    from pyspark.sql import functions as F

    column = F.col(quoted(name))
    kind = frame.schema[name].dataType.simpleString()
    if kind.startswith("timestamp"):
        value = column.cast("double")
    elif kind == "date":
        value = F.datediff(column, F.lit("1970-01-01").cast("date")).cast("double") * F.lit(
            86400.0
        )
    elif kind in NUMERIC_TYPES or kind.startswith("decimal"):
        value = column.cast("double")
    else:
        text = F.trim(column.cast("string"))
        value = F.when(
            text.rlike(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"), F.to_timestamp(text).cast("double")
        ).otherwise(text.cast("double"))
    bad = first_row_where(
        frame, column.isNotNull() & (value.isNull() | ~(F.abs(value) < F.lit(math.inf)))
    )
    if bad:
        raise JobProblem(
            "input",
            f"row {bad['__row'] + 1}: split column `{name}` holds {bad[name]!r}; the "
            "split column must hold times: a date (2026-11-01), a date and time (2026-11-01 "
            "12:00:00, RFC 3339) or a number",
        )
    return frame.withColumn("__time", F.coalesce(value, F.lit(0.0)))


def with_split(frame, plan, user=None):
    """`__test`: the native engine's split. `random` hashes (seed, row); `time` holds out the
    rows at or after the cutoff (or in the last fraction of the time range); `per_user_last`
    each user's last `n` rows by time (equal times by row order), one row always kept."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    split = plan["split"]
    if split["method"] == "time":
        cutoff = split["cutoff"]
        if cutoff is None:
            low, high = frame.agg(F.min("__time"), F.max("__time")).first()
            cutoff = math.inf if low is None else high - split["fraction"] * (high - low)
        return frame.withColumn("__test", F.col("__time") >= F.lit(cutoff))
    if split["method"] == "per_user_last":
        latest_first = Window.partitionBy(quoted(user)).orderBy(
            F.col("__time").desc(), F.col("__row").desc()
        )
        rows = F.count(F.lit(1)).over(Window.partitionBy(quoted(user)))
        return frame.withColumn(
            "__test", F.row_number().over(latest_first) <= F.least(F.lit(split["n"]), rows - 1)
        )
    return frame.withColumn(
        "__test",
        unit_expression(split["split_base"], "__row") < F.lit(split["test_fraction"]),
    )


def read_sources(spark, plan, used):
    """The input, and `[input.test]` when the job has one (prepared, null policy and sampling
    as the input), each numbered `__row`. Returns the frames and the counts of each (the test
    frame and counts None without a test source); the input's `per_file` lists the test files
    too, for the manifest."""
    frame, counts = read_input(spark, plan, used)
    test_source = plan["test_input"]
    if not test_source:
        return frame, None, counts, None
    test_plan = dict(plan, input=dict(plan["input"], **test_source))
    try:
        test, test_counts = read_input(spark, test_plan, used)
    except JobProblem as problem:
        raise JobProblem(problem.kind, f"[input.test]: {problem}") from problem
    counts["per_file"] += test_counts["per_file"]
    return frame, test, counts, test_counts


def dedupe(frame, rule, user, item):
    """`input.dedupe` over (user, item) pairs of `__rating`, as the native engine merges them:
    the merged row takes the first row's place (and the latest `__time`), then rows are
    numbered again in order."""
    from pyspark.sql import functions as F

    if rule == "keep":
        return frame
    keys = [quoted(user), quoted(item)]
    if rule == "error":
        repeated = (
            frame.groupBy(*keys)
            .agg(
                F.count(F.lit(1)).alias("__rows"),
                F.sort_array(F.collect_list("__row")).alias("__at"),
            )
            .filter(F.col("__rows") > 1)
            .orderBy(F.col("__at")[1])
            .limit(1)
            .collect()
        )
        if repeated:
            row = repeated[0]
            more = f" ({row['__rows']} rows in all)" if row["__rows"] > 2 else ""
            raise JobProblem(
                "input",
                f"input.dedupe = \"error\": user {row[0]} and item {row[1]} appear in rows "
                f"{row['__at'][0] + 1} and {row['__at'][1] + 1} of the input (after missing "
                f"values were dropped){more}; set input.dedupe to first, last, sum, mean or max "
                "to combine them, or keep to treat them as separate observations",
            )
        return frame
    rating = F.col("__rating")
    combined = {
        "first": F.min_by(rating, "__row"),
        "last": F.max_by(rating, "__row"),
        "sum": F.sum(rating.cast("double")).cast("float"),
        "mean": F.avg(rating.cast("double")).cast("float"),
        "max": F.max(rating),
    }[rule]
    merged = [F.min("__row").alias("__row"), combined.alias("__rating")]
    if "__time" in frame.columns:
        merged.append(F.max("__time").alias("__time"))
    grouped = frame.groupBy(*keys).agg(*merged)
    numbered, _ = number_rows(grouped.sparkSession, sorted_by(grouped, "__row"), "__row")
    return numbered


def train_and_test(frame, counts, train_key, test_key):
    """The two parts of the split, counted into `counts`; no training rows is a job problem."""
    from pyspark.sql import functions as F

    train = frame.filter(~F.col("__test"))
    test = frame.filter(F.col("__test"))
    counts[train_key] = train.count()
    counts[test_key] = test.count()
    if counts[train_key] == 0:
        raise JobProblem("input", "all rows went to the test split")
    return train, test


def estimator(plan, **columns):
    module_name, class_name = plan["estimator"].rsplit(".", 1)
    module = __import__(module_name, fromlist=[class_name])
    params = {k: v for k, v in plan["params"].items() if "." not in k}
    params.update(columns)
    return getattr(module, class_name)(**params)


def write_records(path, rows, pack):
    with open(path, "wb") as out:
        buffer = []
        for row in rows:
            buffer.append(pack(row))
            if len(buffer) >= 65536:
                out.write(b"".join(buffer))
                buffer.clear()
        out.write(b"".join(buffer))


def run_als(spark, plan, exchange, result):
    from pyspark.ml.evaluation import RegressionEvaluator
    from pyspark.ml.feature import StringIndexer
    from pyspark.sql import functions as F

    columns = plan["input"]["columns"]

    time_column = plan["split"]["column"]

    def used(frame, path):
        names = [
            column_name(frame, columns["user"], path),
            column_name(frame, columns["item"], path),
            column_name(frame, columns["rating"], path),
        ]
        if time_column is not None:
            names.append(column_name(frame, time_column, path))
        return names

    started = time.time()
    frame, test, counts, test_counts = read_sources(spark, plan, used)
    # ALS jobs count the test source's rows with the input's, as natively.
    for key in ("rows_read", "rows_dropped_null", "rows_sampled_out", "rows"):
        counts[key] += test_counts[key] if test_counts else 0
    user, item, rating = frame.columns[0], frame.columns[1], frame.columns[2]
    kinds = {}
    for role, name in (("user", user), ("item", item)):
        data_type = frame.schema[name].dataType.simpleString()
        kinds[role] = "integer" if data_type in ("int", "bigint", "smallint", "tinyint") else "text"

    def ratings(frame, where):
        frame = frame.withColumn("__rating", F.col(quoted(rating)).cast("float"))
        bad = frame.filter(F.col("__rating").isNull() | F.isnan("__rating")).limit(1).collect()
        if bad:
            raise JobProblem(
                "input",
                f"{where}row {bad[0]['__row'] + 1}: rating column `{rating}` holds "
                f"{bad[0][rating]!r}, not a number",
            )
        if time_column is not None:
            frame = with_time(frame, frame.columns[3])
        kept = [user, item, "__rating", "__row"] + (["__time"] if time_column else [])
        return dedupe(frame.select(*[quoted(c) for c in kept]), plan["input"]["dedupe"], user, item)

    frame = ratings(frame, "")
    if test is None:
        frame = with_split(frame, plan, user)
    else:
        test = ratings(test, "[input.test]: ")
        frame = frame.withColumn("__test", F.lit(False)).unionByName(
            test.withColumn("__test", F.lit(True))
        )
    as_text = frame.withColumn(user, F.col(quoted(user)).cast("string")).withColumn(
        item, F.col(quoted(item)).cast("string")
    )
    indexers = StringIndexer(
        inputCols=[user, item], outputCols=["__user", "__item"], stringOrderType="alphabetAsc"
    ).fit(as_text)
    indexed = indexers.transform(as_text)
    indexed = indexed.select(
        F.col("__user").cast("int").alias("__user"),
        F.col("__item").cast("int").alias("__item"),
        "__rating",
        "__test",
    )
    indexed = indexed.cache()
    train, test = train_and_test(indexed, counts, "train", "test")
    result["timings_s"]["ingest"] = time.time() - started

    started = time.time()
    als = estimator(plan, userCol="__user", itemCol="__item", ratingCol="__rating")
    model = als.fit(train)
    # Force the factors: fit is lazy about nothing, but the save below should not be timed.
    model.userFactors.count()
    result["timings_s"]["fit"] = time.time() - started

    started = time.time()
    model.write().overwrite().save(plan["output"]["model_dir"])
    rank = model.rank
    labels = indexers.labelsArray
    for role, ids in (("users", labels[0]), ("items", labels[1])):
        kind = kinds["user" if role == "users" else "item"]
        values = [int(v) for v in ids] if kind == "integer" else list(ids)
        with open(os.path.join(exchange, f"{role}.json"), "w") as out:
            json.dump({"kind": kind, "ids": values}, out)
    record = struct.Struct(f"<I{rank}f")
    for name, factors in (("user", model.userFactors), ("item", model.itemFactors)):
        write_records(
            os.path.join(exchange, f"{name}_factors.bin"),
            factors.toLocalIterator(),
            lambda row: record.pack(row["id"], *row["features"]),
        )
    triple = struct.Struct("<IIf")
    for name, part in (("train", train), ("test", test)):
        write_records(
            os.path.join(exchange, f"{name}.bin"),
            part.select("__user", "__item", "__rating").toLocalIterator(),
            lambda row: triple.pack(row[0], row[1], row[2]),
        )
    result["rank"] = rank
    result["timings_s"]["export"] = time.time() - started

    predictions = None
    if not plan["params"].get("implicitPrefs") and counts["test"] > 0:
        predictions = model.transform(test).filter(~F.isnan("prediction"))
    # Every test row may be a cold start (a time split's later items); Spark's evaluator
    # refuses an empty frame.
    if predictions is not None and predictions.limit(1).count() > 0:
        evaluator = RegressionEvaluator(labelCol="__rating", predictionCol="prediction")
        result["spark_evaluator"] = {
            "rmse": evaluator.setMetricName("rmse").evaluate(predictions),
            "mae": evaluator.setMetricName("mae").evaluate(predictions),
        }
    result["counts"] = counts
    indexed.unpersist()


def export_trees(spark, model_dir, exchange):
    """trees.json: every node of the saved ensemble, as Spark's own model files hold it (id,
    prediction, impurity stats, gain, count, children, split feature, threshold or left
    categories, category count), and the tree weights; submit converts it to its model so that
    predict jobs can score the version. String and categorical features are not exported: their
    indices follow Spark's indexers, which submit does not reproduce."""
    def number(value):
        return float(value) if value is not None and math.isfinite(value) else None

    nodes = spark.read.parquet(os.path.join(model_dir, "data")).select(
        "treeID",
        "nodeData.id",
        "nodeData.prediction",
        "nodeData.impurityStats",
        "nodeData.gain",
        "nodeData.rawCount",
        "nodeData.leftChild",
        "nodeData.rightChild",
        "nodeData.split.featureIndex",
        "nodeData.split.leftCategoriesOrThreshold",
        "nodeData.split.numCategories",
    )
    trees = {}
    for row in nodes.toLocalIterator():
        trees.setdefault(row[0], []).append(
            [
                row[1],
                number(row[2]),
                [number(value) for value in (row[3] or [])],
                number(row[4]),
                row[5],
                row[6],
                row[7],
                row[8],
                [number(value) for value in (row[9] or [])],
                row[10],
            ]
        )
    # treesMetadata: (tree id, tree metadata JSON, weight), stored as unnamed columns.
    weights = {
        row[0]: float(row[2])
        for row in spark.read.parquet(os.path.join(model_dir, "treesMetadata")).collect()
    }
    order = sorted(trees)
    with open(os.path.join(exchange, "trees.json"), "w") as out:
        json.dump(
            {
                "weights": [weights.get(tree, 1.0) for tree in order],
                "trees": [sorted(trees[tree], key=lambda node: node[0]) for tree in order],
            },
            out,
            allow_nan=False,
        )


def run_trees(spark, plan, exchange, result):
    from pyspark.ml import Pipeline
    from pyspark.ml.evaluation import (
        BinaryClassificationEvaluator,
        MulticlassClassificationEvaluator,
        RegressionEvaluator,
    )
    from pyspark.ml.feature import StringIndexer, VectorAssembler, VectorIndexer
    from pyspark.sql import functions as F

    table = plan["input"]["table"]
    libsvm = plan["input"]["format"] == "libsvm"
    classification = plan["task"] == "classification"

    time_column = plan["split"]["column"]

    def used(frame, path):
        if libsvm:
            return ["label", "features"]
        label = column_name(frame, table["label"], path)
        roles = [
            column_name(frame, table[role], path) if table[role] else None
            for role in ("validation", "weight")
        ]
        roles.append(column_name(frame, time_column, path) if time_column else None)
        if table["features"] is not None:
            features = [column_name(frame, {"name": name}, path) for name in table["features"]]
        else:
            features = [c for c in frame.columns if c != label and c not in roles]
        return [label] + [name for name in roles if name] + features

    started = time.time()
    # Missing feature values: the native engine sends them left at every split; Spark's trees
    # have no such rule, so a missing value is an error here whatever the null policy says.
    frame, test, counts, test_counts = read_sources(spark, plan, used)
    # Tree jobs count the test source apart, as natively.
    if test_counts:
        counts["test_rows_read"] = test_counts["rows_read"]
        counts["test_rows_dropped_null"] = test_counts["rows_dropped_null"]
    if test is not None:
        frame = frame.withColumn("__test", F.lit(False)).unionByName(
            test.withColumn("__test", F.lit(True))
        )
    names = [c for c in frame.columns if c not in ("__row", "__test")]
    label, rest = names[0], names[1:]
    validation = weight = None
    if table["validation"] and not libsvm:
        validation, rest = rest[0], rest[1:]
    if table["weight"]:
        weight, rest = rest[0], rest[1:]
    if time_column:
        frame = with_time(frame, rest[0])
        rest = rest[1:]
    features = rest
    if weight:
        frame = frame.withColumn("__weight", F.col(quoted(weight)).cast("double"))
        bad = first_row_where(
            frame,
            F.col("__weight").isNull()
            | ~(F.col("__weight") < F.lit(math.inf))
            | (F.col("__weight") < 0),
        )
        if bad:
            raise JobProblem(
                "input",
                "the weight column (input.columns.weight) must hold finite numbers of at least "
                f"0; row {bad['__row'] + 1} has {bad[weight]!r}",
            )
        # Over the input's rows (the test source's are not the training table), as natively.
        inputs = frame.filter(~F.col("__test")) if test is not None else frame
        total, zero = inputs.agg(
            F.sum("__weight"), F.sum((F.col("__weight") == 0).cast("long"))
        ).first()
        counts["weight_total"] = float(total or 0.0)
        counts["rows_zero_weight"] = int(zero or 0)
    stages = []
    label_names = None
    if classification and frame.schema[label].dataType.simpleString() == "string":
        indexer = StringIndexer(inputCol=label, outputCol="__label").fit(frame)
        label_names = list(indexer.labels)
        stages.append(indexer)
    else:
        frame = frame.withColumn("__label", F.col(label).cast("double"))
    if classification and label_names is None:
        bad = (
            frame.filter((F.col("__label") < 0) | (F.col("__label") != F.floor("__label")))
            .limit(1)
            .collect()
        )
        if bad:
            raise JobProblem(
                "input",
                f"row {bad[0]['__row'] + 1}: label {bad[0][label]!r} is not a class index "
                "(0, 1, 2, ...) or a string",
            )
    categorical_features = False
    if libsvm:
        vector = "features"
        feature_names = None
    else:
        assembled = []
        for name in features:
            kind = frame.schema[name].dataType.simpleString()
            # Spark's CSV reader makes dates of what the native reader keeps as text (a
            # categorical feature there); here too.
            textual = kind in ("string", "date") or kind.startswith("timestamp")
            if textual or name in table["categorical"]:
                categorical_features = True
                indexed_name = f"__index_{name}"
                frame = frame.withColumn(name, F.col(name).cast("string"))
                stages.append(
                    StringIndexer(inputCol=name, outputCol=indexed_name, handleInvalid="keep")
                )
                assembled.append(indexed_name)
            else:
                frame = frame.withColumn(name, F.col(name).cast("double"))
                assembled.append(name)
        stages.append(VectorAssembler(inputCols=assembled, outputCol="__features"))
        vector = "__features"
        feature_names = features
    max_categories = plan["params"].get("VectorIndexer.maxCategories", 0)
    if max_categories:
        stages.append(
            VectorIndexer(inputCol=vector, outputCol="__indexed", maxCategories=max_categories)
        )
        vector = "__indexed"
    if validation:
        frame = frame.withColumn(validation, F.col(validation).cast("boolean"))
    if test is None:
        frame = with_split(frame, plan)
    frame = frame.cache()
    if stages:
        fitted = Pipeline(stages=stages).fit(frame)
        max_bins = plan["params"].get("maxBins")
        for stage in fitted.stages:
            if max_bins and hasattr(stage, "labels") and stage.getOutputCol() != "__label":
                categories = len(stage.labels) + 1
                if categories > max_bins:
                    raise JobProblem(
                        "config",
                        f"feature `{stage.getInputCol()}` has {categories} categories (unseen "
                        f"included) and Spark needs model.max_bins = {max_bins} to be at least "
                        "that; raise max_bins or run with --engine native (one bin per category)",
                    )
        prepared = fitted.transform(frame)
    else:
        prepared = frame
    if classification and plan["estimator"].endswith("GBTClassifier"):
        top = int(prepared.agg(F.max("__label")).collect()[0][0] or 0)
        classes = max(top, len(label_names or []) - 1) + 1
        if classes > 2:
            raise JobProblem(
                "config",
                f"model.algorithm = \"gbt\": the label has {classes} classes, and Spark's "
                "GBTClassifier is binary; run the job with --engine native (softmax boosting) "
                "or use algorithm = \"random_forest\"",
            )
    train, test = train_and_test(prepared, counts, "train_rows", "test_rows")
    result["timings_s"]["ingest"] = time.time() - started

    started = time.time()
    extra = {"featuresCol": vector, "labelCol": "__label"}
    if validation:
        extra["validationIndicatorCol"] = validation
    if weight:
        # Rows of weight 0 are left out of training, as natively (they still count as rows).
        extra["weightCol"] = "__weight"
        train = train.filter(F.col("__weight") > 0)
    model = estimator(plan, **extra).fit(train)
    result["timings_s"]["fit"] = time.time() - started

    started = time.time()
    model.write().overwrite().save(plan["output"]["model_dir"])
    if not categorical_features:
        export_trees(spark, plan["output"]["model_dir"], exchange)
    predictions = model.transform(test)
    # Per test row: the label, its weight when the job has a weight column, then the
    # probabilities (classification) or the prediction.
    leading = ["__label"] + (["__weight"] if weight else [])
    if classification:
        classes = int(
            max(
                prepared.agg(F.max("__label")).collect()[0][0] or 0,
                len(label_names or []) - 1,
            )
        ) + 1
        row_format = struct.Struct(f"<{len(leading)}d{classes}d")

        def pack(row):
            probability = list(row["probability"])
            probability += [0.0] * (classes - len(probability))
            return row_format.pack(*[row[c] for c in leading], *probability[:classes])

        columns = leading + ["probability"]
    else:
        classes = 1
        row_format = struct.Struct(f"<{len(leading)}dd")

        def pack(row):
            return row_format.pack(*[row[c] for c in leading], row["prediction"])

        columns = leading + ["prediction"]
    write_records(
        os.path.join(exchange, "predictions.bin"),
        predictions.select(*columns).toLocalIterator(),
        pack,
    )
    result["weighted"] = bool(weight)
    result["timings_s"]["export"] = time.time() - started
    width = model.numFeatures
    result["classes"] = classes
    result["label_names"] = label_names
    result["feature_names"] = feature_names or [f"f{i + 1}" for i in range(width)]
    result["feature_importances"] = [float(v) for v in model.featureImportances.toArray()]
    result["trees"] = {
        "kept": len(model.trees),
        "grown": len(model.trees),
        "max_depth_reached": max((tree.depth for tree in model.trees), default=0),
        "nodes": model.totalNumNodes,
    }
    if counts["test_rows"] > 0:
        weighted = {"weightCol": "__weight"} if weight else {}
        if classification:
            accuracy = MulticlassClassificationEvaluator(
                labelCol="__label", metricName="accuracy", **weighted
            ).evaluate(predictions)
            result["spark_evaluator"] = {"accuracy": accuracy}
            if classes == 2:
                result["spark_evaluator"]["auc_roc"] = BinaryClassificationEvaluator(
                    labelCol="__label", metricName="areaUnderROC", **weighted
                ).evaluate(predictions)
        else:
            result["spark_evaluator"] = {
                "rmse": RegressionEvaluator(
                    labelCol="__label", metricName="rmse", **weighted
                ).evaluate(predictions)
            }
    counts["features"] = width
    result["counts"] = counts
    frame.unpersist()


def main():
    if len(sys.argv) != 2:
        print("usage: spark_app.py PLAN.json (written by submit --engine spark)", file=sys.stderr)
        return 2
    with open(sys.argv[1]) as plan_file:
        plan = json.load(plan_file)
    exchange = plan["output"]["exchange_dir"]
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName(plan["job"]).getOrCreate()
    # The split hash multiplies 64-bit integers and relies on wrap-around.
    spark.conf.set("spark.sql.ansi.enabled", "false")
    # Dates and times without a zone are UTC, as the native engine reads them.
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    result = {"spark_version": spark.version, "timings_s": {}}
    try:
        if plan["algorithm"] == "als":
            run_als(spark, plan, exchange, result)
        else:
            run_trees(spark, plan, exchange, result)
    except JobProblem as problem:
        with open(os.path.join(exchange, "error.json"), "w") as out:
            json.dump({"kind": problem.kind, "message": str(problem)}, out)
        print(f"submit spark app: {problem.kind} error: {problem}", file=sys.stderr)
        spark.stop()
        return 3
    with open(os.path.join(exchange, "result.json.tmp"), "w") as out:
        json.dump(result, out)
    os.replace(os.path.join(exchange, "result.json.tmp"), os.path.join(exchange, "result.json"))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

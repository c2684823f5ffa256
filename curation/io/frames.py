"""Dataframe helpers that work on pandas and on cuDF partitions alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import xxhash
from taskseed.curation.errors import TaskseedError
from taskseed.curation.io.arrow import RECORD_SCHEMA

BACKENDS = ("pandas", "cudf")


def set_backend(backend: str) -> None:
    """Select the Dask dataframe backend: pandas on CPU, cuDF on dask-cuda GPU workers."""
    import dask

    if backend not in BACKENDS:
        raise TaskseedError(f"unknown dataframe backend '{backend}'")
    if backend == "cudf":
        try:
            import cudf  # noqa: F401
            import dask_cudf  # noqa: F401
        except ImportError:
            raise TaskseedError(
                "the cudf backend needs the GPU extra: pip install 'taskseed[gpu]'"
            ) from None
    dask.config.set({"dataframe.backend": backend})


def read_records(files: list[Path]) -> Any:
    """A Dask dataframe over record shards, one partition per file."""
    import dask.dataframe as dd

    return dd.read_parquet([str(f) for f in files], split_row_groups=False)


# cuDF's `\w` and `\s` hold only code points up to U+FFFF (libcudf, "Unicode Limitations"),
# so a character above it (mathematical letters, emoji) is never a word character there and
# becomes a space; the pandas pattern says so explicitly, and both backends give the same text.
NON_WORD = {"cudf": r"[^\w\s]", "pandas": r"[^\w\s]|[\U00010000-\U0010FFFF]"}


def normalized_text(series: Any) -> Any:
    """Lowercase, strip punctuation and collapse whitespace (pandas and cuDF string API): the
    same text on both backends, also for characters above U+FFFF."""
    backend = "cudf" if hasattr(series, "to_pandas") else "pandas"
    out = series.fillna("").str.lower()
    out = out.str.replace(NON_WORD[backend], " ", regex=True)
    return out.str.replace(r"\s+", " ", regex=True).str.strip()


def hash_strings(series: Any) -> Any:
    """xxhash64 (seed 0) of each string's UTF-8 bytes: the same uint64 on either backend."""
    if hasattr(series, "hash_values"):  # cuDF: one column hashed with XXHash_64{seed}
        return series.hash_values(method="xxhash64", seed=0)
    return series.map(lambda text: xxhash.xxh64_intdigest(text.encode("utf-8"))).astype("uint64")


def to_arrow_records(frame: Any) -> pa.Table:
    """A pandas or cuDF partition of records as an Arrow table with the record schema."""
    if hasattr(frame, "to_arrow"):  # cuDF
        return frame.to_arrow().select(RECORD_SCHEMA.names).cast(RECORD_SCHEMA)
    columns = frame[RECORD_SCHEMA.names]
    return pa.Table.from_pandas(columns, schema=RECORD_SCHEMA, preserve_index=False)

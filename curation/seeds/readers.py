"""Reading the rows of a split from local files or from the Hugging Face hub.

A malformed row comes out as a `RowError` in its place (the rest of the file still
loads); a missing or unreadable file, or a file that is not what its suffix says, is a
one-line `TaskseedError`.
"""

from __future__ import annotations

import ast
import csv
import functools
import glob
import gzip
import io
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from taskseed.curation.errors import RowError, TaskseedError
from taskseed.curation.seeds.parsers import Mapping
from taskseed.curation.seeds.parsers.base import RowFilter, get_path
from taskseed.curation.seeds.parsers.jinja import import_function
from taskseed.curation.seeds.taskspec import HubSource, SplitSpec

MAX_ROW_BYTES = 1_000_000
PARQUET_BATCH_ROWS = 4096
BOM = b"\xef\xbb\xbf"
COMPRESSED = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
READERS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
           ".tsv": "tsv", ".parquet": "parquet"}

Row = dict[str, Any] | RowError


@contextmanager
def open_seed_file(path: Path) -> Iterator[IO[bytes]]:
    """A seed file as a binary stream, decompressed when it ends in .gz or .zst."""
    try:
        raw = path.open("rb")
    except FileNotFoundError:
        raise TaskseedError(f"{path}: seed file not found") from None
    except IsADirectoryError:
        raise TaskseedError(f"{path}: is a directory, not a seed file") from None
    except OSError as exc:
        raise TaskseedError(f"{path}: cannot read: {exc.strerror}") from None
    with raw:
        codec = COMPRESSED.get(path.suffix.lower())
        if codec == "gzip":
            with gzip.GzipFile(fileobj=raw) as stream:
                yield stream
        elif codec == "zstd":
            import zstandard

            with zstandard.ZstdDecompressor().stream_reader(raw) as stream:
                yield io.BufferedReader(stream)  # line iteration and seekless reads
        else:
            yield raw


def reader_kind(path: Path) -> str:
    """The reader a file's suffix names (`train.jsonl.gz` -> jsonl), or ''."""
    name = path.name.lower()
    for suffix in COMPRESSED:
        name = name.removesuffix(suffix)
    return READERS.get(Path(name).suffix, "")


def _stream_errors(path: Path, rows: Iterator[Row]) -> Iterator[Row]:
    """Rows up to a broken stream (a truncated or corrupt file), then one RowError."""
    try:
        yield from rows
    except TaskseedError:
        raise
    except (OSError, EOFError, ValueError) as exc:
        yield RowError("unreadable", "file", f"{path.name} breaks off: {exc}")
    except Exception as exc:  # noqa: BLE001 - decompressors raise their own error types
        yield RowError("unreadable", "file", f"{path.name} breaks off: {type(exc).__name__}")


def _decode(line: bytes) -> Row:
    if len(line) > MAX_ROW_BYTES:
        return RowError("oversized", "row", f"{len(line)} bytes over the {MAX_ROW_BYTES} limit")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RowError("invalid_utf8", "row", f"invalid UTF-8 at byte {exc.start}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return RowError("invalid_json", "row", exc.msg)
    if not isinstance(value, dict):
        return RowError("wrong_type", "row", "a row must be a JSON object")
    return value


def iter_jsonl(path: Path) -> Iterator[Row]:
    """Rows of a JSON-lines file, streamed; a bad line becomes a RowError, the rest still load."""
    with open_seed_file(path) as stream:
        first = True
        for line in stream:
            if first:
                line, first = line.removeprefix(BOM), False
            if line.strip():
                yield _decode(line.rstrip(b"\r\n"))


def iter_json_array(path: Path) -> Iterator[Row]:
    """Rows of a file holding one JSON array of objects (read whole: JSON arrays are)."""
    with open_seed_file(path) as stream:
        raw = stream.read()
    try:
        data = json.loads(raw.removeprefix(BOM).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise TaskseedError(f"{path}: invalid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise TaskseedError(f"{path}: not a JSON array: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, list):
        raise TaskseedError(f"{path}: expected a JSON array of rows")
    for value in data:
        if not isinstance(value, dict):
            yield RowError("wrong_type", "row", "a row must be a JSON object")
        elif len(json.dumps(value, ensure_ascii=False)) > MAX_ROW_BYTES:
            yield RowError("oversized", "row", f"row over the {MAX_ROW_BYTES} byte limit")
        else:
            yield value


def _utf8_error(values: Iterable[str]) -> RowError | None:
    for value in values:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return RowError("invalid_utf8", "row", "invalid UTF-8 bytes")
    return None


def _text_stream(stream: IO[bytes]) -> io.TextIOWrapper:
    return io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")


def iter_csv(path: Path, delimiter: str = ",") -> Iterator[Row]:
    """Rows of a delimited file with a header row, streamed; a row with the wrong column
    count is a RowError."""
    csv.field_size_limit(max(csv.field_size_limit(), MAX_ROW_BYTES + 1))
    with open_seed_file(path) as stream:
        reader = csv.reader(_text_stream(stream), delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield RowError("invalid_csv", "row", str(exc))
                continue
            if not any(c.strip() for c in cells):
                continue
            if sum(len(c) for c in cells) > MAX_ROW_BYTES:
                yield RowError("oversized", "row", f"row over the {MAX_ROW_BYTES} byte limit")
            elif len(cells) != len(header):
                yield RowError(
                    "wrong_type", "row", f"{len(cells)} columns, the header has {len(header)}"
                )
            else:
                yield _utf8_error(cells) or dict(zip(header, cells, strict=True))


def iter_parquet(path: Path) -> Iterator[Row]:
    """Rows of a Parquet file (the hub's export format), streamed by record batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open_seed_file(path) as stream:
        try:
            parquet = pq.ParquetFile(stream)
        except (pa.ArrowException, OSError) as exc:
            raise TaskseedError(f"{path}: not a Parquet file: {exc}") from None
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            yield from batch.to_pylist()


def iter_blocks(path: Path, lines: list[str]) -> Iterator[Row]:
    """Rows of a text file of blank-line separated blocks, one named field per line."""
    with open_seed_file(path) as stream:
        block: list[str] = []
        for line in [*_text_stream(stream), ""]:
            if line.strip():
                block.append(line.strip())
                continue
            if block:
                yield _block_row(block, lines)
                block = []


def _block_row(block: list[str], names: list[str]) -> Row:
    if len(block) != len(names):
        return RowError("bad_block", "row", f"{len(block)} lines, expected {len(names)}")
    error = _utf8_error(block)
    if error is not None:
        return error
    repeated = {n for n in names if names.count(n) > 1}
    row: dict[str, Any] = {n: [] for n in repeated}
    for name, line in zip(names, block, strict=True):
        if name in repeated:
            row[name].append(line)
        else:
            row[name] = line
    return row


def iter_labels(path: Path) -> list[str]:
    """The lines of a line-aligned label file (`*.lst`), blank trailing lines dropped."""
    with open_seed_file(path) as stream:
        text = stream.read().removeprefix(BOM).decode("utf-8", errors="replace")
    labels = text.replace("\r\n", "\n").split("\n")
    while labels and not labels[-1].strip():
        labels.pop()
    return [label.strip() for label in labels]


def iter_file(path: Path, split: SplitSpec | None = None) -> Iterator[Row]:
    """Rows of one seed file, in the format named by the split's `reader` or the suffix."""
    kind = split.reader if split is not None else "auto"
    if kind == "auto":
        kind = reader_kind(path)
    if kind == "jsonl":
        rows = iter_jsonl(path)
    elif kind == "json":
        rows = iter_json_array(path)
    elif kind in ("csv", "tsv"):
        default = "\t" if kind == "tsv" else ","
        rows = iter_csv(path, (split.delimiter if split else None) or default)
    elif kind == "parquet":
        rows = iter_parquet(path)
    elif kind == "blocks" and split is not None:
        rows = iter_blocks(path, split.block_lines)
    else:
        raise TaskseedError(f"{path}: unsupported seed file type '{path.suffix}'")
    return _stream_errors(path, rows)


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint answers a TCP connection (once per process)."""
    import os
    import socket
    from urllib.parse import urlsplit

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    url = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443),
                                 timeout=timeout_s).close()
    except OSError:
        return False
    return True


def _go_offline(datasets: Any) -> None:
    """Make `datasets` read only its local cache (no retries against an unreachable hub)."""
    import huggingface_hub.constants

    datasets.config.HF_HUB_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True


def iter_hub(hub: HubSource) -> Iterator[Row]:
    """Rows of a hub split via `datasets.load_dataset` (needs network or a local cache; with
    no route to the hub only the cache is read)."""
    try:
        import datasets
    except ImportError:
        raise TaskseedError("loading from the hub needs the `datasets` package") from None
    offline = not Path(hub.path).exists() and not hub_reachable()
    if offline:
        _go_offline(datasets)
    try:
        ds = datasets.load_dataset(hub.path, hub.name, split=hub.split, revision=hub.revision)
    except Exception as exc:  # noqa: BLE001 - any loader failure is one line for the user
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if offline:
            first = "the hub cannot be reached and the local cache does not hold it"
        raise TaskseedError(f"hub dataset {hub.path}/{hub.name or ''}: {first}") from None
    yield from ds


def expand_files(split: SplitSpec, seeds_root: Path) -> list[tuple[Path, Path | None]]:
    """(data file, label file or None) pairs of a split, glob patterns expanded in order."""
    out: list[tuple[Path, Path | None]] = []
    for i, name in enumerate(split.files):
        labels = seeds_root / split.label_files[i] if split.label_files else None
        if glob.has_magic(name):
            matches = sorted(glob.glob(str(seeds_root / name)))
            if not matches:
                raise TaskseedError(f"{seeds_root / name}: no seed file matches this pattern")
            out.extend((Path(m), labels) for m in matches)
        else:
            out.append((seeds_root / name, labels))
    return out


def _with_labels(rows: Iterator[Row], labels_path: Path, field: str) -> Iterator[Row]:
    labels = iter_labels(labels_path)
    n = 0
    for n, row in enumerate(rows, start=1):
        if n > len(labels):
            yield RowError("missing_label", field, f"no line {n} in {labels_path.name}")
        elif isinstance(row, RowError):
            yield row
        else:
            yield {**row, field: labels[n - 1]}
    if len(labels) > n:
        yield RowError(
            "extra_labels", field, f"{labels_path.name} has {len(labels) - n} lines beyond the rows"
        )


def _keep(row: dict[str, Any], where: RowFilter) -> bool | RowError:
    try:
        value = get_path(row, where.field)
    except RowError as err:
        return err
    if where.values is not None:
        return value in where.values or str(value) in {str(v) for v in where.values}
    try:
        number = float(value)
    except (TypeError, ValueError):
        return RowError("wrong_type", where.field, f"expected a number, got {value!r}")
    return (where.min is None or number >= where.min) and (
        where.max is None or number <= where.max
    )


def _decode_nested(value: Any, field: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise RowError("wrong_type", field, "expected a list (or its JSON/Python text)") from None


def explode_row(row: dict[str, Any], fields: list[str]) -> list[Row]:
    """One row per item of the parallel lists in `fields`."""
    try:
        lists = [_decode_nested(row.get(f), f) for f in fields]
    except RowError as err:
        return [err]
    for name, value in zip(fields, lists, strict=True):
        if not isinstance(value, list):
            return [RowError("missing_field" if value is None else "wrong_type", name,
                             "expected a list to explode")]
    if len({len(v) for v in lists}) > 1:
        return [RowError("wrong_type", fields[0], "parallel lists differ in length")]
    return [
        {**row, **dict(zip(fields, items, strict=True))}
        for items in zip(*lists, strict=True)
    ]


def apply_mapping_rows(rows: Iterable[Row], mapping: Mapping) -> Iterator[tuple[int, Row]]:
    """Apply a mapping's row-level steps (`where`, `explode`); yield (row index, row).

    Without `explode`, the index is the row's position in its source; with it, the
    position of the exploded item.
    """
    out = 0
    for index, row in enumerate(rows):
        if not isinstance(row, RowError) and mapping.where is not None:
            keep = _keep(row, mapping.where)
            if keep is False:
                continue
            if isinstance(keep, RowError):
                row = keep
        if mapping.explode and not isinstance(row, RowError):
            for item in explode_row(row, mapping.explode):
                yield out, item
                out += 1
        elif mapping.explode:
            yield out, row
            out += 1
        else:
            yield index, row


def iter_split(split: SplitSpec, seeds_root: Path) -> Iterator[tuple[str, int, Row]]:
    """Yield (path, row index, row) for every row of a split: its files, else its hub source."""
    for path, labels in expand_files(split, seeds_root):
        rows = iter_file(path, split)
        if labels is not None:
            rows = _with_labels(rows, labels, split.label_field)
        for index, row in apply_mapping_rows(rows, split.mapping):
            yield str(path), index, row
    if split.hub is not None and not split.files:
        label = f"hub:{split.hub.path}/{split.hub.name or ''}:{split.hub.split}"
        rows: Iterable[Row] = iter_hub(split.hub)
        if split.mapping.process_docs:
            rows = _process_docs(rows, split.mapping.process_docs)
        for index, row in apply_mapping_rows(rows, split.mapping):
            yield label, index, row


def _process_docs(rows: Iterable[Row], ref: str) -> Iterable[Row]:
    """Apply an lm-eval style `process_docs(Dataset) -> Dataset` to a split's rows."""
    import datasets

    try:
        fn = import_function(ref)
    except RowError as err:
        raise TaskseedError(f"process_docs {ref}: {err}") from None
    dataset = datasets.Dataset.from_list([r for r in rows if not isinstance(r, RowError)])
    return iter(fn(dataset))

"""Data problems named by row and column, before anything trains on them.

- `check_imagefolder_metadata`: an imagefolder's ``metadata.jsonl`` is read line by line before `datasets` parses it,
  so a line that is not JSON, or a caption that is missing, None, a number or another non-text value, is a
  ValueError naming the file, the line, the `file_name` and the column. (Left to `datasets`, a caption of another
  type than the first row's is an `ArrowInvalid: JSON parse error` from deep inside arrow, and None captions load
  and fail later, in the middle of training.)
- `check_caption_column`: any loaded data set (save_to_disk folder, Hub, in memory): the caption column must hold
  strings, or non-empty lists of strings; the first row that does not is named.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def _caption_problem(value) -> str | None:
    if isinstance(value, str):
        return None
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return None
    if isinstance(value, list):
        return "an empty list" if not value else f"a list holding {type(next(v for v in value if not isinstance(v, str))).__name__}"
    return "missing (None)" if value is None else f"not text: {type(value).__name__} {value!r:.40}"


def _json_kind(value) -> str | None:
    """The JSON type arrow infers a column from (None fits any)."""
    if value is None:
        return None
    for kind, types in (("boolean", bool), ("number", (int, float)), ("string", str), ("array", list), ("object", dict)):
        if isinstance(value, types):
            return kind
    return type(value).__name__


def _check_column_kinds(metadata: Path, number: int, row: dict, kinds: dict) -> None:
    """Arrow needs one JSON type per column; the first line that changes a column's type is named."""
    article = lambda kind: f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"  # noqa: E731
    for column, value in row.items():
        kind = _json_kind(value)
        if kind is None:
            continue
        first_kind, first_line = kinds.setdefault(column, (kind, number))
        if first_kind != kind:
            raise ValueError(
                f"{metadata} line {number} (file_name {row.get('file_name')!r}): column {column!r} is {article(kind)} here but "
                f"{article(first_kind)} on line {first_line}; a column must hold one type in every row (e.g. a single caption "
                "as a one-element list when other rows hold lists)."
            )


def check_imagefolder_metadata(folder: str | os.PathLike, caption_column: str | None) -> None:
    """Every line of every ``metadata.jsonl`` under `folder` is a JSON object whose `caption_column` is text, and
    every column keeps one JSON type (arrow's requirement)."""
    for metadata in sorted(Path(folder).rglob("metadata.jsonl")):
        kinds: dict = {}
        with open(metadata, encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not a JSON error
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as error:
                    raise ValueError(f"{metadata} line {number} is not valid JSON ({error}); fix or remove that line.") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{metadata} line {number} is a JSON {type(row).__name__}, not an object with file_name and captions.")
                _check_caption(metadata, number, row, caption_column)
                _check_column_kinds(metadata, number, row, kinds)


def _check_caption(metadata: Path, number: int, row: dict, caption_column: str | None) -> None:
    problem = None if caption_column is None else _caption_problem(row.get(caption_column))
    if problem is not None:
        raise ValueError(
            f"{metadata} line {number} (file_name {row.get('file_name')!r}): caption column {caption_column!r} is {problem}; "
            f"every row needs a caption string (or a list of strings). Fix the row, or pass the right --caption_column "
            f"(this row has {sorted(row)})."
        )


def check_caption_column(data, caption_column: str, source: str) -> None:
    """The `caption_column` of a `datasets.Dataset` holds strings or non-empty lists of strings in every row."""
    import pyarrow.compute as pc

    column = data.data.column(caption_column)  # arrow: no Python objects for the usual all-string case
    text = (column.type == "string" or column.type == "large_string")
    if text and column.null_count == 0:
        return
    if text:  # only None can be wrong: find it without converting the column
        row = pc.index(pc.is_null(column), True).as_py()
        problems = [(row, "missing (None)")]
    else:
        problems = ((i, _caption_problem(v)) for i, v in enumerate(data[caption_column]))
    for row, problem in problems:
        if problem is not None:
            raise ValueError(
                f"Row {row} of {source}: caption column {caption_column!r} is {problem}; every row needs a caption string "
                "(or a list of strings). Fix the data, filter such rows out (Dataset.filter), or pass the right --caption_column."
            )

"""Tables as files that carry their provenance: CSV with the record in leading ``# `` lines, and
JSON with it under ``"provenance"``; read back by :func:`read_csv` / :func:`read_json`.

Used by the dashboard's *Data & export* controls and by the command line (``neuronviz neurons``,
``evaluate``), so a table from either reads the same way.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import torch

if TYPE_CHECKING:  # pandas (with pyarrow, ~0.4 s) is imported when a table is first built: not at start-up
    import pandas as pd

#: The numbers behind a chart: a table, or a function that builds it (called only when a CSV or
#: JSON is asked for: for large tables).
Data: TypeAlias = "pd.DataFrame | Mapping[str, Any] | Sequence[Mapping[str, Any]]"
LazyData: TypeAlias = "Data | Callable[[], Data]"


def header_lines(name: str, record: Mapping[str, Any]) -> list[str]:
    """The CSV's comment lines (without the leading ``# ``): what it is, then the record."""
    lines = [f"neuronviz export {name}"]
    model = record.get("model") or {}
    if model:
        lines.append(f"model: {model.get('name')} ({model.get('architecture')}) content_hash={model.get('content_hash')}")
    image = record.get("image") or (record.get("dataset") or {}).get("image")
    if image:
        lines.append(f"image: {image.get('name')} shape={image.get('shape')} content_hash={image.get('content_hash')}")
    elif record.get("dataset"):
        data = record["dataset"]
        lines.append(f"images: {data.get('description')} n={data.get('images')} digest={data.get('digest')}")
    for attack in record.get("attacks") or []:
        params = json.dumps(attack.get("params", {}), sort_keys=True, default=str)
        lines.append(f"attack: {attack.get('attack')} params={params} target={attack.get('target')} seed={attack.get('seed')}")
    defences = record.get("defences") or []
    if defences:
        lines.append(
            "defences: "
            + "; ".join(f"{d.get('defence')} {json.dumps(d.get('params', {}), sort_keys=True, default=str)}" for d in defences)
        )
    device = record.get("device") or {}
    versions = record.get("versions") or {}
    lines.append(
        f"device: {device.get('device')}; created: {record.get('created')}; versions: "
        + ", ".join(f"{k}={v}" for k, v in versions.items())
    )
    lines.append("provenance: " + json.dumps(record, sort_keys=True, ensure_ascii=False, default=str))
    return [f"{len(lines) + 1} comment lines (pandas: read_csv(path, skiprows={len(lines) + 1}))", *lines]


def as_frame(data: Data) -> pd.DataFrame:
    """The table behind a chart: a DataFrame as it is, a list of row mappings, a mapping of equal
    columns, or a mapping of scalars (one row per key: ``quantity``, ``value``)."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data.reset_index(drop=True)
    if isinstance(data, Mapping):
        values = list(data.values())
        if values and all(isinstance(v, (list, tuple, np.ndarray)) for v in values):
            return pd.DataFrame({k: list(v) for k, v in data.items()})
        return pd.DataFrame({"quantity": list(data.keys()), "value": [_plain(v) for v in values]})
    return pd.DataFrame([dict(row) for row in data])


def _plain(value: Any) -> Any:
    """A JSON value: numpy and torch scalars as Python numbers, NaN as None, containers as text."""
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return value


def resolve(data: LazyData) -> Data:
    """The table itself (a builder is called)."""
    return data() if callable(data) else data


def csv_text(data: LazyData, name: str, record: Mapping[str, Any]) -> str:
    """The table as CSV with the provenance record in its leading ``# `` lines."""
    frame = as_frame(resolve(data))
    header = "".join(f"# {line}\n" for line in header_lines(name, record))
    return header + frame.to_csv(index=False, lineterminator="\n")


def json_text(data: LazyData, name: str, record: Mapping[str, Any]) -> str:
    """``{"name", "provenance", "columns", "data"}`` as indented JSON (NaN → null)."""
    frame = as_frame(resolve(data))
    rows = [{column: _plain(value) for column, value in row.items()} for row in frame.to_dict(orient="records")]
    document = {"name": name, "provenance": dict(record), "columns": [str(c) for c in frame.columns], "data": rows}
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False, default=str)


def read_csv(text: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A CSV of :func:`csv_text` back as (table, provenance record)."""
    import pandas as pd

    lines = text.splitlines(keepends=True)
    count = 0
    record: dict[str, Any] = {}
    while count < len(lines) and lines[count].startswith("# "):
        if lines[count].startswith("# provenance: "):
            record = json.loads(lines[count][len("# provenance: "):])
        count += 1
    return pd.read_csv(io.StringIO("".join(lines[count:]))), record


def read_json(text: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A JSON of :func:`json_text` back as (table, provenance record)."""
    import pandas as pd

    document = json.loads(text)
    return pd.DataFrame(document["data"], columns=document["columns"]), document["provenance"]

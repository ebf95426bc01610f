"""timm's metadata of the curated models (:data:`timm_source.CURATED`), kept as data.

Listing the curated timm models (every start of the dashboard's Model box) needs their pretrained
config and resolved data config; reading them from timm imports timm, torchvision, ``torch._dynamo``
and, through it, scikit-learn and scipy (8 s on a loaded 2-core machine). The file
``timm_curated.json`` holds timm's own values (JSON round-trip: tuples become lists), written by
:func:`write` and checked against the installed timm by ``tests/test_startup.py``. Any other
timm name is read from timm itself, as before.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

FILE = Path(__file__).with_name("timm_curated.json")


def from_timm(name: str) -> dict[str, Any]:
    """``{"cfg": pretrained_cfg, "data": resolve_data_config(...)}`` of ``name``, from timm itself."""
    import timm

    found = timm.models.get_pretrained_cfg(name, allow_unregistered=True)
    cfg = found.to_dict() if found is not None else {}
    data = timm.data.resolve_data_config(pretrained_cfg=cfg, use_test_size=False)
    return json.loads(json.dumps({"cfg": cfg, "data": data}))


def write(names, path: Path = FILE) -> None:
    """Regenerate the file from the installed timm (after a timm upgrade or a change of CURATED)."""
    path.write_text(json.dumps({name: from_timm(name) for name in names}, indent=1, sort_keys=True) + "\n")


@cache
def _stored() -> dict[str, dict[str, Any]]:
    return json.loads(FILE.read_text()) if FILE.is_file() else {}


def stored(name: str) -> dict[str, Any] | None:
    """The stored ``{"cfg", "data"}`` of a curated name, or None (then ask timm)."""
    return _stored().get(name)

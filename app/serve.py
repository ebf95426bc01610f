"""``python -m app.serve [streamlit run options] [-- dashboard options]``: ``streamlit run app/main.py``
(same options, same server), with the dashboard's heavy imports started in the background first
(:mod:`app.warmup`), so that they run while the first browser is still loading Streamlit's page.

``make run`` and the Docker image start the dashboard this way; ``streamlit run app/main.py``
still works and imports everything in the first page run instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

MAIN = Path(__file__).resolve().parent / "main.py"


def main(argv: list[str] | None = None) -> None:
    # As app/main.py sets it, before torch is first imported (here: by the warm-up thread).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    root = str(MAIN.parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from app import warmup

    warmup.start()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(MAIN), *(sys.argv[1:] if argv is None else argv)]
    cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()

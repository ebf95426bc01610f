"""neuronviz dashboard: ``streamlit run app/main.py`` from the repository root.

Your own models (trusted: they run code): ``streamlit run app/main.py -- --model path/to/model.pt2
--model my_package.models:build --mean 0.5 --std 0.25`` (options follow the ``--model`` they are
for; see docs/models.md), or the environment variable ``NEURONVIZ_MODELS``.

Routes the pages in ``app/app_pages/`` with ``st.navigation``, draws the shared sidebar (model,
device, image, attack) and, above every page, the current choice and any loading errors.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before torch is first imported: OpenMP threads that wait passively. With the default (spinning)
# policy, a second busy process or session on a small machine slowed a 35 ms analysis to 4 s at
# times (measured on 2 cores); passive waiting removes those stalls. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Streamlit puts this file's folder (app/) on sys.path, not the working directory: make the
# repository root importable so that `neuronviz` and `app` resolve without installing anything.
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import streamlit as st  # noqa: E402

# The page frame first, before torch is imported: on a fresh server the first run spends seconds
# importing torch and loading the model, and a page that draws nothing until then is blank.
# Everything down to the page's title needs only Streamlit; the favicon is a local file (an
# ":material/…:" page icon makes the browser fetch an SVG from a font CDN, which fails offline).
st.set_page_config(page_title="neuronviz", page_icon=str(_ROOT / "assets" / "icon.png"), layout="wide")

PAGES = {
    "Analyse": [
        st.Page("app_pages/attack.py", title="Attack", icon=":material/bolt:", default=True),
        st.Page("app_pages/neurons.py", title="Neurons", icon=":material/hub:"),
        st.Page("app_pages/population.py", title="Neurons of a data set", icon=":material/groups:"),
        st.Page("app_pages/filters.py", title="First-layer filters", icon=":material/grid_view:"),
        st.Page("app_pages/sensitivity.py", title="Sensitivity", icon=":material/sensors:"),
        st.Page("app_pages/defences.py", title="Defences", icon=":material/shield:"),
        st.Page("app_pages/figure.py", title="Figure", icon=":material/insert_chart:"),
    ],
    "Evaluate": [
        st.Page("app_pages/batch.py", title="Batch", icon=":material/table_chart:"),
        st.Page("app_pages/model_image.py", title="Model & image", icon=":material/image_search:"),
    ],
    "Learn": [
        st.Page("app_pages/learn.py", title="Guided tour & methods", icon=":material/school:"),
        st.Page("app_pages/about.py", title="About", icon=":material/info:"),
    ],
}
#: Each page's heading (its navigation title where that is too short), drawn here for every page
#: before anything heavy is imported: on a fresh server the title is on screen while torch loads.
HEADINGS = {
    "Sensitivity": "Neuron sensitivity",
    "Batch": "Batch evaluation",
    "Guided tour & methods": "Learn",
    "About": "About neuronviz",
}

page = st.navigation(PAGES)
st.title(HEADINGS.get(page.title, page.title))

from app import warmup  # noqa: E402 - the standard library only

loading = None
# The first run in this server process, or python -m app.serve still importing them: imports ahead
# (a module the warm-up is importing is in sys.modules already, half initialised).
if "app.sidebar" not in sys.modules or warmup.running():
    loading = st.empty()
    with loading.container():
        st.info("Loading torch and the model… (the first visit after the server starts takes a few seconds)", icon=":material/hourglass_top:")
        warmup.preload_chart_library()  # blank, and gone with the note: the browser loads its chart library meanwhile
warmup.wait()  # python -m app.serve imports the heavy modules below in the background: let it finish
from app import boundary, components, sidebar  # noqa: E402
from app import url_state as session  # noqa: E402
from neuronviz.core.models import local_source  # noqa: E402
from neuronviz.infra import plugins  # noqa: E402


def command_line_models() -> list[str]:
    """``streamlit run app/main.py -- --model path.pt2 --model my_pkg.models:build ...``: Streamlit
    hands the words after ``--`` to this script as ``sys.argv[1:]`` (``sys.argv[0]`` is this file;
    under a test runner it is not, and its arguments are left alone). They are the operator's own
    models (neuronviz.core.models.local_source): registered as ``local:<name>`` specs, returned."""
    if not sys.argv or Path(sys.argv[0]).resolve() != Path(__file__).resolve():
        return []
    return local_source.register_argv(sys.argv[1:])


# Methods and model sources from outside the project register themselves on import
# (NEURONVIZ_PLUGINS, entry points): before the sidebar reads any registry.
boundary.guard("The plugins", plugins.load_plugins)
boundary.guard("The --model options", command_line_models)
# The link's settings go into session state before the sidebar draws; the state drawn goes back into the URL.
selection, errors = boundary.guard("The sidebar", session.sync, sidebar.render) or (None, [])
if loading is not None:
    loading.empty()
components.current_choice(selection)
components.messages(errors)
boundary.guard("This page", page.run)

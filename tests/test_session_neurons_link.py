"""Every choice of the Neurons page travels in the link and the session file (issue 21/24 gap): the
Methods box (the analysis' extra restorations and its influence method), the compared condition
(the control and any chosen restoration included), the groups' source, the tail rule, the layer,
the front/tail size and the attribution choices. A link built in one session, opened in a fresh
one, shows the same widgets and the same numbers; so does the session file; a value that cannot be
used is a message naming it, and the page still draws."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apptest import MAIN, assert_healthy, errors, open_page  # noqa: E402

from app import runs as analysis  # noqa: E402

NEURONS = "app_pages/neurons.py"
CHOSEN = {
    analysis.EXTRA_DEFENCES_KEY: ["jpeg"],
    analysis.INFLUENCE_METHOD_KEY: "activation",
    "neurons.layer": "features.3",
    "neurons.tail_rule": "next",
    "neurons.groups": "reference",
    "neurons.after": "jpeg",
}

pytestmark = pytest.mark.slow  # four sessions of the Neurons page with its analysis (about a minute on 2 cores)


def _widgets(at: AppTest) -> dict:
    return {
        analysis.EXTRA_DEFENCES_KEY: list(at.multiselect(key=analysis.EXTRA_DEFENCES_KEY).value),
        analysis.INFLUENCE_METHOD_KEY: at.selectbox(key=analysis.INFLUENCE_METHOD_KEY).value,
        "neurons.layer": at.selectbox(key="neurons.layer").value,
        "neurons.tail_rule": at.radio(key="neurons.tail_rule").value,
        "neurons.groups": at.radio(key="neurons.groups").value,
        "neurons.after": at.radio(key="neurons.after").value,
        "neurons.attribution_method": at.radio(key="neurons.attribution_method").value,
    }


def _numbers(at: AppTest) -> dict:
    """What the page shows as numbers: its metrics, its tables and its sentences."""
    return {
        "metrics": [(m.label, m.value) for m in at.metric],
        "tables": [t.value.to_dict(orient="records") for t in at.dataframe],
        "markdown": [m.value for m in at.main.markdown],
    }


def _choose(at: AppTest) -> AppTest:
    """Set every choice of CHOSEN on the Neurons page (the Methods box first: the compared
    restoration must be computed), and the attribution method."""
    at.multiselect(key=analysis.EXTRA_DEFENCES_KEY).set_value(CHOSEN[analysis.EXTRA_DEFENCES_KEY]).run()
    at.selectbox(key=analysis.INFLUENCE_METHOD_KEY).set_value(CHOSEN[analysis.INFLUENCE_METHOD_KEY]).run()
    for key in ("neurons.layer",):
        at.selectbox(key=key).set_value(CHOSEN[key]).run()
    for key in ("neurons.tail_rule", "neurons.groups", "neurons.after"):
        at.radio(key=key).set_value(CHOSEN[key]).run()
    at.radio(key="neurons.attribution_method").set_value("grad_cam").run()
    assert_healthy(at)
    assert errors(at) == []
    return at


def _fresh(query: dict[str, str], page: str = NEURONS) -> tuple[AppTest, list[str]]:
    """A new session opened on ``query``, then on ``page``; and the link's messages (shown on the
    run that read it)."""
    at = AppTest.from_file(MAIN, default_timeout=240)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert_healthy(at)
    messages = [w.value for w in at.warning]
    at.switch_page(page).run()
    assert_healthy(at)
    return at, messages


def test_a_link_reproduces_every_choice_and_number_of_the_neurons_page():
    built = _choose(open_page(NEURONS))
    shown = _widgets(built)
    assert shown == {**CHOSEN, "neurons.attribution_method": "grad_cam"}
    query = dict(built.query_params)
    for key, value in CHOSEN.items():
        assert query[key] == (",".join(value) if isinstance(value, list) else value), key
    assert query["neurons.attribution_method"] == "grad_cam"
    numbers = _numbers(built)
    assert numbers["metrics"] and numbers["tables"]

    opened, messages = _fresh(query)
    assert messages == [] and [w.value for w in opened.warning] == []  # every value of the link was used
    assert _widgets(opened) == shown
    assert _numbers(opened) == numbers
    assert dict(opened.query_params) == query  # and written back unchanged

    # The session file of the first session opens the same page in another fresh session.
    text = built.session_state["session.record"].to_json()
    from_file = open_page(NEURONS)
    from_file.sidebar.file_uploader(key="session.open").set_value([("s.json", text.encode(), "application/json")]).run()
    assert_healthy(from_file)
    assert _widgets(from_file) == shown
    assert _numbers(from_file) == numbers


def test_a_link_with_values_that_cannot_be_used_says_so_and_draws_the_page():
    opened, messages = _fresh({
        analysis.INFLUENCE_METHOD_KEY: "telepathy",
        analysis.EXTRA_DEFENCES_KEY: "jpeg,nope",
        "neurons.after": "median",  # a restoration the link does not compare
        "neurons.groups": "everywhere",
        "neurons.tail_rule": "next",  # usable: kept
    })
    warnings = " ".join(messages)
    assert "analysis.influence_method='telepathy' was not used" in warnings and "using grad_x_act instead" in warnings
    assert "analysis.extra_defences='jpeg,nope' was not used" in warnings and "'nope' is not one of" in warnings
    assert "neurons.after='median' was not used" in warnings and "analysis.extra_defences" in warnings
    assert "neurons.groups='everywhere' was not used" in warnings and "using clean instead" in warnings
    assert len(messages) == 4
    assert errors(opened) == []
    widgets = _widgets(opened)
    assert widgets[analysis.INFLUENCE_METHOD_KEY] == analysis.DEFAULT_INFLUENCE_METHOD
    assert widgets[analysis.EXTRA_DEFENCES_KEY] == list(analysis.default_extras())
    assert widgets["neurons.after"] == "adversarial" and widgets["neurons.groups"] == "clean"
    assert widgets["neurons.tail_rule"] == "next"


OTHER_PAGES = {
    "population.images_kept": "20",
    "population.layer": "all",
    "population.fraction": "0.3",
    "population.quantity": "influence",
    "sensitivity.top_k": "3",
    "sensitivity.images_kept": "30",
    "filters.images_kept": "20",
    "batch.n": "30",
    "defences.adaptive": "true",
}


def test_the_other_pages_choices_travel_in_the_link_too():
    """The same class of gap on the other pages: image counts, Population's layer/share/view,
    Sensitivity's channels shown and the Defences page's adaptive attacker are read from a link and
    written back."""
    at = AppTest.from_file(MAIN, default_timeout=240)
    for key, value in OTHER_PAGES.items():
        at.query_params[key] = value
    at.run()
    assert_healthy(at)
    assert [w.value for w in at.warning] == []
    assert dict(at.query_params) == OTHER_PAGES
    at.switch_page("app_pages/batch.py").run()
    assert_healthy(at)
    assert at.slider(key="batch.n").value == 30
    at.switch_page("app_pages/population.py").run()
    assert_healthy(at)
    assert at.number_input(key="population.images").value == 20
    assert at.selectbox(key="population.layer").value == "all"
    assert at.slider(key="population.fraction").value == pytest.approx(0.3)
    assert [w.value for w in at.warning] == [] and errors(at) == []
    assert at.session_state["defences.adaptive"] is True
    assert dict(at.query_params) == OTHER_PAGES  # a page's run keeps the others' values
    bad = AppTest.from_file(MAIN, default_timeout=240)
    for key, value in {"sensitivity.top_k": "99", "population.fraction": "0.33", "defences.adaptive": "maybe"}.items():
        bad.query_params[key] = value
    bad.run()
    assert_healthy(bad)
    warnings = " ".join(w.value for w in bad.warning)
    assert "sensitivity.top_k='99' was not used" in warnings and "outside 1..8" in warnings
    assert "population.fraction='0.33' was not used" in warnings and "defences.adaptive='maybe' was not used" in warnings


def test_the_figure_command_renders_a_session_with_its_methods(tmp_path):
    """``neuronviz figure --session`` computes the analysis with the session's Methods (extra
    restorations, influence method), so its numbers are the Figure page's."""
    import argparse

    from neuronviz.cli import figure as figure_cli
    from neuronviz.figures import compose
    from neuronviz.workflows import session_record

    assert (analysis.EXTRA_DEFENCES_KEY, analysis.INFLUENCE_METHOD_KEY) == (
        session_record.EXTRA_DEFENCES_KEY, session_record.INFLUENCE_METHOD_KEY)  # one name in the app and the library
    at = open_page(NEURONS)
    at.multiselect(key=analysis.EXTRA_DEFENCES_KEY).set_value(["jpeg"]).run()
    at.selectbox(key=analysis.INFLUENCE_METHOD_KEY).set_value("activation").run()
    at.switch_page("app_pages/figure.py").run()
    assert_healthy(at)
    [table] = at.dataframe
    page_rows = table.value.to_dict(orient="records")
    path = tmp_path / "session.json"
    path.write_text(at.session_state["session.record"].to_json(), encoding="utf-8")
    parser = argparse.ArgumentParser()
    figure_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["figure", "--session", str(path), "--out", str(tmp_path / "fig.svg")])
    _, _, result, _, _, numbers, _ = figure_cli.build(args)
    assert result.influence_method == "activation" and "jpeg" in result.restorations
    rows = compose.numbers_rows(numbers)
    assert len(rows) == len(page_rows)
    for row, want in zip(page_rows, rows):
        assert (row["section"], row["condition"], row["item"], row["metric"]) == (want["section"], want["condition"], want["item"], want["metric"])
        assert float(row["value"]) == pytest.approx(float(want["value"]), rel=1e-6, abs=1e-9)


def test_the_budget_the_sweep_shows_travels_in_the_link():
    """The Attack page's ε-sweep slider (which budget's image and numbers are shown) is in the link
    when it is not the chosen budget; a budget the sweep does not have is a message."""
    attack_page = "app_pages/attack.py"
    built = open_page(attack_page)
    [slider] = built.select_slider
    chosen = slider.value
    slider.set_value(0.0).run()
    assert_healthy(built)
    query = dict(built.query_params)
    assert query["attack.sweep_eps"] == "0"
    detail = [m.value for m in built.main.markdown if m.value.startswith("At `")]
    assert len(detail) == 1 and "front overlap **100% (95% CI" in detail[0]  # ε = 0: the clean image

    opened, messages = _fresh(query, attack_page)
    assert messages == [] and [w.value for w in opened.warning] == []
    assert opened.select_slider[0].value == 0.0
    assert [m.value for m in opened.main.markdown if m.value.startswith("At `")] == detail
    assert dict(opened.query_params) == query

    odd, messages = _fresh({"attack.sweep_eps": "0.0123"}, attack_page)
    # a number ≥ 0 is read; the Attack page (the first page), which knows the sweep's budgets, judges it, once
    warnings = messages + [w.value for w in odd.warning]
    assert len(warnings) == 1 and "eps = 0.0123 asked for" in warnings[0] and "not one of the sweep's" in warnings[0]
    assert odd.select_slider[0].value == chosen
    assert "attack.sweep_eps" not in dict(odd.query_params)


TINY_VIT = "timm:vit_tiny_patch16_224?img_size=32&patch_size=8&depth=2"  # 3 input channels, random weights


def test_the_filters_pages_input_channel_travels_in_the_link_and_is_checked_against_the_model(monkeypatch, tmp_path):
    """The channel whose weights the filter grid draws is in the link; a channel this first layer does
    not have is a message naming it, and the grid shows the mean."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: random initialisation
    base = {"model": TINY_VIT, "weights": "random", "filters.images_kept": "8"}
    at, _ = _fresh({**base, "filters.input_channel": "2"}, page="app_pages/filters.py")
    assert errors(at) == []
    assert at.selectbox(key="filters.input_channel").value == 2
    assert at.query_params["filters.input_channel"] == "2"
    at.selectbox(key="filters.input_channel").set_value(1).run()
    assert at.query_params["filters.input_channel"] == "1"

    bad, _ = _fresh({**base, "filters.input_channel": "7"}, page="app_pages/filters.py")
    assert errors(bad) == []
    assert any(
        "filters.input_channel=7 was not used (the first layer has 3 input channels, 0 to 2): showing the mean" in w.value
        for w in bad.warning
    ), [w.value for w in bad.warning]
    assert bad.selectbox(key="filters.input_channel").value == "mean"

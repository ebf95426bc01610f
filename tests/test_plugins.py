"""Plugins: modules named in NEURONVIZ_PLUGINS are imported once; a failing one is named."""

from __future__ import annotations

import sys

import pytest

from neuronviz.infra import plugins
from neuronviz.infra.errors import PluginError


def test_named_module_imported_once(tmp_path, monkeypatch):
    (tmp_path / "nv_plugin_counter.py").write_text("import builtins\nbuiltins.nv_plugin_hits = getattr(builtins, 'nv_plugin_hits', 0) + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.ENV, " nv_plugin_counter , ")
    monkeypatch.setattr(plugins, "_loaded", {})
    import builtins

    assert plugins.plugin_modules()[0] == "nv_plugin_counter"
    assert "nv_plugin_counter" in plugins.load_plugins()
    assert "nv_plugin_counter" in plugins.load_plugins()
    assert builtins.nv_plugin_hits == 1
    del builtins.nv_plugin_hits
    sys.modules.pop("nv_plugin_counter", None)


def test_failing_plugin_is_named(tmp_path, monkeypatch):
    (tmp_path / "nv_plugin_broken.py").write_text("raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(plugins.ENV, "nv_plugin_broken")
    monkeypatch.setattr(plugins, "_loaded", {})
    with pytest.raises(PluginError, match="nv_plugin_broken.*RuntimeError: boom"):
        plugins.load_plugins()


def test_cli_reports_a_missing_plugin(monkeypatch, capsys):
    from neuronviz import cli

    monkeypatch.setenv(plugins.ENV, "nv_plugin_that_does_not_exist")
    monkeypatch.setattr(plugins, "_loaded", {})
    assert cli.main(["attacks"]) == 2
    assert "nv_plugin_that_does_not_exist" in capsys.readouterr().err

"""neuronviz.infra.settings: the shared-server switch, the time budget and the caps in force."""

from __future__ import annotations

import tempfile
import tomllib
from pathlib import Path

import pytest

from neuronviz.infra import settings
from neuronviz.infra.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("value,expected", [(None, False), ("", False), ("0", False), ("false", False), ("OFF", False), ("no", False),
                                            ("1", True), ("true", True), ("yes", True), ("on", True), ("ture", True)])
def test_shared_server_switch(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(settings.SHARED_SERVER_ENV, raising=False)
    else:
        monkeypatch.setenv(settings.SHARED_SERVER_ENV, value)
    assert settings.shared_server() is expected  # a typo ("ture") keeps the server locked down


def test_limits_are_lower_on_a_shared_server(monkeypatch):
    monkeypatch.delenv(settings.SHARED_SERVER_ENV, raising=False)
    local = settings.limits()
    monkeypatch.setenv(settings.SHARED_SERVER_ENV, "1")
    shared = settings.limits()
    assert not local.shared_server and shared.shared_server
    assert local.max_upload_bytes == settings.MAX_UPLOAD_BYTES == 200 * 2**20
    for field in ("max_upload_bytes", "max_checkpoint_bytes", "max_checkpoint_parameters", "max_decompressed_bytes", "max_classes", "max_input_side"):
        assert getattr(shared, field) < getattr(local, field), field
    # the caps still admit what they are meant to admit
    assert local.max_checkpoint_parameters > 143_667_240  # vgg19
    assert shared.max_checkpoint_parameters > 25_557_032  # resnet50
    assert local.max_classes > 21_841 and shared.max_classes > 21_841  # ImageNet-21k
    assert local.max_decompressed_bytes >= 4 * local.max_checkpoint_parameters * 1.5
    assert shared.max_decompressed_bytes >= 4 * shared.max_checkpoint_parameters


def test_time_budget(monkeypatch):
    monkeypatch.delenv(settings.TIME_BUDGET_ENV, raising=False)
    monkeypatch.delenv(settings.SHARED_SERVER_ENV, raising=False)
    assert settings.time_budget_s() == 120.0
    monkeypatch.setenv(settings.SHARED_SERVER_ENV, "1")
    assert settings.time_budget_s() == 60.0
    monkeypatch.setenv(settings.TIME_BUDGET_ENV, "15.5")
    assert settings.time_budget_s() == 15.5
    for bad in ("abc", "0", "-3", "nan", "inf"):
        monkeypatch.setenv(settings.TIME_BUDGET_ENV, bad)
        with pytest.raises(InputError, match=rf"NEURONVIZ_TIME_BUDGET_S='{bad}' is not a positive number of seconds"):
            settings.time_budget_s()


def test_upload_paths(tmp_path):
    with tempfile.TemporaryDirectory(prefix=settings.UPLOAD_FOLDER_PREFIX) as folder:
        inside = Path(folder) / "model.safetensors"
        inside.write_bytes(b"x")
        assert settings.is_upload_path(inside)
        nested = Path(folder) / "sub" / "model.pt"
        assert not settings.is_upload_path(nested)  # only files directly in an upload folder
        escape = Path(folder) / ".." / "model.pt"
        assert not settings.is_upload_path(escape)
    assert not settings.is_upload_path(tmp_path / "model.pt")
    assert not settings.is_upload_path("/etc/passwd")
    with tempfile.TemporaryDirectory(prefix="other-") as folder:
        assert not settings.is_upload_path(Path(folder) / "model.pt")


def test_format_bytes():
    assert settings.format_bytes(812) == "812 bytes"
    assert settings.format_bytes(5 * 2**20) == "5.0 MB"
    assert settings.format_bytes(200 * 2**20) == "200 MB"
    assert settings.format_bytes(3 * 2**30) == "3.0 GB"


def test_streamlit_config_states_the_limits():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 2**20 == settings.MAX_UPLOAD_BYTES
    assert 0 < config["server"]["maxMessageSize"] <= 200
    assert config["server"]["headless"] is True and config["server"]["fileWatcherType"] == "none"
    assert config["server"]["enableXsrfProtection"] is True
    assert config["browser"]["gatherUsageStats"] is False


def test_dockerfile_turns_the_shared_server_on_with_matching_upload_cap():
    text = (ROOT / "Dockerfile").read_text()
    assert "NEURONVIZ_SHARED_SERVER=1" in text
    assert f"STREAMLIT_SERVER_MAX_UPLOAD_SIZE={settings.SHARED_MAX_UPLOAD_BYTES // 2**20}" in text


def test_dashboard_upload_still_loads_on_a_shared_server(monkeypatch):
    """The dashboard writes an upload into a neuronviz-upload-* folder: allowed on a shared server."""
    import streamlit as st
    from apptest import open_page

    monkeypatch.setenv(settings.SHARED_SERVER_ENV, "1")
    st.cache_data.clear()
    st.cache_resource.clear()
    try:
        at = open_page("app_pages/model_image.py", timeout=120)
        at.button_group(key="model_source").set_value("Your checkpoint").run()
        data = (ROOT / "assets" / "models" / "digits-resnet.safetensors").read_bytes()
        at.file_uploader(key="checkpoint_upload").upload("my-resnet.safetensors", data, "application/octet-stream")
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert [e.value for e in at.error] == []
        assert any("`my-resnet`" in m.value for m in at.main.markdown)
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()

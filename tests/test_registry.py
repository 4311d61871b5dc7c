"""Finding models: the models directory, model kinds, and errors that name what is wrong."""

from __future__ import annotations

import shutil

import pytest

from vql.errors import ModelError
from vql.udfs.registry import MODEL_KINDS, default_model, load_model, models_dir, resolve_model_path
from vql.udfs.tfjs_detector import CENTERNET_DIR, TfjsDetector


def test_models_dir_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("VQL_MODELS_DIR", str(tmp_path))
    assert models_dir() == tmp_path
    monkeypatch.delenv("VQL_MODELS_DIR")
    assert models_dir().parts[-3:] == (".cache", "vql", "models")


def test_relative_paths_are_found_in_the_models_dir(monkeypatch, tmp_path):
    shutil.copytree(CENTERNET_DIR, tmp_path / "cn")
    monkeypatch.setenv("VQL_MODELS_DIR", str(tmp_path))
    assert resolve_model_path("cn/centernet.json") == tmp_path / "cn" / "centernet.json"
    model = load_model("tfjs", "cn/centernet.json", name="my-centernet")
    assert isinstance(model, TfjsDetector) and model.name == "my-centernet"
    assert model.version == default_model().version  # same weights, same preprocessing


def test_missing_model_names_both_places(monkeypatch, tmp_path):
    monkeypatch.setenv("VQL_MODELS_DIR", str(tmp_path))
    with pytest.raises(ModelError, match=f"model file not found: nope.json \\(looked in the working directory and in {tmp_path}\\)"):
        resolve_model_path("nope.json")


def test_unknown_kind():
    with pytest.raises(ModelError, match="unknown model type 'caffe'; one of: onnx, tfjs, torchvision, ultralytics"):
        load_model("caffe", "x")
    assert set(MODEL_KINDS) == {"onnx", "tfjs", "torchvision", "ultralytics"}


def test_default_model_is_centernet_and_shared():
    assert default_model().name == "centernet"
    assert default_model() is default_model()

"""docs/configuration.md stays what docs/configuration.py makes of conf/**/*.yaml, and names
every key of the composed default config. Fast: no TensorFlow, no training."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from omegaconf import OmegaConf

from rltrain.config import compose_config
from tests.conftest import ROOT


@pytest.fixture
def generator(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """docs/configuration.py as a module (docs/ is no package), registered in sys.modules
    for this test only (its dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location("docs_configuration",
                                                  ROOT / "docs" / "configuration.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def keys(data: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """The dotted keys of a nested mapping's values that are not mappings (``env.kwargs``,
    an empty mapping, is one)."""
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_generated_part_matches_the_yaml_comments(generator: ModuleType) -> None:
    page = generator.PAGE.read_text()
    assert generator.replace(page, generator.render()) == page, (
        "docs/configuration.md differs from the YAML comments: run python docs/configuration.py")


def test_every_key_of_the_default_config_is_on_the_page() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    composed = OmegaConf.to_container(compose_config([]), resolve=False)
    assert isinstance(composed, dict)
    missing = [k for k in keys(composed) if f"`{k}`" not in page]
    assert not missing, f"keys of the default config not in docs/configuration.md: {missing}"

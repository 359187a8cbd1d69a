"""The tiny test config (config/test/tiny.yaml) and its organism section, for every test."""

from pathlib import Path

import yaml

TINY_CONFIG = Path(__file__).resolve().parents[1] / "config" / "test" / "tiny.yaml"
TINY = yaml.safe_load(TINY_CONFIG.read_text())["organism"]

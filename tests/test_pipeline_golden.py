"""Golden IR dumps: the text form after every pass is pinned, so any change to a pass shows up as a diff.

Regenerate after an intended change with ``SNNC_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_pipeline_golden.py``
and review the diff.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from snnc.compiler import pipeline
from snnc.compiler.frontends.load import load_model
from snnc.compiler.hw import bundled_hw

from .conftest import NIR_PAPER, REPO

GOLDEN = Path(__file__).parent / "golden"
CASES = {
    "digits_if-cpu": (REPO / "examples" / "digits_if.nir", "cpu", {}),
    "braille_subtract-cpu": (NIR_PAPER / "braille_noDelay_noBias_subtract.nir", "cpu", {"reset": "subtract"}),
    "lif_norse-loihi2": (NIR_PAPER / "lif_norse.nir", "loihi2", {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_ir_dump_after_every_pass_matches_golden(case, tmp_path):
    model, hw_name, options = CASES[case]
    if not model.exists():
        pytest.skip(f"{model} is not present (../shared is missing)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.compile_graph(load_model(model, **options), bundled_hw(hw_name), dump_dir=tmp_path)
    for dump in sorted(tmp_path.iterdir()):
        text = dump.read_text().replace(str(model), model.name).replace(str(model.parent) + "/", "")
        golden = GOLDEN / case / dump.name
        if os.environ.get("SNNC_UPDATE_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(text)
        assert golden.exists(), f"no golden file {golden}; run with SNNC_UPDATE_GOLDEN=1"
        assert text == golden.read_text(), f"{case}/{dump.name} differs from its golden dump"

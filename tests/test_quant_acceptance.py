"""Issue 4's accuracy bar on the bundled snnTorch digits SNN: 8-bit within 1 point, 4-bit within 3 points.

The numbers come from the artifact's own ``quant_report.json``, so the test also pins that the report
records float and quantized accuracy for both widths.
"""

from __future__ import annotations

import json
import warnings

import pytest

import snnc

from .conftest import REPO

EXAMPLES = REPO / "examples"


@pytest.mark.parametrize("bits, allowed_drop", [(8, 0.01), (4, 0.03)])
def test_digits_snn_keeps_its_accuracy_at_8_and_4_bits(tmp_path, bits, allowed_drop):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        artifact = snnc.compile(EXAMPLES / "digits_snntorch.nir", target="cpu", out_dir=tmp_path / f"w{bits}",
                                stimuli=EXAMPLES / "digits_snntorch_test.npz", weight_bits=bits)
    report = json.loads((artifact.path / "quant_report.json").read_text())
    assert all(p["weight_bits"] == bits for p in report["projections"].values())
    accuracy = report["accuracy"]
    assert accuracy["float"] >= 0.95
    assert accuracy["quantized"] >= accuracy["float"] - allowed_drop, accuracy
    assert report["saturations"] == 0

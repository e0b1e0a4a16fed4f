"""The shipped zoo: intact, calibrated, and its recorded scores reproduce."""

import pytest

from opdbench import zoo
from opdbench.evaluate import evaluate
from opdbench.zoo.build import load_tasks


def test_checksums_match_the_manifest():
    models = zoo.manifest()["models"]
    assert {"student", "teacher"} <= set(models)
    for name, entry in models.items():
        assert zoo.checksums(zoo.ZOO_DIR / name) == entry["files"], f"{name} differs from the manifest"


def test_zoo_is_small():
    size = sum(p.stat().st_size for p in zoo.ZOO_DIR.rglob("*") if p.is_file())
    assert size < 25 * 2**20


def test_calibration_targets():
    models = zoo.manifest()["models"]
    assert models["teacher"]["eval"]["math"]["mean@8"] >= 0.7
    assert 0.02 <= models["student"]["eval"]["math"]["mean@8"] <= 0.3


@pytest.mark.parametrize("name", ["student"])
def test_recorded_scores_reproduce(name):
    task = load_tasks()[0]
    scores, _ = evaluate(zoo.load_model(f"zoo:{name}"), zoo.load_tokenizer(f"zoo:{name}"), task)
    assert scores == pytest.approx(zoo.manifest()["models"][name]["eval"]["math"], abs=1e-9)

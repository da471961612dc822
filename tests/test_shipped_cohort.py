"""The shipped AS-norm cohort (models-in-repo/cohort) against the installed speaker model, without Ray."""
from __future__ import annotations

import numpy as np
import pytest

from speechcore.settings import get_settings
from speechcore.speakers import shipped_cohort


@pytest.fixture(scope="module")
def embed():
    from speechcore.backends import load_backend
    from speechcore.spec import BackendSpec

    model = load_backend("speaker_embedding", BackendSpec(backend="eres2net-onnx", model="eres2net"))
    return lambda audio: model.embed_batch([audio])[0]


def test_the_installed_eres2net_reproduces_the_shipped_cohort(embed):
    found = shipped_cohort.load_matching(shipped_cohort.cohort_path("eres2net"), embed, get_settings().fixtures_dir)
    assert found is not None, "re-export: PYTHONPATH=$PWD .venv/bin/python scripts/build_cohort.py --export"
    embeddings, source = found
    assert len(embeddings) == 169 and source == "klettres-data, asterisk-core-sounds"
    matrix = np.stack(embeddings)
    assert matrix.shape == (169, 192) and np.isfinite(matrix).all()
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    assert (unit @ unit.T)[~np.eye(169, dtype=bool)].mean() < 0.5      # many voices, not one clip repeated


def test_a_model_that_embeds_the_probe_differently_gets_no_shipped_cohort(embed, tmp_path):
    fixtures = get_settings().fixtures_dir
    path = shipped_cohort.cohort_path("eres2net")
    assert shipped_cohort.load_matching(path, lambda a: -embed(a), fixtures) is None
    assert shipped_cohort.load_matching(tmp_path / "none.npz", embed, fixtures) is None
    assert shipped_cohort.load_matching(path, embed, tmp_path) is None                # no probe clip

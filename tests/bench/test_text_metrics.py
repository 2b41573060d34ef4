"""Judge-free open-ended scores: exact ROUGE-L, the packaged embedding model, key-finding recall."""

from __future__ import annotations

import numpy as np
import pytest

from breastgpt.bench.text_metrics import (embedding_cosine, key_finding_recall, packaged_embedding_model_path,
                                          rouge_l)


def test_rouge_l_exact():
    # LCS("the mass is oval", "the oval mass") = 2 -> P = 2/3, R = 2/4, F = 4/7.
    assert rouge_l("the oval mass", "the mass is oval") == pytest.approx(4 / 7)
    assert rouge_l("An oval mass.", "an oval mass") == pytest.approx(1.0)
    assert rouge_l("", "an oval mass") == 0.0


def test_packaged_embedding_model_scores_offline():
    assert (packaged_embedding_model_path() / "model.safetensors").is_file()
    pred = ["a spiculated mass in the upper outer quadrant", "normal study", "an oval circumscribed mass"]
    ref = ["irregular spiculated mass upper outer quadrant", "a spiculated mass in the upper outer quadrant",
           "an oval circumscribed mass"]
    cos = embedding_cosine(pred, ref)
    assert cos.shape == (3,)
    assert cos[0] == pytest.approx(0.8934, abs=2e-3)
    assert cos[1] == pytest.approx(0.0884, abs=2e-3)
    assert cos[2] == pytest.approx(1.0, abs=1e-5)
    assert embedding_cosine([], []).shape == (0,)
    with pytest.raises(ValueError, match="predictions"):
        embedding_cosine(["a"], [])


@pytest.mark.parametrize("response,findings,matched", [
    ("Oval mass with circumscribed margins.", ["oval mass", "circumscribed margin"], (True, True)),
    ("Coarse calcs.", ["coarse calcifications"], (True,)),
    ("An ill-defined hypoechoic nodule.", ["indistinct", "hypoechoic mass"], (True, True)),
    ("No mass is seen. Microcalcifications present.", ["mass", "calcifications"], (False, True)),
    ("There is no axillary lymphadenopathy.", ["no axillary lymphadenopathy"], (True,)),
    ("Enlarged axillary lymph nodes.", ["no axillary lymphadenopathy"], (False,)),
    ("Findings are suspicious for carcinoma.", ["malignancy"], (True,)),
    ("Mass in the left breast. It is oval.", ["oval mass"], (False,)),  # words split across sentences
    ("Posterior acoustic shadowing is present.", ["posterior shadowing"], (True,)),
    ("BI-RADS 4 lesion.", ["BI-RADS 5"], (False,)),
])
def test_key_finding_recall(response, findings, matched):
    got = key_finding_recall(response, findings)
    assert got.matched == matched
    assert got.found == sum(matched) and got.total == len(findings)


def test_key_finding_recall_empty():
    assert np.isnan(key_finding_recall("anything", []).recall)
    assert key_finding_recall("", ["mass"]).recall == 0.0

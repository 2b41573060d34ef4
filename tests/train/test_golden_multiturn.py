"""Issue 34, point 3: training on multi-turn records (images in turns 1 and 3) passes golden-loss checks — the
curve matches tests/assets/losses/tiny-debug-multiturn.json within the measured tolerance, also under another CPU
kernel family, planted changes break it by far more — and every assistant turn is supervised."""

from __future__ import annotations

import numpy as np
import pytest

from tests.train.golden import TOLERANCE, capabilities_here
from tests.train.golden_multiturn import losses_in_subprocess, max_abs_diff, run_multiturn


@pytest.fixture(scope="module")
def multiturn_run(tmp_path_factory):
    return run_multiturn(tmp_path_factory.mktemp("multiturn") / "run")


def test_multiturn_training_matches_its_golden_curve_and_learns(multiturn_run):
    assert len(multiturn_run.losses) == 20
    assert max_abs_diff(multiturn_run.losses) <= TOLERANCE
    assert multiturn_run.losses[-1] < 0.5 * multiturn_run.losses[0]


def test_multiturn_golden_holds_under_the_default_kernels():
    if "avx2" not in capabilities_here():
        pytest.skip("this CPU has only the default kernels: nothing to compare against")
    assert max_abs_diff(losses_in_subprocess("default")) <= TOLERANCE


@pytest.mark.parametrize("change", [{"lr": 4e-3}, {"init_seed": 1}])
def test_a_planted_change_fails_the_multiturn_golden(change, tmp_path):
    assert max_abs_diff(run_multiturn(tmp_path / "run", **change).losses) > 100 * TOLERANCE


def test_every_assistant_turn_is_supervised_and_nothing_else():
    from breastgpt.model.flavours import tiny_processor
    from breastgpt.model.processing import IGNORE_INDEX

    processor = tiny_processor()
    image = np.full((64, 64, 3), 170, np.uint8)
    answers = ["The image is bright.", "Yes.", "Yes, both are bright now."]
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Q1"}]},
                {"role": "assistant", "content": answers[0]},
                {"role": "user", "content": "Q2"},
                {"role": "assistant", "content": answers[1]},
                {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Q3"}]},
                {"role": "assistant", "content": answers[2]}]
    encoded = processor.encode(messages, stage="diagnosis")
    labels = encoded["labels"].tolist()
    supervised = [t for t in labels if t != IGNORE_INDEX]
    expected = []
    for answer in answers:
        expected += processor.tokenizer.encode(answer, add_special_tokens=False)
        expected += [processor.tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert supervised == expected
    assert len(encoded["image_grid_thw"]) == 2

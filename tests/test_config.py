"""The strict config base (breastgpt.config) and every config class built on it: files written before still load."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from breastgpt.config import ConfigError, StrictConfig, literal_values


class ToyError(ConfigError):
    pass


@dataclass(frozen=True)
class Inner(StrictConfig):
    section = "inner"

    pairs: tuple[tuple[int, int], ...] = ((1, 2),)
    mode: Literal["fast", "exact"] = "exact"


@dataclass(frozen=True)
class Outer(StrictConfig):
    error = ToyError
    section = "toy"

    name: str
    root: Path | None = None
    ratio: float = 0.5
    tags: tuple[str, ...] = ()
    inner: Inner = field(default_factory=Inner)

    def validate(self) -> None:
        if not 0 <= self.ratio <= 1:
            raise ToyError(f"toy.ratio must lie in [0, 1], got {self.ratio}")


def test_unknown_keys_are_refused_with_the_known_keys_listed():
    with pytest.raises(ToyError) as info:
        Outer.from_dict({"name": "a", "ratoi": 0.2})
    assert str(info.value) == ("toy: unknown key(s) ['ratoi']; known keys are ['inner', 'name', 'ratio', 'root', "
                               "'tags']. Fix the spelling or remove them.")
    message = r"toy.inner: unknown key\(s\) \['pair'\]; known keys are \['mode', 'pairs'\]"
    with pytest.raises(ConfigError, match=message):
        Outer.from_dict({"name": "a", "inner": {"pair": []}})


def test_literal_fields_take_only_their_values_from_files_and_from_code():
    assert literal_values(Literal["a", "b"]) == ("a", "b") and literal_values(Literal["a"] | None) == ("a", None)
    assert literal_values(str) is None
    with pytest.raises(ConfigError, match=r"cfg.json: inner.mode='quick' is not one of \['fast', 'exact'\]"):
        Outer.from_dict({"name": "a", "inner": {"mode": "quick"}}, "cfg.json")
    with pytest.raises(ConfigError, match=r"inner.mode='quick' is not one of"):
        Inner(mode="quick")  # type: ignore[arg-type]
    assert Inner(mode="fast").mode == "fast"


def test_missing_required_keys_wrong_types_and_domain_rules_name_the_key():
    with pytest.raises(ToyError, match=r"toy: missing required key\(s\) \['name'\]"):
        Outer.from_dict({})
    with pytest.raises(ToyError, match=r"toy.ratio: 'half' is not a valid float"):
        Outer.from_dict({"name": "a", "ratio": "half"})
    with pytest.raises(ConfigError, match=r"toy.inner.pairs\[0\]: expected 2 values, got 3"):  # Inner's error
        Outer.from_dict({"name": "a", "inner": {"pairs": [[1, 2, 3]]}})
    with pytest.raises(ToyError, match=r"toy.ratio must lie in \[0, 1\]"):
        Outer.from_dict({"name": "a", "ratio": 2})
    with pytest.raises(ToyError, match="expected a mapping of settings, got list"):
        Outer.from_dict([1])
    with pytest.raises(ToyError, match=r"toy.tags: expected a list"):
        Outer.from_dict({"name": "a", "tags": "x,y"})  # text lists only where parse_strings is on


def test_nested_round_trip_through_json():
    value = Outer(name="a", root=Path("/data/x"), ratio=1, tags=("p", "q"),
                  inner=Inner(pairs=((512, 1), (1024, 2)), mode="fast"))
    data = value.to_dict()
    assert data == {"name": "a", "root": "/data/x", "ratio": 1, "tags": ["p", "q"],
                    "inner": {"pairs": [[512, 1], [1024, 2]], "mode": "fast"}}
    back = Outer.from_dict(json.loads(json.dumps(data)))
    assert back == value and isinstance(back.root, Path) and back.inner.pairs == ((512, 1), (1024, 2))
    assert Outer.from_dict({"name": "a", "root": None}).root is None


# ---- every migrated class: the data its files hold today still loads, and round-trips -------------------------


def test_split_config_loads_and_refuses_unknown_keys():
    from breastgpt.corpus.splits import SplitConfig, SplitError

    config = SplitConfig.from_dict({"train": 0.7, "val": 0.0, "bench": 0.3, "salt": "s", "external": "a,b:2"})
    assert config.external == ("a", "b:2") and SplitConfig.from_dict(config.to_dict()) == config
    with pytest.raises(SplitError, match=r"split config: unknown key\(s\) \['test'\]"):
        SplitConfig.from_dict({"test": 0.1})


def test_model_config_json_sections_load():
    from breastgpt.model.configuration import SelectionConfig, SlideBranchConfig

    slide = {"feature_dim": 64, "encoder_id": "toy", "positional": True,
             "longnet": {"width": 64, "depth": 2, "heads": 4, "ffn": 128, "layer_norm_eps": 1e-6,
                         "segments": [[16, 1], [32, 2]], "input_dim": 64, "positional": "sincos2d",
                         "positional_scale": 0.1}}
    loaded = SlideBranchConfig.from_dict(slide)
    assert loaded.longnet.segments == ((16, 1), (32, 2)) and loaded.to_dict() == slide
    derived = SlideBranchConfig.from_dict({"feature_dim": 32, "positional": False})  # no longnet: derived
    assert (derived.longnet.input_dim, derived.longnet.positional) == (32, "none")
    with pytest.raises(ValueError, match=r"slide_config.longnet.positional='rope' is not one of"):
        SlideBranchConfig.from_dict({**slide, "longnet": {**slide["longnet"], "positional": "rope"}})
    selection = SelectionConfig.from_dict({"image_budget": 16, "volume_budget": 32, "slide_budget": 32})
    assert SelectionConfig.from_dict(selection.to_dict()) == selection


def test_pathology_configs_load_what_feature_files_record():
    from breastgpt.pathology.tiling import TilingConfig
    from breastgpt.pathology.tissue import TissueConfig

    recorded = json.loads(TissueConfig(min_component_um2=2_000.0).to_json())
    assert TissueConfig.from_dict(recorded) == TissueConfig(min_component_um2=2_000.0)
    assert TissueConfig.from_dict({"saturation_threshold": None}).saturation_threshold is None
    assert TilingConfig.from_dict({"target_mpp": 0.5, "tile_size": 256, "min_tissue_fraction": 0.1}).tile_size == 256


def test_train_config_from_a_recipe_file_and_from_text_overrides():
    from breastgpt.train.config import ConfigError as TrainConfigError
    from breastgpt.train.config import TrainConfig, apply_overrides
    from breastgpt.train.recipes import get_recipe

    assert TrainConfigError is ConfigError
    recipe = get_recipe("tiny-debug")
    assert TrainConfig.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    changed = apply_overrides(recipe, ["model.trainable=lora", "optim.betas=0.9,0.95", "logging.jsonl=off"])
    assert (changed.model.trainable, changed.optim.betas, changed.logging.jsonl) == ("lora", [0.9, 0.95], False)
    with pytest.raises(ConfigError, match=r"train.model.trainable='some' is not one of \['all', 'stage1', 'lora'"):
        apply_overrides(recipe, ["model.trainable=some"])


def test_deid_policy_loads_and_describes_itself_in_the_same_form():
    from breastgpt.deid.pipeline import DeidPolicy
    from breastgpt.deid.pixels import Rect

    policy = DeidPolicy.from_dict({"source": "vindr", "max_age_years": None,
                                   "burned_in": {"keep_regions": [[0, 0, 10, 10]], "use_ultrasound_regions": True}})
    assert policy.burned_in.keep_regions == (Rect(0, 0, 10, 10),) and policy.max_age_years is None
    assert DeidPolicy.from_dict(json.loads(json.dumps(policy.describe()))) == policy
    assert "limits" not in policy.describe()
    with pytest.raises(ValueError, match=r"burned_in: unknown key\(s\) \['keep'\]"):
        DeidPolicy.from_dict({"burned_in": {"keep": []}})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['limits'\]"):  # a runtime setting, never from a file
        DeidPolicy.from_dict({"limits": {}})


def test_preprocessing_file_as_written_loads():
    from breastgpt.preprocessing import Preprocessing, PreprocessingError

    written = {"format": "breastgpt-preprocessing", "version": 1, "image_long_side": 512, "mammo_crop": True,
               "mammo_mask_outside_breast": True, "mammo_flip_to": "R", "ultrasound_crop": False,
               "volume_inplane": 256, "volume_depth": 32, "ct_preset": "ct-wide", "mri_preset": "mri-percentile"}
    settings = Preprocessing.from_dict(written)
    assert settings.to_dict() == written and settings.mammo_flip_to == "R"
    with pytest.raises(PreprocessingError, match=r"p.json: mammo_flip_to='up' is not one of \['L', 'R', 'none'\]"):
        Preprocessing.from_dict({"mammo_flip_to": "up"}, "p.json")
    with pytest.raises(PreprocessingError, match=r"p.json: preprocessing sizes .* must be at least 2"):
        Preprocessing.from_dict({"volume_depth": 1}, "p.json")


def test_bench_configs_load():
    from breastgpt.bench.clients import EndpointConfig
    from breastgpt.bench.judge_controls import FamilyEvidence
    from breastgpt.bench.judges import JudgeConfig
    from breastgpt.bench.runner import RunConfig
    from breastgpt.bench.scoring import ScoreConfig

    endpoint = EndpointConfig.from_dict({"base_url": "http://x/v1", "model": "m", "breastgpt_server": None})
    assert EndpointConfig.from_dict(endpoint.to_dict()) == endpoint
    judge = JudgeConfig.from_dict({"base_url": "http://x/v1", "model": "gpt", "api_key_env": None})
    assert judge.prompt_version == "v2" and JudgeConfig.from_dict(judge.to_dict()) == judge
    run = RunConfig.from_dict({"bench": "b/bench.jsonl", "model": "local:ckpt", "out": "r", "judge_api_key_env": "K",
                               "ablations": ["no-image"], "limit": None})
    assert run.bench == Path("b/bench.jsonl") and run.judge_api_key_env == ("K",) and run.ablations == ("no-image",)
    assert RunConfig.from_dict(json.loads(json.dumps(run.to_dict()))) == run
    with pytest.raises(ValueError, match=r"run config: missing required key\(s\) \['bench', 'out'\]"):
        RunConfig.from_dict({"model": "local:ckpt"})
    assert ScoreConfig.from_dict({"open_metric": "rouge_l", "primary_judge": None}).open_metric == "rouge_l"
    with pytest.raises(ValueError, match=r"open_metric='bleu' is not one of \['auto', 'judge'"):
        ScoreConfig(open_metric="bleu")  # type: ignore[arg-type]
    # run.json's model.family, as `bench run` writes it
    evidence = FamilyEvidence.from_dict({"family": "qwen", "basis": "model name 'Qwen3-VL-8B'"})
    assert evidence == FamilyEvidence("qwen", "model name 'Qwen3-VL-8B'") and evidence.as_dict()["family"] == "qwen"


# ---- one generation-parameters type ------------------------------------------------------------------------------


def test_generation_params_are_one_type_for_bench_infer_and_serve():
    from breastgpt.bench.runner import RunConfig, params_hash
    from breastgpt.infer.engine import GenerationParams as EngineParams
    from breastgpt.infer.params import GenerationParams

    assert EngineParams is GenerationParams
    run = RunConfig(bench=Path("b.jsonl"), model="local:x", out=Path("o"), max_new_tokens=64, seed=3)
    params = run.decoding()
    assert isinstance(params, GenerationParams) and params.greedy
    # the bench records (and hashes) what it did before the types were unified: cached answers stay valid
    assert params.as_record() == {"max_new_tokens": 64, "seed": 3, "temperature": 0.0, "top_p": 1.0}
    scored = RunConfig(bench=Path("b.jsonl"), model="local:x", out=Path("o"), option_scores=True).decoding()
    assert scored.as_record() == {"max_new_tokens": 256, "seed": 0, "temperature": 0.0, "top_p": 1.0,
                                  "option_scores": True}
    assert params_hash(GenerationParams(), {}) == params_hash(GenerationParams.from_dict({}), {})
    assert GenerationParams(stop=("\n",)).as_record()["stop"] == ["\n"]
    assert GenerationParams.from_dict({"stop": ["END"], "temperature": 0.7}).stop == ("END",)
    with pytest.raises(ValueError, match="top_p in"):
        GenerationParams(top_p=0)


def test_bench_clients_refuse_sampling():
    from breastgpt.bench.clients import bench_params
    from breastgpt.infer.params import GenerationParams

    assert bench_params(GenerationParams(max_new_tokens=8, seed=1, option_scores=True)).seed == 1
    for bad in (GenerationParams(temperature=0.7), GenerationParams(stop=("x",))):
        with pytest.raises(ValueError, match="bench runs decode greedily"):
            bench_params(bad)

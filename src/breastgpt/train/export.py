"""The final model of a run in Hugging Face format (safetensors), with a manifest.

Full and stage-1 runs: ``OUT/final/`` (config.json, model*.safetensors, processor files, and the corpus's
``preprocessing.json`` when the data came from `corpus build`). LoRA runs:
``OUT/final/adapter/`` (peft adapter, safetensors) and the merged model in ``OUT/final/``. The objective decides
which module is the model (``encoders``: the model without its heads) and may add files of its own
(`Objective.export_extra`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from breastgpt.artifacts import Manifest, atomic_dir


def export_final(run: Any) -> Path:
    acc = run.accelerator
    acc.wait_for_everyone()
    state = acc.get_state_dict(run.model)
    final = run.out / "final"
    if acc.is_main_process:
        with atomic_dir(final) as tmp:
            module = acc.unwrap_model(run.model)
            model, prefix = run.objective.export_model(module)
            if prefix and state is not None:  # the objective's own parts (heads) are not part of the model
                state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if hasattr(model, "merge_and_unload"):
                model.save_pretrained(tmp / "adapter", safe_serialization=True)
                model = merged_copy(model)
                state = None
            model.save_pretrained(tmp, state_dict=state, safe_serialization=True)
            run.objective.export_extra(module, tmp)
            _save_processor(run.exported_processor, tmp)
            _save_preprocessing(run, tmp)
            write_export_manifest(tmp, run.config.to_dict(), run.data_sha256, run.step)
    acc.wait_for_everyone()
    return final


def merged_copy(peft_model: Any) -> Any:
    """The base model with the adapters merged in (the training model itself is left unchanged)."""
    import copy

    return copy.deepcopy(peft_model).merge_and_unload()


def _save_preprocessing(run: Any, folder: Path) -> None:
    """The corpus's preprocessing settings, so inference normalises raw files as training saw them."""
    from breastgpt.preprocessing import write_preprocessing
    from breastgpt.train.data import corpus_preprocessing

    settings = corpus_preprocessing(run.config.data)
    if settings is None:
        logging.getLogger(__name__).warning(
            "the training data records no preprocessing (not a `corpus build` folder): the exported checkpoint "
            "gets none, and inference will use the documented defaults")
        return
    write_preprocessing(folder, settings)


def _save_processor(processor: Any, folder: Path) -> None:
    try:
        processor.save_pretrained(str(folder))
    except (TypeError, ValueError, OSError) as exc:  # the weights are the artifact; say what is missing
        (folder / "PROCESSOR_NOT_SAVED.txt").write_text(f"processor.save_pretrained failed: {exc}\n")


def write_export_manifest(folder: Path, config: dict[str, Any], data_sha256: str, step: int) -> None:
    Manifest.of_folder(folder, step=step, config=config, data_manifest_sha256=data_sha256).write(
        folder / "manifest.json", indent=1)

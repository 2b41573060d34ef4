"""The training loop: accelerate, token-normalised gradient accumulation, validation, logging, checkpoints.

What a step's loss is comes from the run's objective (`breastgpt.train.objectives`); everything else is shared.

Loss normalisation: each optimizer step's loss is the sum of the loss terms (for the language objective, the token
losses) of every micro-batch on every process divided by the number of terms in the whole global step. Gradients
are therefore the same whether a global batch is split over processes or over accumulation steps (a mean of
per-batch means would weight short answers more on some layouts than on others).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from breastgpt.model.encoder_memo import enable_encoder_memo
from breastgpt.train import checkpoint as ckpt
from breastgpt.train.config import ConfigError, TrainConfig
from breastgpt.train.data import data_manifest
from breastgpt.train.metrics_log import MetricsLog
from breastgpt.train.model_setup import build_model, build_processor, trainable_names, training_processor
from breastgpt.train.objectives import Objective, get_objective
from breastgpt.train.sampler import BatchPlan


class NonFiniteLossError(RuntimeError):
    """The loss (or gradient norm) became NaN/Inf; training stopped before the optimizer step."""


@dataclass
class RunResult:
    output_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)  # one per optimizer step, over the whole run
    grad_norms: list[float] = field(default_factory=list)
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    last_checkpoint: Path | None = None
    final_dir: Path | None = None


@dataclass
class _Run:
    config: TrainConfig
    accelerator: Any
    model: Any
    processor: Any  # what the training reads its media with (`training_processor`)
    exported_processor: Any  # what is saved with the model: the checkpoint's own image bounds
    objective: Objective
    optimizer: Any
    scheduler: Any
    train_set: Any  # the objective's datasets (`Objective.datasets`)
    val_set: Any | None
    plan: BatchPlan
    total_steps: int
    out: Path
    data_sha256: str
    log: MetricsLog
    step: int = 0
    history: dict[str, list] = field(default_factory=lambda: {"loss": [], "grad_norm": [], "val": []})


# ---- set-up ------------------------------------------------------------------------------------------------


def make_accelerator(config: TrainConfig):
    from accelerate import Accelerator, DistributedDataParallelKwargs

    # A batch without slides (or without images) leaves that branch unused; DDP must be told.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision="bf16" if config.precision == "bf16" else "no",
                       gradient_accumulation_steps=config.schedule.grad_accum, kwargs_handlers=[ddp])


def set_determinism(config: TrainConfig) -> None:
    from accelerate.utils import set_seed

    from breastgpt.threads import apply_threads

    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    apply_threads(config.threads or (1 if config.deterministic else None))
    set_seed(config.seed)


def _prepare_data(config: TrainConfig, out: Path, accelerator) -> None:
    """Write the synthetic corpus once (main process) when the recipe asks for one."""
    if config.data.train or config.data.synthetic_records <= 0:
        return
    from breastgpt.train.synthetic import synthetic_records

    folder = out / "synthetic"
    if accelerator.is_main_process and not (folder / "records.jsonl").is_file():
        synthetic_records(folder, config.data.synthetic_records, seed=config.seed)
    accelerator.wait_for_everyone()
    config.data.train = str(folder / "records.jsonl")


def build_optimizer(model, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on vectors (biases, norms)."""
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() < 2]
    if not decay and not no_decay:
        raise ConfigError("no trainable parameters; check model.trainable")
    o = config.optim
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=o.lr, betas=tuple(o.betas), eps=o.eps,
                             foreach=False)


def build_scheduler(optimizer, config: TrainConfig, total_steps: int):
    warmup = math.ceil(config.schedule.warmup_ratio * total_steps)
    kind = config.schedule.scheduler

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress)) if kind == "cosine" else 1.0 - progress

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _total_steps(config: TrainConfig, plan: BatchPlan) -> int:
    if config.schedule.max_steps > 0:
        return config.schedule.max_steps
    steps = int(config.schedule.epochs * plan.batches_per_epoch()) // config.schedule.grad_accum
    if steps < 1:
        raise ConfigError("the schedule has 0 optimizer steps; add data, raise epochs or lower the batch size")
    return steps


def _fill_deepspeed(accelerator, config: TrainConfig) -> None:
    """DeepSpeed's 'auto' values that accelerate cannot infer without a prepared DataLoader."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return
    ds = plugin.deepspeed_config
    ds["train_micro_batch_size_per_gpu"] = config.schedule.micro_batch_size
    ds["gradient_accumulation_steps"] = config.schedule.grad_accum
    ds.pop("train_batch_size", None)  # DeepSpeed derives it from the two above and the world size
    ds["gradient_clipping"] = config.optim.grad_clip


def setup(config: TrainConfig, accelerator=None) -> _Run:
    config.check()
    out = Path(config.output_dir or f"runs/{config.name}")
    set_determinism(config)
    accelerator = accelerator or make_accelerator(config)
    _prepare_data(config, out, accelerator)
    model = build_model(config.model)
    # Frozen encoders give each medium the same visual tokens at every step: compute them once (a no-op when
    # any encoder parameter trains or selection reads the prompt).
    enable_encoder_memo(model, config.model.encoder_memo_mib << 20)
    exported = build_processor(config.model, model)
    processor = training_processor(exported, config.data)
    objective = get_objective(config.objective)(config)
    train_set, val_set = objective.datasets(processor, model)
    model = objective.wrap(model, train_set)
    plan = BatchPlan(train_set.lengths, config.schedule.micro_batch_size, accelerator.num_processes,
                     accelerator.process_index, config.seed, config.data.group_by_length,
                     config.data.mega_batch_factor)
    total = _total_steps(config, plan)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, total)
    _fill_deepspeed(accelerator, config)
    model, optimizer = accelerator.prepare(model, optimizer)
    # from_pretrained returns a model in eval mode: without this, a run started from a checkpoint trained with
    # gradient checkpointing and the selection's straight-through estimator silently off (both test .training).
    model.train()
    manifest = data_manifest(config.data, len(train_set), train_set.dropped)
    log = MetricsLog(out / "logs", enabled=accelerator.is_main_process, tensorboard=config.logging.tensorboard,
                     jsonl=config.logging.jsonl)
    return _Run(config, accelerator, model, processor, exported, objective, optimizer, scheduler, train_set, val_set,
                plan, total, out, manifest["sha256"], log)


# ---- one step ----------------------------------------------------------------------------------------------


def _fetch(run: _Run) -> list[dict[str, Any]]:
    c = run.config
    batches = []
    for _ in range(c.schedule.grad_accum):
        items = [run.train_set[i] for i in run.plan.next_local()]
        batches.append(run.objective.collate(items, run.processor))
    return batches


def _global_sum(accelerator, value: float | int, dtype=torch.float64) -> float:
    tensor = torch.tensor([value], dtype=dtype, device=accelerator.device)
    return float(accelerator.reduce(tensor, reduction="sum")[0]) if accelerator.num_processes > 1 else float(value)


def train_step(run: _Run) -> tuple[float, float]:
    """One optimizer step over ``grad_accum`` micro-batches; returns (loss, grad norm)."""
    acc, model = run.accelerator, run.model
    batches = _fetch(run)
    tokens = _global_sum(acc, sum(run.objective.count(b) for b in batches))
    scale = acc.num_processes * run.config.schedule.grad_accum / max(tokens, 1.0)
    total = 0.0
    for b in batches:
        with acc.accumulate(model):
            loss_sum = run.objective.loss_sum(model, b, acc.device)
            _stop_if_non_finite(run, loss_sum, b)
            acc.backward(loss_sum * scale)
            total += float(loss_sum.detach())
    norm = _clip(run)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return _global_sum(acc, total) / max(tokens, 1.0), norm


def _stop_if_non_finite(run: _Run, loss: torch.Tensor, batch: dict[str, Any]) -> None:
    bad = _global_sum(run.accelerator, 0.0 if bool(torch.isfinite(loss.detach())) else 1.0)
    if bad:
        where = f"step {run.step + 1}, samples {batch.get('sample_ids')}"
        raise NonFiniteLossError(
            f"non-finite loss ({float(loss.detach())}) at {where} on {int(bad)} process(es); stopped before the "
            f"optimizer step, weights are unchanged. Last checkpoint: {_last_ckpt(run)}. Check those samples, "
            "lower optim.lr or use precision=fp32.")


def _last_ckpt(run: _Run) -> str:
    found = ckpt.list_checkpoints(run.out / "checkpoints")
    return str(found[-1]) if found else "none"


def _clip(run: _Run) -> float:
    # A parameter no sample of this step used (a branch without its media in the batch, the head of a template
    # not drawn) keeps no gradient, and AdamW leaves it and its moments as they are: plain PyTorch's step, and
    # DDP's (it leaves a parameter unused on every process without a gradient). A zero gradient instead would move
    # it on its momentum and shift its bias correction; DeepSpeed ZeRO's flat partitions do that (docs/training.md).
    params = [p for p in run.model.parameters() if p.requires_grad and p.grad is not None]
    clip = run.config.optim.grad_clip
    if clip > 0:
        norm = run.accelerator.clip_grad_norm_(params, clip)
    else:
        grads = [p.grad.detach().float().norm() for p in params]
        norm = torch.stack(grads).norm() if grads else torch.zeros(())
    norm = float(norm) if norm is not None else float("nan")
    if run.accelerator.distributed_type != "DEEPSPEED" and not math.isfinite(norm):
        raise NonFiniteLossError(f"non-finite gradient norm at step {run.step + 1}; stopped before the optimizer "
                                 f"step. Last checkpoint: {_last_ckpt(run)}. Lower optim.lr or check the data.")
    return norm


# ---- validation, checkpoints ---------------------------------------------------------------------------


@torch.no_grad()
def validate(run: _Run) -> float:
    acc, vs, c = run.accelerator, run.val_set, run.config
    micro, world, rank = c.schedule.micro_batch_size, acc.num_processes, acc.process_index
    n_batches = len(vs) // (micro * world)
    if c.logging.val_max_batches:
        n_batches = min(n_batches, c.logging.val_max_batches)
    run.model.eval()
    total, tokens = 0.0, 0
    for b in range(n_batches):
        start = b * micro * world + rank * micro
        batch = run.objective.collate([vs[i] for i in range(start, start + micro)], run.processor)
        tokens += run.objective.count(batch)
        total += float(run.objective.loss_sum(run.model, batch, acc.device))
    run.model.train()
    return _global_sum(acc, total) / max(_global_sum(acc, tokens), 1.0)


def trainable_state(run: _Run) -> dict[str, torch.Tensor]:
    model = run.accelerator.unwrap_model(run.model)
    names = set(trainable_names(model))
    return {n: p.detach() for n, p in model.named_parameters() if n in names}


def save(run: _Run) -> Path:
    acc = run.accelerator
    sharded = acc.distributed_type == "DEEPSPEED"
    content = ckpt.CheckpointContent(
        model_state=trainable_state(run) if acc.is_main_process else None,
        optimizer_state=run.optimizer.state_dict() if (sharded or acc.is_main_process) else None,
        optimizer_sharded=sharded,
        scheduler_state=run.scheduler.state_dict(),
        trainer_state={"step": run.step, "data_position": run.plan.state_dict(), "history": run.history,
                       "total_steps": run.total_steps, "num_processes": acc.num_processes},
        config=run.config.to_dict(), data_manifest_sha256=run.data_sha256)
    dist = ckpt.Dist(acc.process_index, acc.num_processes, acc.wait_for_everyone)
    return ckpt.save_checkpoint(run.out / "checkpoints", run.step, content, dist, run.config.checkpoint.keep_last)


def restore(run: _Run, folder: Path) -> None:
    """Model, optimizer, scheduler, data position and RNG exactly as they were after the saved step."""
    acc = run.accelerator
    manifest = ckpt.verify_checkpoint(folder)
    if manifest["data_manifest_sha256"] != run.data_sha256:
        raise ckpt.CheckpointError(f"{folder}: saved for other training data (data-manifest hash differs); "
                                   "resume with the same data files and data settings")
    trainer = ckpt.load_trainer_state(folder)
    if trainer["num_processes"] != acc.num_processes and acc.distributed_type == "DEEPSPEED":
        raise ckpt.CheckpointError(f"{folder}: sharded optimizer state from {trainer['num_processes']} processes")
    model = acc.unwrap_model(run.model)
    state = ckpt.load_model_state(folder)
    missing = set(trainable_names(model)) - set(state)
    if missing:
        raise ckpt.CheckpointError(f"{folder}: model.safetensors lacks {len(missing)} trainable tensors, e.g. "
                                   f"{sorted(missing)[:3]}; was it saved with another model.trainable?")
    model.load_state_dict(state, strict=False)
    sharded = acc.distributed_type == "DEEPSPEED"
    run.optimizer.load_state_dict(ckpt.load_optimizer_state(folder, acc.process_index, sharded))
    run.scheduler.load_state_dict(ckpt.load_scheduler_state(folder))
    run.plan.load_state_dict(trainer["data_position"])
    run.step, run.history = int(trainer["step"]), trainer["history"]
    rng = ckpt.load_rng_state(folder, acc.process_index)
    if rng is not None:
        ckpt.set_rng_state(rng)


# ---- the run -----------------------------------------------------------------------------------------------


def train(config: TrainConfig, resume: str | None = None, accelerator=None) -> RunResult:
    """Train as configured; ``resume`` is a checkpoint folder or ``auto`` (newest under OUT, if any)."""
    run = setup(config, accelerator)
    if resume:
        folder = ckpt.resolve_checkpoint(resume, run.out)
        if folder is not None:
            restore(run, folder)
    result = RunResult(run.out, run.total_steps)
    try:
        _loop(run, result)
    finally:
        run.log.close()
    result.losses = list(run.history["loss"])
    result.grad_norms = list(run.history["grad_norm"])
    result.val_losses = [tuple(v) for v in run.history["val"]]
    return result


def _loop(run: _Run, result: RunResult) -> None:
    from breastgpt.train.progress import step_progress

    c = run.config
    with step_progress(run.total_steps, run.step, enabled=c.logging.progress and run.accelerator.is_main_process,
                       label=c.name) as advance:
        while run.step < run.total_steps:
            started = time.perf_counter()
            loss, norm = train_step(run)
            run.step += 1
            run.history["loss"].append(loss)
            run.history["grad_norm"].append(norm)
            _after_step(run, result, loss, norm, time.perf_counter() - started)
            advance(loss)
    if c.checkpoint.save_final and (not result.last_checkpoint or result.last_checkpoint.name != ckpt.step_dir_name(run.step)):
        result.last_checkpoint = save(run)
    if c.checkpoint.save_final:
        from breastgpt.train.export import export_final

        result.final_dir = export_final(run)


def _after_step(run: _Run, result: RunResult, loss: float, norm: float, seconds: float) -> None:
    c = run.config
    if c.logging.every_steps and run.step % c.logging.every_steps == 0:
        lr = run.scheduler.get_last_lr()[0]
        run.log.write(run.step, {"train/loss": loss, "train/grad_norm": norm, "train/lr": lr,
                                 "train/step_seconds": seconds})
    if run.val_set is not None and c.logging.val_every_steps and run.step % c.logging.val_every_steps == 0:
        val = validate(run)
        run.history["val"].append([run.step, val])
        run.log.write(run.step, {"val/loss": val})
    if c.checkpoint.every_steps and run.step % c.checkpoint.every_steps == 0:
        result.last_checkpoint = save(run)


__all__ = ["NonFiniteLossError", "RunResult", "build_optimizer", "build_scheduler", "restore", "save", "setup",
           "train", "train_step", "validate"]

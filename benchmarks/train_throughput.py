"""Training throughput (tokens/s) of BreastGPT train steps, full fine-tune vs gradient checkpointing vs LoRA.

CPU (default): the tiny flavour and a ~10 M-parameter config, fp32, text batches; the baseline is the full
fine-tune step of the same model measured in the same run, and every other mode is reported as a ratio. The modes
of one config are stepped in interleaved rounds (order rotated, `--rounds`, `--steps` per round), each figure is
the median step; torch threads are pinned (`--threads`), the load average is recorded and the result marked noisy
above the core count.
Two more CPU rows supervise only the last 1/16 of each row (an answer after a long multimodal prompt, as in
training conversations): logits over every position (the Hugging Face default) vs over the supervised
positions only (`supervised_positions`, what the training loop passes); the first of the two is their baseline.
``--gpu``: the 8B architecture with random weights on one GPU, bf16, sequence 4,096, gradient
checkpointing; full and LoRA: tokens/s, MFU and peak memory (the full step is the baseline).

    python benchmarks/train_throughput.py [--gpu] [--steps 5] [--rounds 3] [--threads 2] [--seq 256] [--out ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
sys.path.insert(0, str(ROOT / "benchmarks"))

H100_BF16_DENSE_FLOPS = 989e12  # H100 SXM, dense bf16 (NVIDIA data sheet)


def ten_million_config(vocab_size: int = 320):
    from breastgpt.model.flavours import tiny

    text = dict(vocab_size=vocab_size, hidden_size=384, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=6,
                num_key_value_heads=2, head_dim=64, max_position_embeddings=4096, pad_token_id=256,
                rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [8, 12, 12],
                                 "mrope_interleaved": True})
    vision = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=384,
                  num_position_embeddings=64, deepstack_visual_indexes=[0, 1])
    return tiny(text_config=text, vision_config=vision)


def build(model_config, trainable: str, checkpointing: bool, device: str, dtype):
    import torch

    from breastgpt.model import BreastGPTForConditionalGeneration
    from breastgpt.train.config import ModelConfig
    from breastgpt.train.model_setup import apply_lora, apply_trainable

    with torch.device(device):
        model = BreastGPTForConditionalGeneration(model_config).to(dtype)
    mc = ModelConfig(flavour="tiny", trainable=trainable)
    apply_trainable(model, mc)
    if trainable == "lora":
        model = apply_lora(model, mc)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if trainable != "all":
            model.enable_input_require_grads()
    return model.train()


class Stepper:
    """Optimizer steps of one model on fixed random text; the last ``answer_share`` of each row supervised, logits
    over every position or (``kept_logits``) over the supervised ones only."""

    def __init__(self, model, batch: int, seq: int, device: str, answer_share: float = 1.0,
                 kept_logits: bool = False) -> None:
        import torch

        from breastgpt.model.modeling import supervised_positions

        self.model, self.device, self.batch, self.seq = model, device, batch, seq
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=1e-5, foreach=device != "cpu")
        vocab = model.config.text_config.vocab_size
        gen = torch.Generator(device="cpu").manual_seed(0)
        self.ids = torch.randint(0, min(vocab, 250), (batch, seq), generator=gen).to(device)
        self.labels = self.ids.clone()
        self.labels[:, :seq - max(2, int(seq * answer_share))] = -100
        self.extra = {"logits_to_keep": supervised_positions(self.labels)} if kept_logits else {}
        self.times: list[float] = []
        self.loss = float("nan")

    def run(self, steps: int, timed: bool = True) -> None:
        import torch

        for _ in range(steps):
            if self.device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
            loss = self.model(input_ids=self.ids, labels=self.labels, use_cache=False, **self.extra).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            if self.device != "cpu":
                torch.cuda.synchronize()
            if timed:
                self.times.append(time.perf_counter() - start)
            self.loss = float(loss.detach())

    def result(self) -> dict:
        sec = sorted(self.times)[len(self.times) // 2]
        return {"seconds_per_step": sec, "tokens_per_second": self.batch * self.seq / sec,
                "params": sum(p.numel() for p in self.model.parameters()),
                "trainable_params": sum(p.numel() for p in self.params), "loss_last": self.loss,
                "timed_steps": len(self.times)}


def measure(model, batch: int, seq: int, steps: int, device: str, answer_share: float = 1.0,
            kept_logits: bool = False) -> dict:
    """Median seconds per optimizer step (after one warm-up step) of one model alone."""
    stepper = Stepper(model, batch, seq, device, answer_share, kept_logits)
    stepper.run(1, timed=False)
    stepper.run(steps)
    return stepper.result()


def interleaved(steppers: dict[str, Stepper], rounds: int, steps: int, loads: list[float]) -> dict[str, dict]:
    """Every stepper warmed up once, then `rounds` rounds of `steps` steps each, the order rotated per round."""
    names = list(steppers)
    for stepper in steppers.values():
        stepper.run(1, timed=False)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            steppers[name].run(steps)
        loads.append(os.getloadavg()[0])
    return {name: stepper.result() for name, stepper in steppers.items()}


def run_cpu(args) -> dict:
    import torch

    from breastgpt.model.flavours import tiny

    from _common import load_record

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out, loads = {}, [os.getloadavg()[0]]
    # "10m-qwen-vocab": the 10 M config with Qwen3-VL's 151,936-token vocabulary, where the logits dominate
    # (answer rows only: that is what they measure)
    for name, cfg in (("tiny", tiny()), ("10m", ten_million_config()), ("10m-qwen-vocab", ten_million_config(151936))):
        modes = () if name == "10m-qwen-vocab" else (("full", "all", False), ("full+ckpt", "all", True),
                                                     ("lora", "lora", False))
        steppers = {mode: Stepper(build(cfg, trainable, ckpt, "cpu", torch.float32), args.batch, args.seq, "cpu")
                    for mode, trainable, ckpt in modes}
        rows = interleaved(steppers, args.rounds, args.steps, loads) if steppers else {}
        for row in rows.values():
            row["ratio_to_full"] = row["tokens_per_second"] / rows["full"]["tokens_per_second"]
        answer_steppers = {}
        for mode, kept in (("answers 1/16, all logits", False), ("answers 1/16, kept logits", True)):
            torch.manual_seed(1)  # the same initial weights for both rows
            answer_steppers[mode] = Stepper(build(cfg, "all", False, "cpu", torch.float32), args.batch, args.seq,
                                            "cpu", 1 / 16, kept)
        answers = interleaved(answer_steppers, args.rounds, args.steps, loads)
        base = answers["answers 1/16, all logits"]["tokens_per_second"]
        for row in answers.values():
            row["ratio_to_all_logits"] = row["tokens_per_second"] / base
        out[name] = {**rows, **answers}
    return {"device": "cpu", "threads": torch.get_num_threads(), "batch": args.batch, "seq": args.seq,
            "rounds": args.rounds, "steps_per_round": args.steps, **load_record(loads), "results": out}


def run_gpu(args) -> dict:
    import torch

    from breastgpt.model.flavours import published

    cfg = published("8b")
    if args.layers:
        cfg.text_config.num_hidden_layers = args.layers
    rows = {}
    for mode, trainable in (("full", "all"), ("lora", "lora")):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            model = build(cfg, trainable, True, "cuda", torch.bfloat16)
            row = measure(model, 1, args.seq, args.steps, "cuda")
        except torch.OutOfMemoryError as exc:
            rows[mode] = {"error": f"out of memory: {str(exc).splitlines()[0]}"}
            continue
        finally:
            model = None
        # Model FLOPs per token: 6N for a full step (2N forward, 4N backward), 4N with frozen weights (LoRA:
        # no weight gradients), plus attention 12·L·d·s (full) / 8·L·d·s (LoRA); recomputation not counted.
        text = cfg.text_config
        attn = text.num_hidden_layers * text.num_attention_heads * text.head_dim * args.seq
        flops = (6 * row["params"] + 12 * attn) if trainable == "all" else (4 * row["params"] + 8 * attn)
        row["mfu"] = flops * row["tokens_per_second"] / H100_BF16_DENSE_FLOPS
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        rows[mode] = row
    if "tokens_per_second" in rows.get("full", {}) and "tokens_per_second" in rows.get("lora", {}):
        rows["lora"]["ratio_to_full"] = rows["lora"]["tokens_per_second"] / rows["full"]["tokens_per_second"]
    return {"device": torch.cuda.get_device_name(0), "seq": args.seq, "layers": cfg.text_config.num_hidden_layers,
            "precision": "bf16 weights and AdamW states", "gradient_checkpointing": True, "results": rows}


def main(argv: list[str] | None = None) -> dict:
    from _common import machine

    parser = argparse.ArgumentParser()
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (per round on CPU)")
    parser.add_argument("--rounds", type=int, default=3, help="CPU: interleaved rounds per config")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU: torch threads")
    parser.add_argument("--seq", type=int, default=None)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--layers", type=int, default=0, help="GPU: fewer LLM layers than 36 (0: all)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.seq = args.seq or (4096 if args.gpu else 256)
    figures = run_gpu(args) if args.gpu else run_cpu(args)
    payload = {"benchmark": "train_throughput", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "machine": machine(), **figures}
    name = "train_throughput_gpu.json" if args.gpu else "train_throughput.json"
    out = args.out or ROOT / "benchmarks" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(tmp, out)
    print(json.dumps(payload["results"], indent=1))
    return payload


if __name__ == "__main__":
    main()

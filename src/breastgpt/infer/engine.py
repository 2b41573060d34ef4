"""Generation engine: one loaded checkpoint, batched and streamed generation, cancellation.

Greedy decoding by default (`temperature == 0`), so the same request gives the same answer. Visual inputs are
encoded once at prefill by the model; the engine never re-runs encoders while decoding.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from breastgpt.preprocessing import NO_SETTINGS_NOTICE, Preprocessing, read_preprocessing

log = logging.getLogger("breastgpt.infer")


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be ≥ 0 and top_p in (0, 1]")

    def generate_kwargs(self) -> dict[str, Any]:
        if self.temperature == 0:
            return {"do_sample": False, "max_new_tokens": self.max_new_tokens}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens}


@dataclass
class Conversation:
    """Messages in the processor's format (parts: text, image, volume, slide), the clinical stage and the task
    family. With a stage and no system message, the system prompt is the corpus's for that stage and task — the
    text the model was trained with."""

    messages: list[dict[str, Any]]
    stage: str | None = None
    task: str | None = "open_vqa"

    def prompt_messages(self) -> list[dict[str, Any]]:
        if self.stage is None or any(m["role"] == "system" for m in self.messages):
            return self.messages
        from breastgpt.corpus.templates import system_prompt

        return [{"role": "system", "content": system_prompt(self.stage, self.task)}, *self.messages]


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length" | "cancelled"


class CancelOnEvent(StoppingCriteria):
    """Stops generation at the next step once the event is set (client gone, timeout)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


@dataclass
class Engine:
    model: Any
    processor: Any
    name: str = "breastgpt"
    lock: threading.Lock = field(default_factory=threading.Lock)
    # How raw media are normalised for this model: the checkpoint's preprocessing.json (its training corpus's
    # settings), else the documented defaults with `preprocessing_recorded` False.
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    preprocessing_recorded: bool = False

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str | None = None, dtype: str = "auto") -> Engine:
        """Load a checkpoint folder (safetensors + config + tokenizer/processor files); nothing is downloaded."""
        from breastgpt.model import BreastGPTForConditionalGeneration
        from breastgpt.model.processing import BreastGPTProcessor

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a checkpoint folder (no config.json) — pass the folder written by "
                                    "`breastgpt model init` or `breastgpt train`")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
                       "bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[dtype]
        model = BreastGPTForConditionalGeneration.from_pretrained(path, dtype=torch_dtype, local_files_only=True)
        processor = BreastGPTProcessor.from_pretrained(path, local_files_only=True)
        settings = read_preprocessing(path)
        if settings is None:
            log.warning("%s: %s", path.name, NO_SETTINGS_NOTICE)
        return cls(model=model.to(device).eval(), processor=processor, name=path.name,
                   preprocessing=settings or Preprocessing(), preprocessing_recorded=settings is not None)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _inputs(self, conversations: list[Conversation]) -> dict[str, Any]:
        encoded = [self.processor.encode(c.prompt_messages(), add_generation_prompt=True) for c in conversations]
        batch = self.processor.pad_batch(encoded, padding_side="left")
        batch.pop("labels", None)
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def _eos_ids(self) -> list[int]:
        tokenizer = self.processor.tokenizer
        ids = {tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id}
        return sorted(i for i in ids if i is not None)

    def generate(self, conversations: list[Conversation], params: GenerationParams = GenerationParams(),
                 cancel: threading.Event | None = None) -> list[Generation]:
        """Generate for a batch of conversations (left-padded); one `Generation` per conversation, in order."""
        inputs = self._inputs(conversations)
        criteria = StoppingCriteriaList([CancelOnEvent(cancel)]) if cancel is not None else None
        with self.lock, torch.inference_mode():
            torch.manual_seed(params.seed)
            output = self.model.generate(**inputs, **params.generate_kwargs(), stopping_criteria=criteria,
                                         eos_token_id=self._eos_ids(), pad_token_id=self.processor.tokenizer.pad_token_id)
        prompt_length = inputs["input_ids"].shape[1]
        return [self._result(row, prompt_length, int(mask.sum()), params, cancel)
                for row, mask in zip(output, inputs["attention_mask"])]

    def answer_loglikelihoods(self, conversation: Conversation, answers: list[str]) -> list[float]:
        """Log-likelihood of each candidate answer as the assistant's whole reply (its tokens and the closing
        `<|im_end|>`), teacher-forced after the conversation's prompt: option scoring of a closed question.

        The candidates are encoded exactly as training encodes an assistant turn, batched with right padding, and
        scored in one forward pass (the visual inputs are repeated per candidate)."""
        if not answers:
            raise ValueError("answer_loglikelihoods needs at least one candidate answer")
        messages = conversation.prompt_messages()
        encoded = [self.processor.encode([*messages, {"role": "assistant", "content": a}]) for a in answers]
        batch = self.processor.pad_batch(encoded, padding_side="right")
        labels = batch.pop("labels").to(self.device)
        inputs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        with self.lock, torch.inference_mode():
            logits = self.model(**inputs).logits.float()
        targets = labels[:, 1:]
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        picked = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (picked * (targets >= 0)).sum(dim=1).tolist()

    def _result(self, row: torch.Tensor, prompt_length: int, prompt_tokens: int, params: GenerationParams,
                cancel: threading.Event | None) -> Generation:
        completion = row[prompt_length:].tolist()
        eos = set(self._eos_ids())
        cut = next((i for i, token in enumerate(completion) if token in eos), None)
        tokens = completion if cut is None else completion[:cut]
        pad = self.processor.tokenizer.pad_token_id
        tokens = [t for t in tokens if t != pad]
        if cancel is not None and cancel.is_set():
            reason = "cancelled"
        else:
            reason = "stop" if cut is not None else "length"
        text = self.processor.tokenizer.decode(tokens, skip_special_tokens=True)
        return Generation(text=text, prompt_tokens=prompt_tokens, completion_tokens=len(tokens), finish_reason=reason)

    def stream(self, conversation: Conversation, params: GenerationParams = GenerationParams(),
               cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the answer's text as it is generated (the same tokens `generate` would return)."""
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        inputs = self._inputs([conversation])
        criteria = StoppingCriteriaList([CancelOnEvent(cancel)]) if cancel is not None else None
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with self.lock, torch.inference_mode():
                    if cancel is not None and cancel.is_set():  # the client left while the engine was busy
                        streamer.end()
                        return
                    torch.manual_seed(params.seed)
                    self.model.generate(**inputs, **params.generate_kwargs(), streamer=streamer,
                                        stopping_criteria=criteria, eos_token_id=self._eos_ids(),
                                        pad_token_id=self.processor.tokenizer.pad_token_id)
            except BaseException as error:  # re-raised in the consumer's thread
                errors.append(error)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        yield from (chunk for chunk in streamer if chunk)
        thread.join()
        if errors:
            raise errors[0]

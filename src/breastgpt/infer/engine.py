"""Generation engine: one loaded checkpoint, batched and streamed generation, cancellation.

Greedy decoding by default (`temperature == 0`), so the same request gives the same answer. Visual inputs are
encoded once at prefill by the model; the engine never re-runs encoders while decoding. OpenAI's sampling
options are implemented here: stop sequences (generation ends at one; it is not part of the answer), frequency
and presence penalties (subtracted from the logits of tokens already generated, as OpenAI defines them) and
per-token log-probabilities of the model's own distribution (before penalties and temperature).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList, \
    TextIteratorStreamer

from breastgpt.infer.params import GenerationParams
from breastgpt.preprocessing import NO_SETTINGS_NOTICE, Preprocessing, read_preprocessing

log = logging.getLogger("breastgpt.infer")


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()  # the most likely tokens at this step, best first


class OpenAIPenalties(LogitsProcessor):
    """OpenAI's frequency and presence penalties: each token's logit is lowered by `frequency × count +
    presence × (count > 0)`, counting only the tokens generated so far (not the prompt)."""

    def __init__(self, prompt_length: int, frequency: float, presence: float) -> None:
        self.prompt_length, self.frequency, self.presence = prompt_length, frequency, presence

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length:]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """The text before the first stop sequence, and whether one was found."""
    found = [index for index in (text.find(s) for s in stop) if index >= 0]
    return (text[:min(found)], True) if found else (text, False)


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
    logprobs: list[TokenLogprob] | None = None  # one per completion token, when asked for


@dataclass
class StreamUsage:
    """Token counts of a streamed answer, filled in when the stream ends."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


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
        from breastgpt.model.processing import BreastGPTProcessor
        from breastgpt.model.variants import variant_of_checkpoint
        from breastgpt.registry import RegistryError

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: not a checkpoint folder (no config.json) — pass the folder written by "
                                    "`breastgpt model init` or `breastgpt train`")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32,
                       "bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[dtype]
        try:  # BreastGPT, or a registered variant of it with parts of its own
            variant = variant_of_checkpoint(path)
        except RegistryError as exc:
            raise ValueError(str(exc)) from exc
        if not variant.is_breastgpt:
            raise ValueError(f"{path}: a {variant.name} checkpoint; `ask`, `serve` and the local bench client run "
                             "BreastGPT models (serve other models with their own OpenAI-compatible server)")
        model = variant.model_class.from_pretrained(path, dtype=torch_dtype, local_files_only=True)
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

    def _options(self, params: GenerationParams, prompt_length: int, cancel: threading.Event | None) -> dict[str, Any]:
        """`model.generate` keyword arguments for these parameters."""
        options: dict[str, Any] = {**params.generate_kwargs(), "eos_token_id": self._eos_ids(),
                                   "pad_token_id": self.processor.tokenizer.pad_token_id}
        if cancel is not None:
            options["stopping_criteria"] = StoppingCriteriaList([CancelOnEvent(cancel)])
        if params.stop:
            options["tokenizer"] = self.processor.tokenizer  # stop_strings are matched on decoded tokens
        if params.frequency_penalty or params.presence_penalty:
            options["logits_processor"] = LogitsProcessorList([
                OpenAIPenalties(prompt_length, params.frequency_penalty, params.presence_penalty)])
        if params.logprobs:
            options.update(output_logits=True, return_dict_in_generate=True)
        return options

    def generate(self, conversations: list[Conversation], params: GenerationParams = GenerationParams(),
                 cancel: threading.Event | None = None) -> list[Generation]:
        """Generate for a batch of conversations (left-padded); one `Generation` per conversation, in order."""
        inputs = self._inputs(conversations)
        prompt_length = inputs["input_ids"].shape[1]
        with self.lock, torch.inference_mode():
            torch.manual_seed(params.seed)
            output = self.model.generate(**inputs, **self._options(params, prompt_length, cancel))
            sequences = output.sequences if params.logprobs else output
            steps = self._step_logprobs(output, prompt_length, params.top_logprobs) if params.logprobs else None
        return [self._result(row, prompt_length, int(mask.sum()), params, cancel, None if steps is None else steps[i])
                for i, (row, mask) in enumerate(zip(sequences, inputs["attention_mask"]))]

    def _step_logprobs(self, output: Any, prompt_length: int, top: int) -> list[list[TokenLogprob]]:
        """Per row, per generated step: the chosen token's log-probability and the `top` most likely tokens."""
        decode = self.processor.tokenizer.decode
        rows: list[list[TokenLogprob]] = [[] for _ in range(output.sequences.shape[0])]
        for step, logits in enumerate(output.logits):
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            chosen = output.sequences[:, prompt_length + step]
            picked = logprobs.gather(1, chosen[:, None])[:, 0].tolist()
            best = logprobs.topk(top, dim=-1) if top else None
            for row, token in enumerate(chosen.tolist()):
                alternatives = () if best is None else tuple(
                    (decode([int(i)]), float(v)) for v, i in zip(best.values[row], best.indices[row]))
                rows[row].append(TokenLogprob(decode([token]), float(picked[row]), alternatives))
        return rows

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
                cancel: threading.Event | None, steps: list[TokenLogprob] | None = None) -> Generation:
        completion = row[prompt_length:].tolist()
        eos = set(self._eos_ids())
        cut = next((i for i, token in enumerate(completion) if token in eos), None)
        pad = self.processor.tokenizer.pad_token_id
        kept = [i for i, token in enumerate(completion[:cut]) if token != pad]
        tokens = [completion[i] for i in kept]
        text, stopped = cut_at_stop(self.processor.tokenizer.decode(tokens, skip_special_tokens=True), params.stop)
        if cancel is not None and cancel.is_set():
            reason = "cancelled"
        else:
            reason = "stop" if cut is not None or stopped else "length"
        return Generation(text=text, prompt_tokens=prompt_tokens, completion_tokens=len(tokens), finish_reason=reason,
                          logprobs=None if steps is None else [steps[i] for i in kept])

    def stream(self, conversation: Conversation, params: GenerationParams = GenerationParams(),
               cancel: threading.Event | None = None) -> Generator[str, None, StreamUsage]:
        """Yield the answer's text as it is generated (the same text `generate` returns); returns the token counts.
        With stop sequences, the last few characters are held back until they cannot begin one."""
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        inputs = self._inputs([conversation])
        prompt_length = inputs["input_ids"].shape[1]
        options = {**self._options(replace(params, logprobs=False), prompt_length, cancel), "streamer": streamer}
        errors: list[BaseException] = []
        usage = StreamUsage(prompt_tokens=int(inputs["attention_mask"].sum()))

        def run() -> None:
            try:
                with self.lock, torch.inference_mode():
                    if cancel is not None and cancel.is_set():  # the client left while the engine was busy
                        streamer.end()
                        return
                    torch.manual_seed(params.seed)
                    output = self.model.generate(**inputs, **options)
                usage.completion_tokens = self._result(output[0], prompt_length, 0, params, None).completion_tokens
            except BaseException as error:  # re-raised in the consumer's thread
                errors.append(error)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        yield from (piece for piece in _until_stop(streamer, params.stop) if piece)
        thread.join()
        if errors:
            raise errors[0]
        return usage


def _until_stop(pieces: Iterable[str], stop: tuple[str, ...]) -> Iterator[str]:
    """The streamed text up to the first stop sequence; the rest of `pieces` is drained unseen."""
    hold = max((len(s) for s in stop), default=1) - 1
    held, stopped = "", False
    for piece in pieces:
        if stopped:
            continue
        held += piece
        text, stopped = cut_at_stop(held, stop)
        if stopped:
            yield text
        elif len(held) > hold:
            yield held[:len(held) - hold]
            held = held[len(held) - hold:]
    if not stopped:
        yield held

"""The ``hf`` judge: a local transformers vision-language model directory, run in-process.

Loads ``AutoProcessor`` + ``AutoModelForImageTextToText`` from the directory (no remote code unless
asked), renders the same system text, two images and rubric through the processor's chat template,
generates, and sends the text through the same tolerant parser and validation as the ``openai``
judge. Replies that fail are retried (sampling with the raised temperature) up to ``max_attempts``,
then recorded as failures; they never stop the run.

``build_tiny_vlm(dir)`` writes a randomly initialised Llava (CLIP vision tower + Llama text model,
hidden size 32) with an in-process byte-level BPE tokenizer: the offline test model.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from affectkit.core.errors import DataError, UsageError
from affectkit.tasks.mer_bench.backends import Outcome, Sample, check_reply
from affectkit.tasks.mer_bench.config import JudgeConfig
from affectkit.tasks.mer_bench.prompts import SYSTEM_PROMPT, user_text

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for p in m['content'] %}{% if p['type'] == 'image' %}<image>{% else %}{{ p['text'] }}{% endif %}{% endfor %}"
    "{% endif %}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
)


def hf_messages(row: dict[str, str], images_first: bool, include_reference: bool) -> list[dict[str, Any]]:
    images = [{"type": "text", "text": "SOURCE image:"}, {"type": "image"},
              {"type": "text", "text": "EDITED image:"}, {"type": "image"}]
    rubric = [{"type": "text", "text": user_text(row, include_reference)}]
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": images + rubric if images_first else rubric + images},
    ]


class HFBackend:
    kind = "hf"
    prices = None

    def __init__(self, cfg: JudgeConfig):
        self.cfg = cfg
        self.hc = cfg.hf
        path = Path(self.hc.model_dir)
        if not (path / "config.json").is_file():
            raise DataError(path, "not a transformers model directory (no config.json)",
                            "pass --model DIR holding config.json, weights and the processor files")
        self.path = path
        self._model: Any = None
        self._processor: Any = None
        self._weights_hash: list[str] | None = None

    @property
    def identity(self) -> str:
        return f"hf:{self.path.resolve()}"

    def settings(self) -> dict[str, Any]:
        from affectkit.tasks.mer_bench.judge_cache import sha256_file

        if self._weights_hash is None:  # hashed once per run (a 7B model is several GB)
            self._weights_hash = [sha256_file(w) for w in sorted(self.path.glob("*.safetensors"))]
        return {"model_dir": str(self.path.resolve()), "weights": self._weights_hash,
                "max_new_tokens": self.hc.max_new_tokens, "temperature": self.cfg.temperature,
                "temperature_step": self.cfg.temperature_step, "dtype": self.hc.dtype}

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            self._processor = AutoProcessor.from_pretrained(self.path, trust_remote_code=self.hc.trust_remote_code)
            dtype = "auto" if self.hc.dtype == "auto" else getattr(torch, self.hc.dtype)
            self._model = AutoModelForImageTextToText.from_pretrained(
                self.path, dtype=dtype, trust_remote_code=self.hc.trust_remote_code)
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(self.path, f"cannot load the model or processor ({type(exc).__name__}: {exc})",
                            "the directory needs a processor (chat template included) and an image-text-to-text model") from None
        device = self.hc.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
            raise UsageError(f"hf.device {device!r}: expected cpu, cuda or auto")
        self._model.to(device).eval()
        self.device = device

    def generate(self, sample: Sample, temperature: float) -> str:
        import torch
        from PIL import Image

        self._load()
        proc = self._processor
        msgs = hf_messages(sample.row, self.cfg.images_first, self.cfg.include_reference)
        try:
            text = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        except (ValueError, AttributeError) as exc:
            raise DataError(self.path, f"the processor has no usable chat template ({exc})") from None
        with Image.open(sample.src_path) as a, Image.open(sample.gen_path) as b:
            images = [a.convert("RGB"), b.convert("RGB")]
        inputs = proc(text=text, images=images, return_tensors="pt").to(self.device)
        kwargs: dict[str, Any] = {"max_new_tokens": self.hc.max_new_tokens}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature)
        else:
            kwargs.update(do_sample=False)
        with torch.inference_mode():
            out = self._model.generate(**inputs, **kwargs)
        new = out[0, inputs["input_ids"].shape[1]:]
        return proc.decode(new, skip_special_tokens=True)

    def judge_sync(self, sample: Sample) -> Outcome:
        out = Outcome(status="failed")
        for attempt in range(self.cfg.max_attempts):
            temperature = self.cfg.temperature + self.cfg.temperature_step * attempt
            text = self.generate(sample, temperature)
            out.attempts = attempt + 1
            check = check_reply(text)
            out.raw_text = text
            out.attempt_log.append({"attempt": attempt + 1, "kind": "ok" if check.ok else check.kind})
            if check.ok:
                out.status, out.judgment, out.error_kind, out.errors, out.parsed = "ok", check.obj, None, [], None
                return out
            out.error_kind, out.errors, out.parsed = check.kind, check.errors, check.obj
            if not self.cfg.retry_invalid:
                break
        return out

    def preflight(self) -> None:
        pass

    async def judge(self, sample: Sample) -> Outcome:
        # one model, one forward at a time: run it off the event loop so progress keeps moving
        return await asyncio.get_running_loop().run_in_executor(None, self.judge_sync, sample)

    def close(self) -> None:
        pass


def build_tiny_vlm(out: str | Path, seed: int = 0, hidden: int = 32) -> Path:
    """Write a randomly initialised tiny Llava (+ processor with a chat template) to ``out``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    try:
        from transformers import CLIPImageProcessorPil as ImageProcessor  # transformers 5 without torchvision
    except ImportError:
        from transformers import CLIPImageProcessor as ImageProcessor

    torch.manual_seed(seed)
    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<unk>", "<s>", "</s>", "<pad>", "<image>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator([SYSTEM_PROMPT, '{"label": "happy", "consistent": true, "rationale": ""}'], trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    image_processor = ImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    proc = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=8,
                          vision_feature_select_strategy="default", chat_template=CHAT_TEMPLATE,
                          num_additional_image_tokens=1)
    cfg = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=32, patch_size=8),
        text_config=LlamaConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=2, vocab_size=len(tok),
                                max_position_embeddings=8192),
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    model = LlavaForConditionalGeneration(cfg)
    out = Path(out)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out

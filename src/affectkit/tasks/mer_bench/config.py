"""Settings of the MER-Bench judge and of the scoring; every inferred choice is an option here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from affectkit.core.config import help_field


@dataclass
class OpenAIConfig:
    """An OpenAI-compatible chat-completions server (vLLM, Ollama, llama.cpp, hosted APIs)."""

    base_url: str = help_field("http://127.0.0.1:8000/v1", "server root ending in /v1 (chat/completions is appended)")
    model: str = help_field("", "model name sent in the request (required for --judge openai)")
    api_key_env: str = help_field("OPENAI_API_KEY", "environment variable holding the API key (never logged or stored)")
    connect_timeout_s: float = help_field(10.0, "seconds to open a connection to the server (> 0)", min=0.001)
    read_timeout_s: float = help_field(
        120.0, "seconds a request may wait for the server's answer (> 0; a vision model answers in seconds to a minute)",
        min=0.001)
    max_tokens: int = help_field(900, "output token budget of the first attempt (the reference uses 900)", min=1)
    max_tokens_cap: int = help_field(4096, "a truncated reply doubles the budget, up to this cap", min=1)
    token_param: Literal["max_completion_tokens", "max_tokens", "both"] = help_field(
        "max_completion_tokens", "which request field carries the budget (some servers only read max_tokens)")
    response_format: Literal["json_schema", "json_object", "none"] = help_field(
        "json_schema", "structured-output mode sent to the server (strict JSON schema by default)")
    image_detail: str = help_field("auto", "image_url.detail value ('' leaves it out)")
    price_input: float = help_field(-1.0, "USD per 1M input tokens (-1: from OPENAI_PRICE_* env vars, else 0)", min=-1)
    price_cached_input: float = help_field(-1.0, "USD per 1M cached input tokens (-1: env, else the input price)", min=-1)
    price_output: float = help_field(-1.0, "USD per 1M output tokens (-1: env, else 0)", min=-1)


@dataclass
class HFConfig:
    """A local transformers vision-language model directory (AutoModelForImageTextToText)."""

    model_dir: str = help_field("", "path of the model directory (config, weights, processor)")
    max_new_tokens: int = help_field(900, "generation budget", min=1)
    dtype: str = help_field("auto", "torch dtype name for the weights (auto, float32, bfloat16, float16)")
    device: str = help_field("auto", "cpu, cuda or auto")
    trust_remote_code: bool = help_field(False, "allow the directory's own code (only if you trust it)")


@dataclass
class RulesConfig:
    """The offline ``rules`` judge: scores computed from the non-LLM metrics (a heuristic, not an MLLM)."""

    flat_contrast: float = help_field(4.0, "grey std below which the edited image counts as empty", min=0)
    quality_ref: float = help_field(0.25, "contrast ratio edited/source that earns visual quality 5 (> 0)", min=1e-6)
    valence_ref: float = help_field(0.4, "valence-proxy rise that earns visual emotion accuracy 5 (> 0)", min=1e-6)
    valence_min: float = help_field(0.05, "below this rise the visual target counts as missed (score <= 2)")
    tone_min: float = help_field(0.05, "below this VADER rise the text target counts as missed (score <= 2)")
    ssim_min: float = help_field(0.3, "SSIM below which the layout counts as not preserved", min=-1, max=1)
    use_ocr: bool = help_field(False, "read captions by OCR (pytesseract) when a system reports none")


@dataclass
class JudgeConfig:
    """Settings of `affectkit judge-memes` (MER-Bench MLLM-as-a-judge)."""

    backend: Literal["openai", "hf", "rules"] = help_field("rules", "judge backend (--judge): openai, hf or rules")
    view: Literal["model", "factor"] = help_field("model", "model view: every system on the same rows; factor view: quota per system, pooled")
    runs: int = help_field(1, "sampling runs (the paper uses 10)", min=1)
    sample: int = help_field(0, "rows per run (0: every row, one run; the paper uses 100 for Table 2, 50 per stratum)",
                             min=0)
    seed: int = help_field(42, "seed of the row sampler (one RNG for all runs, as in the reference)")
    stratify: bool = help_field(False, "factor view: one sampling plan per value of each factor (Table 3)")
    visual_type: str = help_field("", "only rows of this visual_type ('' = all)")
    sentiment_polarity: str = help_field("", "only rows of this sentiment_polarity ('' = all)")
    layout_type: str = help_field("", "only rows of this layout_type ('' = all)")
    concurrency: int = help_field(16, "requests in flight at once", min=1)
    max_attempts: int = help_field(7, "attempts per sample (1 + retries; the reference allows 6 retries)", min=1)
    retry_invalid: bool = help_field(True, "also retry replies that fail parsing or validation (the reference does not)")
    backoff_base_s: float = help_field(0.6, "exponential backoff base: base * 2^attempt seconds, +-25% jitter", min=0)
    backoff_cap_s: float = help_field(20.0, "cap of a backoff or Retry-After wait", min=0)
    sample_timeout_s: float = help_field(
        300.0, "openai judge: seconds one sample may take over all its attempts and waits, then it is a failure"
        " record 'timeout' (> 0; raise it with openai.read_timeout_s for a slow model)", min=0.001)
    deadline_s: float = help_field(
        0.0, "stop the whole run after this many seconds (0: no deadline); what was judged is kept, --resume continues",
        min=0)
    temperature: float = help_field(0.0, "sampling temperature of the first attempt", min=0)
    temperature_step: float = help_field(0.1, "added to the temperature on every retry (the reference's schedule)", min=0)
    rationale_first: bool = help_field(True, "rationale is the first key of every block (else the last)")
    images_first: bool = help_field(True, "images before the rubric text in the user message")
    include_reference: bool = help_field(True, "show the source caption, target caption and instruction to the judge")
    cache: str = help_field("", "SQLite cache path ('' = mer-bench/judge.sqlite3 under the affectkit cache, $AFFECTKIT_CACHE or ~/.cache/affectkit)")
    use_cache: bool = help_field(True, "read and write the cache")
    force_refresh: bool = help_field(False, "ignore cached judgments (still write new ones)")
    return_cached_errors: bool = help_field(False, "reuse cached failure records too")
    openai: OpenAIConfig = help_field(OpenAIConfig(), "the openai backend")
    hf: HFConfig = help_field(HFConfig(), "the hf backend")
    rules: RulesConfig = help_field(RulesConfig(), "the rules backend")


@dataclass
class EvalConfig:
    """Settings of `affectkit evaluate mer-bench` (scores from a judge-memes run)."""

    mer_compat: bool = help_field(
        False, "reproduce the reference's scoring: every parsed reply scored, invalid Likert fields 0.0, true = 1,"
        " a run with no usable judgment 0")
    alpha: float = help_field(3.0, "shift strength SS = 1 - exp(-alpha * S)", min=0)
    soft_floor: float = help_field(1e-3, "floor f of the soft-AND Overall score (> 0, at most 0.2 as in the reference)",
                                   min=1e-12, max=0.2)
    gm_floor: float = help_field(1e-12, "floor of each factor of the geometric mean in CF (> 0)", min=1e-300, max=1)
    nonllm: bool = help_field(True, "add the non-LLM metrics table (needs the benchmark images)")
    use_ocr: bool = help_field(False, "read captions by OCR for the non-LLM metrics when none is reported")


@dataclass
class Config:
    """MER-Bench (meme reappraisal): judge settings and scoring settings."""

    judge: JudgeConfig = help_field(JudgeConfig(), "affectkit judge-memes")
    evaluate: EvalConfig = help_field(EvalConfig(), "affectkit evaluate mer-bench")

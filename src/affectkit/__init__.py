"""affectkit: research methods of affective computing as one command-line toolkit."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy: ``affectkit.load_quantized(DIR)`` imports torch/transformers only when called.
    if name == "load_quantized":
        from affectkit.tasks.moe_quant import load_quantized

        return load_quantized
    raise AttributeError(f"module 'affectkit' has no attribute {name!r}")

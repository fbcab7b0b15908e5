"""Task ``act-prompt`` (in progress, not yet registered): Activation Prompts (AP; Zhang et al., "Visual Prompting Reimagined: The Power of
Activation Prompts", AISTATS 2026, arXiv 2604.06440). A universal learnable perturbation is added to the
activation map of one intermediate layer of a frozen pretrained image model; input-level visual prompting
(VP) is the special case of layer 0, and a channel-wise AP placed right after a norm layer equals tuning that
norm's bias. ``backbone`` wraps transformers ResNet / ViT (and timm) behind one hook-based interface,
``method_prompt`` holds AP, VP (pad / expansive), VPT-shallow and ILM-VP's label mapping, ``baselines`` sets
up linear probing, norm tuning, LoRA and full fine-tuning on the same backbone; ``data`` reads ImageFolder
trees, CSV lists and Hugging Face datasets (save_to_disk folders, parquet), ``synth`` writes the embedded
benchmark (a procedural source task for pretraining, and shifted downstream tasks including scikit-learn's
digits) as ImageFolder PNGs."""

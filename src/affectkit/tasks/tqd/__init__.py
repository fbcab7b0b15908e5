"""Task ``tqd`` (in progress, not yet registered): timestep-aware quality decoupling for video
diffusion training (arXiv 2603.25527; spec 6-7). Landed so far: the timestep samplers in one noise-level
convention with the diffusers conversions (``method_sampler``), the video scorer and typer writing
Open-Sora meta CSVs (``scoring``), the seeded procedural video generator (``synth``), the meta-CSV
clip dataset (``data``), the pixel-space denoisers (``model``), the rectified-flow loss and Euler
sampler (``method_flow``), the diagnostics: per-band held-out loss, gradient similarity, sample
metrics with a random-feature Frechet distance, plots (``diagnostics``), and the config and training
loop on the shared loop with the sampler as a config choice (``config``, ``train``)."""

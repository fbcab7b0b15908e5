"""Shared by the au-fe tests: the quick embedded benchmark, the tiny-model settings and a face video."""

import numpy as np
import pytest

TINY = ["--set", "data.image_size=32", "--set", "data.n_frames=8", "--set", "model.moe_hidden=32",
        "--set", "model.fe_mlp=64", "--set", "model.fe_heads=4", "--set", "model.tiny_width=32",
        "--set", "model.tiny_layers=2", "--set", "train.batch_size=2", "--set", "train.eval_every=0",
        "--set", "train.checkpoint_every=0"]


@pytest.fixture(scope="module")
def quick_data(tmp_path_factory):
    from affectkit.tasks.au_fe import synth

    out = tmp_path_factory.mktemp("aufe") / "data"
    out.mkdir()
    synth.make(out, seed=0, quick=True)
    return out


def face_video(path, frames=20, size=96):
    """A rendered face smiling over ``frames`` frames, as MJPG in an AVI (OpenCV's Haar cascade does not
    find these tiny rendered faces)."""
    import cv2

    from affectkit.tasks.au_fe.synth import _identity, render

    rng = np.random.default_rng(0)
    ident = _identity(rng, "fe")
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (size, size))
    for k in range(frames):
        img = render(ident, {12: min(1.0, k / 10)}, size, rng, 0.0, 1.0, 2.0, (0.0, 0.0))
        w.write(img[:, :, ::-1])
    w.release()

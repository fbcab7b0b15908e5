"""The embedded benchmark's generator: BP4D-like AU marginals and FACS-built expressions."""

import numpy as np

from affectkit.tasks.au_fe import facs
from affectkit.tasks.au_fe.data import AUSequence, split_au
from affectkit.tasks.au_fe.synth import AUS, BP4D_OCCURRENCE, BP4D_SUBJECTS, au_track, envelope


def test_au_occurrence_matches_bp4d_rates():
    rng = np.random.default_rng(0)
    prior = facs.prior("bp4d", "basic7")
    tracks = np.concatenate([au_track(64, rng, prior) for _ in range(150)])
    rates = (tracks >= 0.5).mean(0)
    for j, au in enumerate(AUS):
        assert abs(rates[j] - BP4D_OCCURRENCE[au]) < 0.06, (au, rates[j])


def test_aus_co_occur_as_in_expression_episodes():
    rng = np.random.default_rng(1)
    prior = facs.prior("bp4d", "basic7")
    on = np.concatenate([au_track(64, rng, prior) for _ in range(150)]) >= 0.5
    i6, i12, i15 = AUS.index(6), AUS.index(12), AUS.index(15)
    # happiness episodes tie AU6 to AU12 beyond independence; AU12 and AU15 never share an episode
    assert (on[:, i6] & on[:, i12]).mean() > on[:, i6].mean() * on[:, i12].mean() + 0.02
    assert (on[:, i6] & on[:, i12]).mean() > (on[:, i12] & on[:, i15]).mean()


def test_envelope_onset_apex_offset():
    env = envelope(12, onset=2, apex=3, offset=2, start=1, peak=0.8)
    assert env[0] == 0 and env[1] == 0.4 and np.allclose(env[3:6], 0.8) and env[8] == 0
    assert env[6] > env[7] > 0


def test_full_au_source_has_bp4ds_subjects_and_folds(tmp_path):
    # the full benchmark's AU source spells BP4D's 41 subject directories, so the official
    # subject-exclusive partition splits it 14 / 14 / 13
    assert len(BP4D_SUBJECTS) == len(set(BP4D_SUBJECTS)) == 41
    assert all(s[0] in "FM" and len(s) == 4 for s in BP4D_SUBJECTS)
    seqs = [AUSequence(s, f"{s}_T1", np.arange(1), [], np.zeros((1, 1)), np.ones((1, 1))) for s in BP4D_SUBJECTS]
    sizes = [len(split_au(seqs, fold, "bp4d", tmp_path)[1]) for fold in (1, 2, 3)]
    assert sizes == [14, 14, 13]

"""O, R, E, mu by direct counting (SPEC 3) against hand counts for the paper's architectures (SPEC 6)."""

import pytest

from glai.method.budget import parameter_budget

# (arch, O, R, E), rho = 0.5; counted by hand: O = sum (n_l + 1) n_{l+1}; E = n_out (n0 + 1) n1' + n_out.
HAND = {
    "A1": ((384, 256, 37), 108_069, 54_053, 1_823_397),
    "A2": ((768, 128, 14), 100_238, 50_126, 689_038),
    "B1": ((1280, 640, 128), 901_888, 451_008, 52_469_888),  # SPEC 3 erratum: R = 451,008, E = 52,469,888
    "B2": ((768, 768, 128), 689_024, 344_576, 37_798_016),
    "C1": ((576, 256, 5), 148_997, 74_501, 369_285),
    "C2": ((768, 512, 4), 395_780, 197_892, 787_460),
    "digits": ((64, 128, 10), 9_610, 4_810, 41_610),
}


@pytest.mark.parametrize("name", list(HAND))
def test_budget_matches_hand_counts(name):
    arch, O, R, E = HAND[name]
    b = parameter_budget(arch, 0.5)
    assert (b.O, b.R, b.E) == (O, R, E)
    assert b.mu == pytest.approx((O - R) / E)
    assert not b.mu_clipped
    assert b.R + b.kept == b.O  # parameter parity (paper 4.2)
    assert b.kept_paths == b.kept - arch[-1]


def test_a1_keeps_54016_of_1_82M():
    b = parameter_budget((384, 256, 37), 0.5)
    assert b.kept == 54_016 and round(b.mu, 4) == 0.0296


def test_two_hidden_layers_count_bias_started_paths():
    # (3, 4, 4, 2) reduced by 0.5 -> (3, 2, 2, 2): per output, input paths (3 + 1) * 2 * 2, b1-started paths 2.
    b = parameter_budget((3, 4, 4, 2), 0.5)
    assert b.R == (3 * 2 + 2) + (2 * 2 + 2) + (2 * 2 + 2)
    assert b.E == 2 * (4 * 2 * 2 + 2) + 2


def test_mu_above_one_keeps_everything():
    # (4, 8, 2) with rho 0.25 -> (4, 2, 2): O = 58, R = 16, E = 22, mu = 42/22 > 1 (paper Remark 5)
    b = parameter_budget((4, 8, 2), 0.25)
    assert (b.O, b.R, b.E) == (58, 16, 22)
    assert b.mu == pytest.approx(42 / 22) and b.mu_clipped
    assert b.kept == b.E and b.kept_paths == b.E - 2


@pytest.mark.parametrize("rho", [0.0, 1.5, -0.1])
def test_bad_rho(rho):
    with pytest.raises(ValueError, match="rho"):
        parameter_budget((64, 128, 10), rho)


def test_bottleneck_rho():
    with pytest.raises(ValueError, match="n_out"):
        parameter_budget((64, 128, 10), 0.05)

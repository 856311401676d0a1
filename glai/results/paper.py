"""The GLAI paper's reported numbers (arXiv 2510.00883v2, Tables 2-5; docs/method.md,
Statistics) as data.

Used only to print the paper's values beside ours (``glai.results.tables.comparison_table``); never an input to
training. Accuracies are in percent, losses dimensionless, speedups are T_MLP / T_model.
"""

from __future__ import annotations

__all__ = [
    "HEADS",
    "EXPERIMENTS",
    "MONITOR",
    "TABLE2",
    "TABLE3",
    "TABLE4",
    "TABLE5",
    "HEADLINE_SPEEDUP",
]

#: Head names in the order of the paper's tables.
HEADS = ("mlp", "mlp_reduced", "glai", "linear")

#: Experiment codes of the paper (Table 1).
EXPERIMENTS = ("A1", "A2", "B1", "B2", "C1", "C2")

#: Monitored validation metric per experiment (paper 4.1): accuracy for A and C, loss for B.
MONITOR = {"A1": "val_acc", "A2": "val_acc", "B1": "val_loss", "B2": "val_loss",
           "C1": "val_acc", "C2": "val_acc"}

#: Table 2: settings and epochs to convergence (mean, std over 3 seeds). ``glai_epochs`` is the paper's
#: "Epochs to conv." of GLAI, which equals Table 3's GLAI epochs (the estimator phase), although the text
#: calls it the sum with the reduced epochs (A1: 14.33 < 20 reduced epochs).
TABLE2 = {
    "A1": {"lr": 1e-3, "bs": 16, "wd_mlp": 1e-3, "mlp_epochs": (60.00, 0.00), "wd_glai": 0.1, "rho": 0.5,
           "reduced_epochs": 20, "glai_epochs": (14.33, 3.21)},
    "A2": {"lr": 1e-3, "bs": 16, "wd_mlp": 1e-3, "mlp_epochs": (37.33, 3.06), "wd_glai": 0.1, "rho": 0.5,
           "reduced_epochs": 20, "glai_epochs": (6.67, 0.58)},
    "B1": {"lr": 1e-3, "bs": 16, "wd_mlp": 1e-3, "mlp_epochs": (31.33, 2.08), "wd_glai": 0.1, "rho": 0.5,
           "reduced_epochs": 60, "glai_epochs": (8.33, 3.51)},
    "B2": {"lr": 1e-4, "bs": 16, "wd_mlp": 1e-2, "mlp_epochs": (9.33, 1.53), "wd_glai": 0.1, "rho": 0.5,
           "reduced_epochs": 2, "glai_epochs": (2.00, 0.00)},
    "C1": {"lr": 1e-3, "bs": 16, "wd_mlp": 1e-3, "mlp_epochs": (154.00, 110.69), "wd_glai": 0.1, "rho": 0.5,
           "reduced_epochs": 30, "glai_epochs": (43.67, 6.81)},
    "C2": {"lr": 1e-3, "bs": 32, "wd_mlp": 1e-2, "mlp_epochs": (78.00, 38.11), "wd_glai": 0.1, "rho": 0.5,
           "reduced_epochs": 30, "glai_epochs": (43.00, 7.81)},
}


def _row(epochs, speedup, bvs):
    return {"epochs": epochs, "speedup": speedup, "bvs": bvs}


#: Table 3: experiment -> head -> {"epochs", "speedup", "bvs"}, each (mean, std) over 3 seeds.
#: The MLP's speedup is 1 by definition (std 0).
TABLE3 = {
    "A1": {
        "mlp": _row((60.00, 0.00), (1.0, 0.0), (88.05, 0.28)),
        "mlp_reduced": _row((60.00, 0.00), (1.01, 0.02), (86.60, 1.52)),
        "glai": _row((14.33, 3.21), (2.54, 0.52), (90.75, 0.28)),
        "linear": _row((53.00, 7.55), (1.32, 0.13), (90.57, 0.21)),
    },
    "A2": {
        "mlp": _row((37.33, 3.06), (1.0, 0.0), (97.70, 0.01)),
        "mlp_reduced": _row((37.00, 1.00), (1.02, 0.08), (97.68, 0.03)),
        "glai": _row((6.67, 0.58), (3.50, 0.46), (97.89, 0.16)),
        "linear": _row((24.33, 13.32), (2.68, 2.16), (95.44, 0.04)),
    },
    "B1": {
        "mlp": _row((31.33, 2.08), (1.0, 0.0), (1.63e-4, 0.55e-4)),
        "mlp_reduced": _row((23.33, 2.89), (0.91, 0.14), (1.87e-4, 0.25e-4)),
        "glai": _row((8.33, 3.51), (1.05, 0.40), (1.70e-4, 0.53e-4)),
        "linear": _row((60.00, 0.00), (0.81, 0.05), (3.00e-4, 1.30e-4)),
    },
    "B2": {
        "mlp": _row((9.33, 1.53), (1.0, 0.0), (0.209, 0.010)),
        "mlp_reduced": _row((9.67, 0.58), (0.97, 0.12), (0.220, 0.013)),
        "glai": _row((2.00, 0.00), (1.56, 0.25), (0.159, 0.013)),
        "linear": _row((6.33, 1.15), (2.30, 0.26), (0.181, 0.002)),
    },
    "C1": {
        "mlp": _row((154.00, 110.69), (1.0, 0.0), (90.00, 8.00)),
        "mlp_reduced": _row((188.33, 30.66), (0.91, 0.64), (90.00, 10.00)),
        "glai": _row((43.67, 6.81), (1.85, 1.24), (96.67, 3.06)),
        "linear": _row((198.33, 25.42), (1.07, 0.89), (95.33, 6.43)),
    },
    "C2": {
        "mlp": _row((78.00, 38.11), (1.0, 0.0), (52.50, 5.00)),
        "mlp_reduced": _row((66.33, 41.48), (2.43, 2.69), (55.00, 5.00)),
        "glai": _row((43.00, 7.81), (0.92, 0.48), (48.33, 12.58)),
        "linear": _row((74.67, 22.14), (1.39, 0.59), (51.67, 3.82)),
    },
}

#: Table 4: one-sided paired Wilcoxon p-values against the MLP, n = 18: model -> (time p, BVS p).
TABLE4 = {"glai": (0.0069, 0.0276), "mlp_reduced": (0.4325, 0.8597), "linear": (0.0152, 0.2475)}

#: Table 5: GLAI against the simplified alternatives (baseline as reference), n = 18:
#: baseline -> (time p, BVS p).
TABLE5 = {"linear": (0.0649, 0.0564), "mlp_reduced": (0.0038, 0.0177)}

#: Headline mean-of-ratios speedup of GLAI over the MLP (paper 4.3) and its reported asymmetric spread.
#: The spread (+1.25 / -0.96) cannot be recomputed from Table 3; the paper does not say how it was obtained.
HEADLINE_SPEEDUP = {"mean": 1.92, "plus": 1.25, "minus": 0.96}

"""The PC-Talk paper's Tables 1–3: their columns and the paper's own numbers, printed beside ours."""

from __future__ import annotations

__all__ = ["COLUMNS", "LOWER_IS_BETTER", "PAPER"]

#: Metrics of each table, per dataset block, in the paper's column order.
COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "table1": {
        "HDTF": ("lse_c", "lse_d", "fid", "niqe", "fvd"),
        "MEAD-Neutral": ("lse_c", "lse_d", "fid", "niqe", "fvd"),
    },
    "table2": {
        "HDTF": ("lse_c", "lse_d", "fid", "niqe", "fvd", "acc_emo"),
        "MEAD": ("lse_c", "lse_d", "fid", "niqe", "fvd", "acc_emo", "efid"),
    },
    "table3": {"HDTF": ("lse_c",)},
}

#: Metric names as the paper prints them.
LABELS = {"lse_c": "LSE-C↑", "lse_d": "LSE-D↓", "fid": "FID↓", "niqe": "NIQE↓", "fvd": "FVD↓", "acc_emo": "Acc_emo↑",
          "efid": "E-FID↓"}  # fmt: skip
LOWER_IS_BETTER = {"lse_d", "fid", "niqe", "fvd", "efid"}

#: The paper's rows for PC-Talk: table -> row label -> dataset block -> metric -> value.
PAPER: dict[str, dict[str, dict[str, dict[str, float]]]] = {
    "table1": {
        "Ours (w/o Aug Data), video input": {
            "HDTF": {"lse_c": 9.03, "lse_d": 6.69, "fid": 15.51, "niqe": 13.49, "fvd": 100.85},
            "MEAD-Neutral": {"lse_c": 8.29, "lse_d": 7.59, "fid": 24.88, "niqe": 12.04, "fvd": 170.56},
        },
        "Ours (w/o Aug Data), image input": {
            "HDTF": {"lse_c": 9.26, "lse_d": 6.55, "fid": 32.15, "niqe": 13.34, "fvd": 209.85},
            "MEAD-Neutral": {"lse_c": 7.93, "lse_d": 7.73, "fid": 34.22, "niqe": 12.51, "fvd": 147.84},
        },
        "Ours (w Aug Data), image input": {
            "HDTF": {"lse_c": 9.37, "lse_d": 6.44, "fid": 33.07, "niqe": 13.29, "fvd": 205.55},
            "MEAD-Neutral": {"lse_c": 8.19, "lse_d": 7.69, "fid": 35.22, "niqe": 12.48, "fvd": 153.81},
        },
    },
    "table2": {
        "Ours": {
            "HDTF": {"lse_c": 8.56, "lse_d": 7.20, "fid": 24.05, "niqe": 13.762, "fvd": 270.85, "acc_emo": 46.19},
            "MEAD": {
                "lse_c": 7.83,
                "lse_d": 7.74,
                "fid": 35.26,
                "niqe": 12.05,
                "fvd": 190.05,
                "acc_emo": 72.32,
                "efid": 1.88,
            },
        },
    },
    "table3": {
        "no lip keypoints": {"HDTF": {"lse_c": 8.26}},
        "+ lip keypoints": {"HDTF": {"lse_c": 8.47}},
        "+ lip refiner": {"HDTF": {"lse_c": 9.26}},
        "+ data augmentation": {"HDTF": {"lse_c": 9.37}},
    },
}

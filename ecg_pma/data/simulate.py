"""
A small physiological 12-lead ECG simulator for the offline demo and tests: beats built from Gaussian P, Q, R, S and
T waves whose 3-D electrical directions are projected on the 12 lead axes, with rhythm classes (sinus rhythm,
tachycardia, bradycardia, atrial fibrillation) and morphology classes (wide QRS, inverted T), baseline wander and
noise. Written as real WFDB records with a labels CSV, so the demo runs through the same loaders as real data.

It is a teaching signal, not a clinical model: classes differ in the textbook features only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..configuration_ecg_pma import STANDARD_LEAD_NAMES


# Written beside the records, so that models trained on them can say that their data was simulated.
SIMULATED_MARKER = "simulated.json"
LABELS = ("atrial_fibrillation", "tachycardia", "bradycardia", "wide_qrs", "inverted_t")
RHYTHMS = ("sinus", "atrial_fibrillation", "tachycardia", "bradycardia")


def _direction(azimuth_deg: float, elevation_deg: float = 0.0) -> np.ndarray:
    azimuth, elevation = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.array([np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation), np.sin(elevation)])


# Lead axes: limb leads in the frontal plane (x left, y down), chest leads around the horizontal plane (z forward).
LEAD_AXES = np.stack(
    [_direction(a) for a in (0, 60, 120, -150, -30, 90)]
    + [np.array([np.cos(np.radians(a)), 0.15, np.sin(np.radians(a))]) for a in (115, 95, 75, 55, 30, 0)]
)


def simulate_ecg(
    rhythm: str,
    wide_qrs: bool,
    inverted_t: bool,
    rng: np.random.Generator,
    sampling_rate: int = 500,
    seconds: float = 10.0,
) -> np.ndarray:
    """One 12-lead ECG `(leads, samples)` in mV."""
    if rhythm not in RHYTHMS:
        raise ValueError(f"Unknown rhythm {rhythm!r}; expected one of {RHYTHMS}.")
    samples = int(seconds * sampling_rate)
    time = np.arange(samples) / sampling_rate
    heart_rate = {
        "sinus": (60, 95),
        "tachycardia": (110, 150),
        "bradycardia": (38, 52),
        "atrial_fibrillation": (70, 130),
    }
    rate = rng.uniform(*heart_rate[rhythm])
    mean_rr = 60.0 / rate
    if rhythm == "atrial_fibrillation":
        intervals = mean_rr * rng.uniform(0.55, 1.45, size=int(seconds / mean_rr) + 4)  # irregularly irregular
    else:
        intervals = mean_rr * (1 + 0.03 * rng.standard_normal(int(seconds / mean_rr) + 4))
    beats = np.cumsum(intervals) - rng.uniform(0, mean_rr)

    axis = rng.uniform(-20, 80)
    qrs_width = rng.uniform(0.028, 0.036) if wide_qrs else rng.uniform(0.009, 0.013)
    qt = 0.22 + 0.1 * np.sqrt(mean_rr)
    # (offset from R in s, width in s, amplitude in mV, direction) of each wave
    waves = [
        (-0.03 - qrs_width, qrs_width * 0.8, -0.12, _direction(axis + 150, 10)),  # Q
        (0.0, qrs_width, rng.uniform(0.9, 1.5), _direction(axis, -25)),  # R
        (0.03 + 1.5 * qrs_width, qrs_width * 1.2, -0.3, _direction(axis + 160, 40)),  # S
        (
            qt,
            rng.uniform(0.04, 0.06),
            rng.uniform(0.25, 0.4) * (-1 if inverted_t else 1),
            _direction(axis - 10, -15),
        ),  # T
    ]
    if rhythm != "atrial_fibrillation":
        waves.append((-rng.uniform(0.14, 0.19), 0.025, rng.uniform(0.1, 0.18), _direction(50, -10)))  # P

    dipole = np.zeros((samples, 3))
    for beat in beats:
        for offset, width, amplitude, direction in waves:
            centre = beat + offset
            near = np.abs(time - centre) < 5 * width
            dipole[near] += amplitude * np.exp(-0.5 * ((time[near] - centre) / width) ** 2)[:, None] * direction
    ecg = dipole @ LEAD_AXES.T  # (samples, leads)

    if rhythm == "atrial_fibrillation":
        f_wave = 0.05 * np.sin(2 * np.pi * rng.uniform(5, 8) * time + rng.uniform(0, 2 * np.pi))
        ecg += f_wave[:, None] * (LEAD_AXES @ _direction(60))[None, :]
    wander = rng.uniform(0.05, 0.2) * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * time + rng.uniform(0, 2 * np.pi))
    ecg += wander[:, None] + 0.02 * rng.standard_normal(ecg.shape)
    return ecg.T


def write_simulated_dataset(
    output_dir: str | Path,
    num_records: int = 240,
    seed: int = 0,
    sampling_rate: int = 500,
    seconds: float = 10.0,
) -> Path:
    """
    Writes `num_records` WFDB records (`sim00000.hea/.dat`, 16-bit) and `labels.csv` (record, labels separated by
    `;`, split 80/10/10) and `simulated.json` (the settings) into `output_dir`, ready for `load_wfdb_folder(output_dir, labels_csv=...)`.
    """
    import wfdb

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = ["record,labels,split"]
    for index in range(num_records):
        rhythm = RHYTHMS[index % len(RHYTHMS)]
        wide_qrs, inverted_t = bool(rng.random() < 0.35), bool(rng.random() < 0.35)
        ecg = simulate_ecg(rhythm, wide_qrs, inverted_t, rng, sampling_rate, seconds)
        name = f"sim{index:05d}"
        wfdb.wrsamp(
            name,
            fs=sampling_rate,
            units=["mV"] * 12,
            sig_name=list(STANDARD_LEAD_NAMES),
            p_signal=ecg.T,
            fmt=["16"] * 12,
            write_dir=str(output_dir),
        )
        labels = [rhythm] if rhythm != "sinus" else []
        labels += [name for name, flag in (("wide_qrs", wide_qrs), ("inverted_t", inverted_t)) if flag]
        # consecutive records cycle through the rhythms: split by groups of them, so every split has every rhythm
        group = (index // len(RHYTHMS)) % 10
        split = "train" if group < 8 else ("validation" if group == 8 else "test")
        rows.append(f"{name},{';'.join(labels)},{split}")
    (output_dir / "labels.csv").write_text("\n".join(rows) + "\n")
    settings = {"simulator": __name__, "num_records": num_records, "seed": seed, "sampling_rate": sampling_rate}
    (output_dir / SIMULATED_MARKER).write_text(json.dumps(settings, indent=2) + "\n")
    return output_dir


def is_simulated_folder(folder: str | Path) -> bool:
    """Whether `folder` was written by `write_simulated_dataset` (it leaves `simulated.json` beside the records)."""
    return (Path(folder) / SIMULATED_MARKER).exists()

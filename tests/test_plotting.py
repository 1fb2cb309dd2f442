"""
The ECG paper plot, checked in its pixels: grid pitch, calibration pulse, leads in their panels and clipped to them,
absent leads, the patient block from the header, and a heat strip with its colour scale that leaves the trace alone.
"""

import datetime

import numpy as np
import pytest
import wfdb
from conftest import shared_data_dir

from ecg_pma.configuration_ecg_pma import STANDARD_LEAD_NAMES
from ecg_pma.visualization.explain import Explanation
from ecg_pma.visualization.plotting import (
    PATIENT_BLOCK_HEIGHT_MM,
    ROW_HEIGHT_MM,
    SEGMENT_SECONDS,
    figure_to_array,
    paper_size_mm,
    plot_ecg,
    row_baseline_mm,
    save_figure,
)


RATE = 500
# The clinical layout, written out here rather than read from the module under test.
CLINICAL_LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of every run of True in a 1-D mask."""
    padded = np.concatenate([[False], mask, [False]]).astype(int)
    starts = np.flatnonzero(np.diff(padded) == 1)
    stops = np.flatnonzero(np.diff(padded) == -1) - 1
    return list(zip(starts, stops))


def pixel_row(y_mm: float, px_per_mm: float) -> int:
    """The image row of a paper height (the paper and the patient block above it fill the figure when there is no
    title or side panel)."""
    return int(round((paper_size_mm()[1] + PATIENT_BLOCK_HEIGHT_MM - y_mm) * px_per_mm))


def dark(image: np.ndarray) -> np.ndarray:
    """Trace and text pixels (black), not grid pixels (pink/red) nor background."""
    return image[..., :3].max(axis=-1) < 110


def square_waves(amplitudes, period_s=0.4, seconds=10.0):
    """One 0 / amplitude square wave per lead, `(leads, samples)` at 500 Hz."""
    t = np.arange(int(seconds * RATE)) / RATE
    high = (t % period_s) < period_s / 2
    return np.stack([np.where(high, a, 0.0) for a in amplitudes])


@pytest.mark.parametrize("dpi", [254, 127])
def test_grid_pitch_is_one_millimetre_at_the_chosen_dpi(dpi):
    image = figure_to_array(plot_ecg(np.zeros((12, 5000)), sampling_rate=RATE, dpi=dpi))
    px_per_mm = dpi / 25.4
    width_mm, height_mm = paper_size_mm()
    assert image.shape[:2] == (round((height_mm + PATIENT_BLOCK_HEIGHT_MM) * px_per_mm), round(width_mm * px_per_mm))
    # A pixel row between two horizontal grid lines, below the first grid row's trace and label.
    row = image[pixel_row(row_baseline_mm(0) - 7.5, px_per_mm)].astype(int)
    red = (row[:, 0] - row[:, 1]) > 25
    centres = np.array([(a + b) / 2 for a, b in runs(red)])
    assert len(centres) == pytest.approx(width_mm + 1, abs=2)
    assert np.median(np.diff(centres)) == pytest.approx(px_per_mm, abs=0.5)
    # every line sits on a whole millimetre
    assert np.abs(centres / px_per_mm - np.round(centres / px_per_mm)).max() * px_per_mm < 1.5
    major = (row[:, 0] - row[:, 1]) > 75
    major_centres = np.array([(a + b) / 2 for a, b in runs(major)])
    assert np.median(np.diff(major_centres)) == pytest.approx(5 * px_per_mm, abs=0.6)


def test_calibration_pulse_is_ten_millimetres_tall():
    dpi = 254
    px_per_mm = dpi / 25.4
    image = figure_to_array(plot_ecg(np.zeros((12, 5000)), sampling_rate=RATE, dpi=dpi))
    traces = dark(image)
    for row in range(4):
        baseline = row_baseline_mm(row)
        band = slice(pixel_row(baseline + 14, px_per_mm), pixel_row(baseline - 4, px_per_mm))
        top = runs(traces[band, round(5.0 * px_per_mm)])  # middle of the pulse: only its top edge is drawn there
        bottom = runs(traces[band, round(1.0 * px_per_mm)])  # before the pulse: the baseline
        assert len(top) == 1 and len(bottom) == 1
        height_px = np.mean(bottom[0]) - np.mean(top[0])
        assert height_px == pytest.approx(10 * px_per_mm, abs=1.0)


def panel_extent_mm(traces, px_per_mm, row, column, columns=1):
    """Vertical extent (mm) of the trace in a panel, away from its label and the lead-change marks."""
    baseline = row_baseline_mm(row)
    left = 10 + column * SEGMENT_SECONDS * 25 + 10
    right = 10 + (column + columns) * SEGMENT_SECONDS * 25 - 2
    band = traces[
        pixel_row(baseline + 15, px_per_mm) : pixel_row(baseline - 15, px_per_mm),
        round(left * px_per_mm) : round(right * px_per_mm),
    ]
    rows = np.flatnonzero(band.any(axis=1))
    return (rows.max() - rows.min()) / px_per_mm if len(rows) else 0.0, band


def test_each_lead_is_drawn_in_its_panel_at_10_mm_per_mv_and_25_mm_per_s():
    dpi = 127
    px_per_mm = dpi / 25.4
    amplitudes = [0.3 + 0.1 * i for i in range(12)]  # mV: each lead recognisable by its height
    image = figure_to_array(plot_ecg(square_waves(amplitudes), sampling_rate=RATE, baseline=None, dpi=dpi))
    traces = dark(image)
    line_mm = 1.0  # the trace's own width, about 0.8 pt, both edges
    for row, names in enumerate(CLINICAL_LAYOUT):
        for column, lead in enumerate(names):
            extent, band = panel_extent_mm(traces, px_per_mm, row, column)
            expected = amplitudes[STANDARD_LEAD_NAMES.index(lead)] * 10
            assert extent == pytest.approx(expected, abs=line_mm), lead
    # the rhythm strip is lead II
    extent, band = panel_extent_mm(traces, px_per_mm, 3, 0, columns=4)
    assert extent == pytest.approx(amplitudes[1] * 10, abs=line_mm)
    # 25 mm/s: the edges of a 0.4 s square wave are 5 mm apart
    edges = [np.mean(run) for run in runs(band.sum(axis=0) > 2 * px_per_mm)]
    assert np.median(np.diff(edges)) / px_per_mm == pytest.approx(5.0, abs=0.3)


def test_absent_leads_are_labelled_absent_and_not_drawn():
    dpi = 127
    px_per_mm = dpi / 25.4
    present = ["I", "V2", "aVF"]
    signals = square_waves([1.0, 1.0, 1.0])
    figure = plot_ecg(signals, sampling_rate=RATE, lead_names=present, dpi=dpi)
    texts = {text.get_text() for ax in figure.axes for text in ax.texts}
    absent = [lead for lead in STANDARD_LEAD_NAMES if lead not in present]
    assert {f"{lead} absent" for lead in absent} <= texts
    assert "II absent" in texts  # the rhythm strip too
    assert not any(f"{lead} absent" in texts for lead in present)
    traces = dark(figure_to_array(figure))
    for row, names in enumerate(CLINICAL_LAYOUT):
        for column, lead in enumerate(names):
            extent, band = panel_extent_mm(traces, px_per_mm, row, column)
            # the label sits 17 mm above the baseline, above the +-15 mm band; look below the band's top anyway
            below_label = band[round(2 * px_per_mm) :]
            if lead in present:
                assert extent == pytest.approx(10, abs=1.0), lead
            else:
                assert not below_label.any(), f"{lead} is absent but something is drawn in its panel"


def test_a_real_record_is_written_as_png_svg_and_pdf(tmp_path):
    record = shared_data_dir("physionet2021") / "JS20003"  # its header writes the unit as `mv`
    figure = plot_ecg(record, title="JS20003", layer_weights=[0.25, 0.25, 0.5])
    magic = {".png": b"\x89PNG", ".svg": b"<?xml", ".pdf": b"%PDF"}
    for suffix, start in magic.items():
        path = save_figure(figure, tmp_path / f"ecg{suffix}")
        assert path.read_bytes().startswith(start)
    with pytest.raises(ValueError, match=r"\.png, \.svg, \.pdf"):
        save_figure(figure, tmp_path / "ecg.jpg")


def test_unknown_leads_and_missing_rate_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown lead names \['X1'\]"):
        plot_ecg(np.zeros((2, 5000)), sampling_rate=RATE, lead_names=["I", "X1"])
    with pytest.raises(ValueError, match="sampling_rate"):
        plot_ecg(np.zeros((12, 5000)))


def test_each_trace_is_clipped_to_its_own_panel_band():
    dpi = 127
    px_per_mm = dpi / 25.4
    quiet = np.zeros((12, 5000))
    loud = quiet.copy()
    loud[1] = square_waves([3.0], period_s=0.8)[0] * 2 - 3.0  # lead II swinging +-3 mV: 30 mm, past half a row
    difference = dark(figure_to_array(plot_ecg(loud, sampling_rate=RATE, baseline=None, dpi=dpi))) != dark(
        figure_to_array(plot_ecg(quiet, sampling_rate=RATE, baseline=None, dpi=dpi))
    )
    changed_rows = np.flatnonzero(difference.any(axis=1))
    assert len(changed_rows), "lead II was not drawn"
    allowed = np.zeros(len(difference), dtype=bool)
    for row in (1, 3):  # lead II's grid row and the lead II rhythm strip
        top = pixel_row(row_baseline_mm(row) + ROW_HEIGHT_MM / 2, px_per_mm)
        bottom = pixel_row(row_baseline_mm(row) - ROW_HEIGHT_MM / 2, px_per_mm)
        allowed[top - 1 : bottom + 2] = True
    assert allowed[changed_rows].all(), "a trace ran out of its panel band into the next row"
    # and it reaches its band's edges: clipped there, not scaled down
    top_of_band = pixel_row(row_baseline_mm(1) + ROW_HEIGHT_MM / 2, px_per_mm)
    assert difference[top_of_band : top_of_band + 3].any()


def test_the_patient_block_comes_from_the_header(tmp_path):
    record = shared_data_dir("physionet2021") / "HR06009"  # its header: `# Age: 61`, `# Sex: Female`, no date
    figure = plot_ecg(record)
    texts = " ".join(text.get_text() for text in figure.texts)
    for expected in ("Record HR06009", "Age 61", "Sex Female", "Date not recorded", "25 mm/s", "10 mm/mV"):
        assert expected in texts, texts
    assert "Display filter: none (unfiltered signal), each 2.5 s segment centred on its median" in texts
    assert str(record.parent) not in texts  # the record's name, never the server's folders
    dated = wfdb.rdrecord(str(record))
    wfdb.wrsamp(
        "dated", fs=dated.fs, units=["mV"] * 12, sig_name=dated.sig_name, p_signal=dated.p_signal,
        fmt=["16"] * 12, comments=["Age: 47", "Sex: Male"], base_date=datetime.date(2020, 3, 1),
        base_time=datetime.time(14, 5, 0), write_dir=str(tmp_path),
    )  # fmt: skip
    texts = " ".join(text.get_text() for text in plot_ecg(tmp_path / "dated", baseline=None).texts)
    assert "Age 47" in texts and "Sex Male" in texts and "Date 2020-03-01 14:05:00" in texts
    assert "Display filter: none (unfiltered signal), values as recorded" in texts
    texts = " ".join(text.get_text() for text in plot_ecg(np.zeros((12, 5000)), sampling_rate=RATE).texts)
    assert "Age not recorded" in texts and "Sex not recorded" in texts


def test_the_heat_strip_has_a_colour_scale_and_leaves_the_trace_visible():
    dpi = 127
    px_per_mm = dpi / 25.4
    signals = square_waves([1.0] * 12)
    attributions = np.random.default_rng(0).normal(size=(12, 20))
    explanation = Explanation(
        label="AF", label_index=0, lead_names=list(STANDARD_LEAD_NAMES), attributions=np.zeros((12, 1000)),
        patch_attributions=attributions, patch_seconds=0.5, start_seconds=0.0, logit=0.0, baseline_logit=0.0,
        convergence_delta=0.0,
    )  # fmt: skip
    plain = figure_to_array(plot_ecg(signals, sampling_rate=RATE, baseline=None, dpi=dpi))
    explained_figure = plot_ecg(signals, sampling_rate=RATE, baseline=None, dpi=dpi, explanation=explanation)
    explained = figure_to_array(explained_figure)
    paper = explained[:, : plain.shape[1]]  # the explanation adds the colour scale to the right of the paper
    for row in range(4):
        baseline = row_baseline_mm(row)
        trace_area = slice(pixel_row(baseline + 15, px_per_mm), pixel_row(baseline - 15, px_per_mm))
        # the strip lies at the bottom of the band, below the trace: the trace's pixels are exactly as without it
        assert np.array_equal(paper[trace_area], plain[trace_area]), row
        strip = slice(pixel_row(baseline - ROW_HEIGHT_MM / 2 + 2.5, px_per_mm), pixel_row(baseline - 19, px_per_mm))
        assert not np.array_equal(paper[strip], plain[strip]), f"no heat strip in row {row}"
    scales = [ax for ax in explained_figure.axes if ax.get_title().startswith("Heat strip: attribution to AF")]
    assert len(scales) == 1 and [t.get_text() for t in scales[0].get_xticklabels()] == ["lowers", "0", "raises"]


def test_the_heat_strip_follows_the_plotted_start():
    dpi = 127
    px_per_mm = dpi / 25.4
    attributions = np.zeros((12, 20))
    attributions[0, 5] = 1.0  # lead I, the patch from 2.5 s to 3.0 s of the record
    explanation = Explanation(
        label="AF", label_index=0, lead_names=list(STANDARD_LEAD_NAMES), attributions=np.zeros((12, 1000)),
        patch_attributions=attributions, patch_seconds=0.5, start_seconds=0.0, logit=0.0, baseline_logit=0.0,
        convergence_delta=0.0,
    )  # fmt: skip
    signals = np.zeros((12, 7500))
    plain = figure_to_array(plot_ecg(signals, sampling_rate=RATE, start=2.5, dpi=dpi))
    explained = figure_to_array(plot_ecg(signals, sampling_rate=RATE, start=2.5, dpi=dpi, explanation=explanation))
    strip_row = pixel_row(row_baseline_mm(0) - ROW_HEIGHT_MM / 2 + 1.5, px_per_mm)
    changed = np.flatnonzero((explained[strip_row, : plain.shape[1]] != plain[strip_row]).any(axis=-1)) / px_per_mm
    # plotted from 2.5 s: the record's 2.5-3.0 s are the first half second of the paper, 10 to 22.5 mm
    assert changed.min() == pytest.approx(10.0, abs=0.5) and changed.max() == pytest.approx(22.5, abs=0.5)

"""
12-lead ECG plots on ECG paper, as clinicians read them: a 3x4 grid of 2.5 s segments (I, aVR, V1, V4 / II, aVL, V2,
V5 / III, aVF, V3, V6) and a 10 s lead II rhythm strip, at 25 mm/s and 10 mm/mV on a 1 mm / 5 mm grid, each row
starting with a 1 mV calibration pulse. As clinical printers do, rows are 40 mm apart, each trace is clipped to its own
panel band (a large complex never runs into the next row), and a patient block above the paper gives the record's
name, age, sex and date from its header, the paper speed, gain and the display filter. Optionally overlaid with an
explanation (a heat strip of per-patch attributions along the bottom of each panel, with its colour scale, see
`ecg_pma.visualization.explain`) and the PMA layer weights as a bar chart beside the paper.

The paper is drawn in millimetres and the figure is sized so that one millimetre of paper is exactly `dpi / 25.4`
pixels in the saved image: a printout at the figure's size is true to scale. Figures are built without pyplot (no
display, no global state), so plotting is safe in servers and threads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..configuration_ecg_pma import STANDARD_LEAD_NAMES
from ..feature_extraction_ecg_pma import EcgPmaFeatureExtractor, EcgRecord, canonical_lead_key
from ..formats import read_ecg
from ..formats.wfdb import wfdb_metadata


# The standard clinical layout: rows of four 2.5 s columns, then a 10 s rhythm strip.
GRID_LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
RHYTHM_LEAD = "II"
PAPER_SPEED_MM_PER_S = 25.0
GAIN_MM_PER_MV = 10.0
SEGMENT_SECONDS = 2.5
ROW_HEIGHT_MM = 40.0  # 10 mm/mV: +-2 mV fit a row's band before the trace is clipped
CALIBRATION_WIDTH_MM = 10.0  # the pulse (0.2 s = 5 mm wide) with 2.5 mm of baseline on each side
CALIBRATION_MV = 1.0
PULSE_SECONDS = 0.2
TITLE_HEIGHT_MM = 12.0
PATIENT_LINE_MM = 5.0  # one line of the patient block above the paper
PATIENT_BLOCK_HEIGHT_MM = 16.0  # its three lines at most
SIDE_PANEL_WIDTH_MM = 70.0
HEAT_STRIP_MM = 3.0  # the explanation's strip along the bottom of each panel band, below the trace
HEAT_COLORMAP = "RdBu_r"
TEXT_POINTS = 9.0
MM_PER_INCH = 25.4

MINOR_GRID_COLOR = "#f6c6c6"
MAJOR_GRID_COLOR = "#e27c7c"
TRACE_COLOR = "black"
TEXT_COLOR = "#222222"
ABSENT_COLOR = "#777777"
SAVE_FORMATS = ("png", "svg", "pdf")


def paper_size_mm(num_columns: int = 4) -> tuple[float, float]:
    """Width and height of the ECG paper in millimetres (calibration area, 4 x 2.5 s, 3 grid rows + rhythm strip)."""
    width = CALIBRATION_WIDTH_MM + num_columns * SEGMENT_SECONDS * PAPER_SPEED_MM_PER_S
    return width, (len(GRID_LAYOUT) + 1) * ROW_HEIGHT_MM


def row_baseline_mm(row: int) -> float:
    """The 0 mV line of a row (0 = top grid row, 3 = rhythm strip), in paper millimetres from the bottom."""
    _, height = paper_size_mm()
    return height - (row + 0.5) * ROW_HEIGHT_MM


def time_to_x_mm(seconds: np.ndarray | float) -> np.ndarray | float:
    """Seconds from the plotted start -> paper millimetres from the left edge (25 mm/s after the calibration area)."""
    return CALIBRATION_WIDTH_MM + np.asarray(seconds) * PAPER_SPEED_MM_PER_S


def lead_signals(
    record_or_signals: Any,
    sampling_rate: float | None = None,
    lead_names: Sequence[str] | None = None,
    units: str | Sequence[str] | None = None,
) -> tuple[dict[str, np.ndarray], float, str, dict]:
    """
    Reads a record — a path to a WFDB record or any ECG file `ecg_pma.read_ecg` reads, a `wfdb.Record`, an
    `EcgRecord` (e.g. `read_ecg(path, lead_aliases=...)`) or a `(leads, samples)` array — into `{canonical lead key:
    samples in mV}`, its sampling rate, a name and the file's metadata (empty for arrays). Arrays need
    `sampling_rate=` and, unless they hold the 12 standard leads in order, `lead_names=`; any subset of leads is
    accepted.
    """
    names = list(lead_names) if lead_names is not None else list(STANDARD_LEAD_NAMES)
    reader = EcgPmaFeatureExtractor(lead_names=names)
    if isinstance(record_or_signals, EcgRecord):
        record = record_or_signals
    elif isinstance(record_or_signals, (str, os.PathLike)):
        record = read_ecg(record_or_signals)  # with the file's metadata, for the patient block
    else:
        (record,) = reader._as_records(record_or_signals, sampling_rate, lead_names, units)
        if hasattr(record_or_signals, "comments"):  # a wfdb.Record
            record.metadata = wfdb_metadata(record_or_signals)
    signal = np.asarray(record.signal, dtype=np.float64)
    if signal.ndim != 2 or signal.shape[0] != len(record.leads):
        raise ValueError(
            f"{record.name}: {signal.shape[0] if signal.ndim == 2 else signal.shape} signal rows for lead names "
            f"{record.leads}; an ECG array is (leads, samples)."
        )
    signal = reader.to_millivolts(signal, record.units, record.name)
    if not record.fs or record.fs <= 0:
        raise ValueError(f"{record.name}: unknown sampling rate {record.fs!r}.")
    known = {canonical_lead_key(lead) for lead in STANDARD_LEAD_NAMES}
    unknown = [lead for lead in record.leads if canonical_lead_key(lead) not in known]
    if unknown:
        raise ValueError(
            f"{record.name}: unknown lead names {unknown}; expected names among {list(STANDARD_LEAD_NAMES)}."
        )
    return (
        {canonical_lead_key(lead): row for lead, row in zip(record.leads, signal)},
        float(record.fs),
        str(record.name),
        dict(record.metadata),
    )


def draw_paper(ax, width_mm: float, height_mm: float) -> None:
    """The 1 mm minor / 5 mm major grid over `[0, width] x [0, height]` paper millimetres."""
    for step, color, linewidth in ((1, MINOR_GRID_COLOR, 0.4), (5, MAJOR_GRID_COLOR, 0.9)):
        xs = np.arange(0, width_mm + 1e-9, step)
        ys = np.arange(0, height_mm + 1e-9, step)
        segments = [((x, 0), (x, height_mm)) for x in xs] + [((0, y), (width_mm, y)) for y in ys]
        ax.add_collection(LineCollection(segments, colors=color, linewidths=linewidth, zorder=0))


def draw_calibration_pulse(ax, baseline_mm: float) -> None:
    """A 1 mV (10 mm) by 0.2 s (5 mm) square pulse in the calibration area of one row."""
    left = (CALIBRATION_WIDTH_MM - PULSE_SECONDS * PAPER_SPEED_MM_PER_S) / 2
    right = left + PULSE_SECONDS * PAPER_SPEED_MM_PER_S
    top = baseline_mm + CALIBRATION_MV * GAIN_MM_PER_MV
    xs = [0.5, left, left, right, right, CALIBRATION_WIDTH_MM - 0.5]
    ys = [baseline_mm, baseline_mm, top, top, baseline_mm, baseline_mm]
    ax.plot(xs, ys, color=TRACE_COLOR, linewidth=1.0, solid_joinstyle="miter", zorder=3)


def panel_band(row: int, start_s: float, stop_s: float) -> Rectangle:
    """The paper area that belongs to one panel: its time span, and half a row above and below its baseline."""
    bottom = row_baseline_mm(row) - ROW_HEIGHT_MM / 2
    return Rectangle((time_to_x_mm(start_s), bottom), (stop_s - start_s) * PAPER_SPEED_MM_PER_S, ROW_HEIGHT_MM)


def draw_segment(
    ax,
    samples: np.ndarray | None,
    sampling_rate: float,
    lead: str,
    row: int,
    start_s: float,
    stop_s: float,
    baseline: str | None,
) -> None:
    """
    One lead's trace between `start_s` and `stop_s` in its row, labelled and clipped to its panel band; an absent
    lead is labelled absent.
    """
    y0 = row_baseline_mm(row)
    label_x, label_y = time_to_x_mm(start_s) + 1.0, y0 + ROW_HEIGHT_MM / 2 - 3.0  # above +1.5 mV
    if samples is None:
        ax.text(
            label_x, label_y, f"{lead} absent", color=ABSENT_COLOR, fontsize=TEXT_POINTS, style="italic", va="center"
        )
        return
    ax.text(label_x, label_y, lead, color=TRACE_COLOR, fontsize=TEXT_POINTS, fontweight="bold", va="center")
    first, last = int(round(start_s * sampling_rate)), int(round(stop_s * sampling_rate))
    segment = np.asarray(samples[first : last + 1], dtype=np.float64)
    if len(segment) == 0:
        return
    if baseline == "median" and np.isfinite(segment).any():
        segment = segment - np.nanmedian(segment)
    times = (first + np.arange(len(segment))) / sampling_rate
    (line,) = ax.plot(time_to_x_mm(times), y0 + segment * GAIN_MM_PER_MV, color=TRACE_COLOR, linewidth=0.8, zorder=3)
    band = panel_band(row, start_s, stop_s)
    band.set_transform(ax.transData)
    line.set_clip_path(band)


def draw_heat_band(
    ax, explanation, row: int, lead: str, start_s: float, stop_s: float, norm, offset_s: float = 0.0
) -> None:
    """
    Colours each model patch of `lead` between `start_s` and `stop_s` (record seconds) by its attribution (red raises
    the label's logit, blue lowers it), as a strip along the bottom of the panel band, under the trace's usual range
    and drawn beneath it, so the waveform stays readable. `offset_s` is where the plot starts in the record.
    """
    keys = [canonical_lead_key(name) for name in explanation.lead_names]
    if canonical_lead_key(lead) not in keys:
        return
    attributions = explanation.patch_attributions[keys.index(canonical_lead_key(lead))]
    patch_seconds = explanation.patch_seconds
    cmap = matplotlib.colormaps[HEAT_COLORMAP]
    bottom = row_baseline_mm(row) - ROW_HEIGHT_MM / 2
    for index, value in enumerate(attributions):
        begin = explanation.start_seconds + index * patch_seconds
        left, right = max(begin, start_s), min(begin + patch_seconds, stop_s)
        if right <= left or value == 0:
            continue
        ax.add_patch(
            Rectangle(
                (time_to_x_mm(left - offset_s), bottom),
                (right - left) * PAPER_SPEED_MM_PER_S,
                HEAT_STRIP_MM,
                facecolor=cmap(norm(float(value))),
                linewidth=0,
                zorder=1,
            )
        )


def draw_colour_scale(figure: Figure, rect: tuple[float, float, float, float], norm, label: str) -> None:
    """The heat strip's colour scale (a horizontal colour bar in figure coordinates `rect`), named after its label."""
    cax = figure.add_axes(rect)
    bar = figure.colorbar(
        ScalarMappable(norm=norm, cmap=matplotlib.colormaps[HEAT_COLORMAP]), cax=cax, orientation="horizontal"
    )
    bar.set_ticks([norm.vmin, 0.0, norm.vmax], labels=["lowers", "0", "raises"])
    bar.ax.tick_params(labelsize=TEXT_POINTS - 1)
    cax.set_title(f"Heat strip: attribution to {label}\n(its logit, integrated gradients)", fontsize=TEXT_POINTS)


def patient_block_lines(name: str, metadata: dict, rate: float, baseline: str | None) -> list[str]:
    """
    The lines above the paper, as an ECG cart prints them: who and when (`age`, `sex`, `acquisition_time` of the
    record's metadata: a WFDB header's `# Age:` / `# Sex:` comments and base date, or what a DICOM, XML or EDF file
    says; "not recorded" where it says nothing), how the paper is scaled and filtered, then the device, the recording
    filters and the machine's statements where the file has them.
    """
    age, sex, date = metadata.get("age"), metadata.get("sex"), metadata.get("acquisition_time")
    display = "each 2.5 s segment centred on its median" if baseline == "median" else "values as recorded"
    lines = [
        f"Record {name}     Age {f'{age:g}' if age is not None else 'not recorded'}     "
        f"Sex {sex.capitalize() if sex else 'not recorded'}     Date {date or 'not recorded'}",
        f"{PAPER_SPEED_MM_PER_S:g} mm/s     {GAIN_MM_PER_MV:g} mm/mV     Recorded at {rate:g} Hz     Display filter: "
        f"none (unfiltered signal), {display}",
    ]
    filters = metadata.get("filters") or {}
    corners = [f"{filters[key]:g}" if key in filters else "" for key in ("high_pass_hz", "low_pass_hz")]
    device = metadata.get("device")
    statements = "; ".join(metadata.get("statements") or [])
    details = (
        f"Device {device}" if device else "",
        f"Recording filters {corners[0]}–{corners[1]} Hz" if any(corners) else "",
        f"Statements: {statements[:160]}" if statements else "",
    )
    if any(details):
        lines.append("     ".join(part for part in details if part))
    return lines


def draw_layer_weights(ax, layer_weights: Sequence[float]) -> None:
    """The PMA gate's weight of each encoder block, as horizontal bars (block 0 at the top)."""
    weights = np.asarray(layer_weights, dtype=float)
    positions = np.arange(len(weights))
    ax.barh(positions, weights, color="#4c72b0")
    ax.set_yticks(positions, [f"block {i}" for i in positions], fontsize=TEXT_POINTS - 1)
    ax.invert_yaxis()
    ax.set_xlim(0, max(float(weights.max()) * 1.15, 1e-6))
    ax.set_xlabel("layer weight", fontsize=TEXT_POINTS - 1)
    ax.set_title("PMA layer weights", fontsize=TEXT_POINTS)
    ax.tick_params(axis="x", labelsize=TEXT_POINTS - 1)


def plot_ecg(
    record_or_signals: Any,
    sampling_rate: float | None = None,
    lead_names: Sequence[str] | None = None,
    units: str | Sequence[str] | None = None,
    *,
    title: str | None = None,
    explanation=None,
    layer_weights: Sequence[float] | None = None,
    start: float = 0.0,
    baseline: str | None = "median",
    dpi: float = 150,
) -> Figure:
    """
    The standard 12-lead layout on ECG paper under a patient block (see the module docstring).

    Args:
        record_or_signals: a WFDB record path, the path of any ECG file `ecg_pma.read_ecg` reads (its metadata is
            drawn as a patient line at the bottom), a `wfdb.Record` or `EcgRecord`, or a `(leads, samples)` array (then
            `sampling_rate=` and `lead_names=` in its row order; `units` defaults to mV). Any subset of the 12
            standard leads: missing leads are labelled "absent", never drawn as flat lines.
        title: text above the patient block (e.g. the predictions).
        explanation: an `ecg_pma.visualization.explain.Explanation`; its per-patch attributions are drawn as a heat
            strip along the bottom of each panel, with its colour scale beside the paper.
        layer_weights: drawn as a bar chart to the right of the paper.
        start: seconds of the record skipped before the plotted 10 s.
        baseline: `"median"` centres each 2.5 s segment on its median (removes offsets and slow drift without
            filtering the waveform), `None` plots the values as recorded.
        dpi: pixels per inch of the figure; one paper millimetre is `dpi / 25.4` pixels (150 dpi: 5.9 px per mm).
    Returns:
        A matplotlib `Figure` (save it with [`save_figure`]); the paper fills its bottom left.
    """
    # Over 80 lines through its documented keyword options and the layout it draws panel by panel.
    if baseline not in ("median", None):
        raise ValueError(f"`baseline` must be 'median' or None, got {baseline!r}.")
    leads, rate, name, metadata = lead_signals(record_or_signals, sampling_rate, lead_names, units)
    shown_name = os.path.basename(name.rstrip("/")) or name  # never the server's folders
    patient_lines = patient_block_lines(shown_name, metadata, rate, baseline)
    paper_width, paper_height = paper_size_mm()
    top = PATIENT_BLOCK_HEIGHT_MM + (TITLE_HEIGHT_MM if title else 0.0)
    side = SIDE_PANEL_WIDTH_MM if layer_weights is not None or explanation is not None else 0.0
    figure_width, figure_height = paper_width + side, paper_height + top
    figure = Figure(figsize=(figure_width / MM_PER_INCH, figure_height / MM_PER_INCH), dpi=dpi)
    ax = figure.add_axes((0, 0, paper_width / figure_width, paper_height / figure_height))
    ax.set_xlim(0, paper_width)
    ax.set_ylim(0, paper_height)
    ax.set_axis_off()
    draw_paper(ax, paper_width, paper_height)

    norm = None
    if explanation is not None:
        scale = float(np.abs(explanation.patch_attributions).max()) or 1.0
        norm = TwoSlopeNorm(vcenter=0.0, vmin=-scale, vmax=scale)
    rows = [*[(row, lead, column) for row, names in enumerate(GRID_LAYOUT) for column, lead in enumerate(names)]]
    for row, lead, column in rows:
        start_s, stop_s = column * SEGMENT_SECONDS, (column + 1) * SEGMENT_SECONDS
        samples = leads.get(canonical_lead_key(lead))
        shifted = None if samples is None else samples[int(round(start * rate)) :]
        draw_segment(ax, shifted, rate, lead, row, start_s, stop_s, baseline)
        if column > 0:  # the lead change mark between two segments
            x, y0 = time_to_x_mm(start_s), row_baseline_mm(row)
            ax.plot([x, x], [y0 - 3, y0 + 3], color=TRACE_COLOR, linewidth=0.8, zorder=3)
        if norm is not None and samples is not None:
            draw_heat_band(ax, explanation, row, lead, start_s + start, stop_s + start, norm, offset_s=start)
    rhythm = leads.get(canonical_lead_key(RHYTHM_LEAD))
    rhythm_row = len(GRID_LAYOUT)
    strip_seconds = len(GRID_LAYOUT[0]) * SEGMENT_SECONDS
    draw_segment(
        ax,
        None if rhythm is None else rhythm[int(round(start * rate)) :],
        rate,
        RHYTHM_LEAD,
        rhythm_row,
        0.0,
        strip_seconds,
        baseline,
    )
    if norm is not None and rhythm is not None:
        draw_heat_band(ax, explanation, rhythm_row, RHYTHM_LEAD, start, start + strip_seconds, norm, offset_s=start)
    for row in range(rhythm_row + 1):
        draw_calibration_pulse(ax, row_baseline_mm(row))

    def figure_y(mm_from_bottom: float) -> float:
        return mm_from_bottom / figure_height

    for index, line in enumerate(patient_lines):
        y = paper_height + PATIENT_BLOCK_HEIGHT_MM - PATIENT_LINE_MM * (index + 0.7)
        weight = "bold" if index == 0 else "normal"
        figure.text(0.004, figure_y(y), line, fontsize=TEXT_POINTS, color=TEXT_COLOR, fontweight=weight, va="center")
    if title:
        y = paper_height + PATIENT_BLOCK_HEIGHT_MM + TITLE_HEIGHT_MM / 2
        figure.text(0.004, figure_y(y), title, fontsize=TEXT_POINTS, color=TEXT_COLOR, va="center", linespacing=1.4)
    margin = 16.0
    side_left, side_width = (paper_width + margin) / figure_width, (side - margin - 5) / figure_width
    if layer_weights is not None:
        bottom = 0.45 * paper_height if norm is not None else 0.12 * paper_height
        side_ax = figure.add_axes((side_left, figure_y(bottom), side_width, figure_y(0.9 * paper_height - bottom)))
        draw_layer_weights(side_ax, layer_weights)
    if norm is not None:
        draw_colour_scale(
            figure, (side_left, figure_y(0.12 * paper_height), side_width, figure_y(5.0)), norm, explanation.label
        )
    return figure


def figure_to_array(figure: Figure) -> np.ndarray:
    """Renders a figure to an `(height, width, 4)` uint8 RGBA array at its own dpi."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def save_figure(figure: Figure, path: str | os.PathLike, title: str | None = None) -> Path:
    """
    Writes the figure as PNG, SVG or PDF (chosen by the file's suffix) at its own dpi, with `title` in the file's
    metadata (for a reader or a test); returns the path.
    """
    path = Path(path)
    file_format = path.suffix.lower().lstrip(".")
    if file_format not in SAVE_FORMATS:
        raise ValueError(f"Cannot write a plot to {str(path)!r}: the suffix must be one of .png, .svg, .pdf.")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format=file_format, dpi=figure.dpi, metadata={"Title": title} if title else None)
    return path


__all__ = ["figure_to_array", "lead_signals", "patient_block_lines", "plot_ecg", "save_figure"]

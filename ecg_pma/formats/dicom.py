"""
DICOM waveform ECG (12-lead ECG and General ECG IODs) with `pydicom`: the first original multiplex group (the rhythm,
not the median beat), each channel scaled by its sensitivity, correction factor and baseline into its sensitivity
unit and then to mV, leads named from their channel source codes (SCP-ECG `5.6.3-9-*` or MDC `2:*`), metadata from
the patient, equipment and annotation modules. `write_dicom` writes an `EcgRecord` as a General/12-lead ECG dataset.
"""

from __future__ import annotations

import datetime
import os

import numpy as np

from ..configuration_ecg_pma import STANDARD_LEAD_NAMES
from ..feature_extraction_ecg_pma import EcgRecord
from .common import EcgFileError, age_in_years, build_record, millivolt_factor, require, sex_name


TWELVE_LEAD_ECG_STORAGE = "1.2.840.10008.5.1.4.1.1.9.1.1"
GENERAL_ECG_STORAGE = "1.2.840.10008.5.1.4.1.1.9.1.2"
# Channel source codes (DICOM PS3.16 CID 3001, ECG Leads) of the 12 standard leads, in both coding schemes.
SCPECG_LEAD_CODES = {
    "5.6.3-9-1": "I", "5.6.3-9-2": "II", "5.6.3-9-61": "III", "5.6.3-9-62": "aVR", "5.6.3-9-63": "aVL",
    "5.6.3-9-64": "aVF", "5.6.3-9-3": "V1", "5.6.3-9-4": "V2", "5.6.3-9-5": "V3", "5.6.3-9-6": "V4",
    "5.6.3-9-7": "V5", "5.6.3-9-8": "V6",
}  # fmt: skip
MDC_LEAD_CODES = {code.replace("5.6.3-9-", "2:"): lead for code, lead in SCPECG_LEAD_CODES.items()}
LEAD_CODES = {**SCPECG_LEAD_CODES, **MDC_LEAD_CODES}
CODE_OF_LEAD = {lead: code for code, lead in SCPECG_LEAD_CODES.items()}
DERIVED_GROUP_LABELS = ("MEDIAN", "MEDIAN BEAT", "REPRESENTATIVE BEAT")


def is_dicom(head: bytes) -> bool:
    """The Part 10 file preamble: 128 bytes, then `DICM`."""
    return head[128:132] == b"DICM"


def channel_lead(path, channel, index: int) -> str:
    """A channel's lead name from its source code; an unknown code raises, naming it."""
    if "ChannelSourceSequence" not in channel or not channel.ChannelSourceSequence:
        raise EcgFileError(path, f"channel {index + 1} has no Channel Source Sequence (which lead it is).")
    source = channel.ChannelSourceSequence[0]
    code = str(source.get("CodeValue", ""))
    if code not in LEAD_CODES:
        raise EcgFileError(
            path,
            f"channel {index + 1}: unknown lead code {code!r} ({source.get('CodingSchemeDesignator', '')} "
            f"{source.get('CodeMeaning', '')!r}); expected the SCP-ECG or MDC codes of the 12 standard leads.",
        )
    return LEAD_CODES[code]


def rhythm_group(path, dataset) -> int:
    """The first multiplex group that is not a derived median beat."""
    groups = dataset.get("WaveformSequence")
    if not groups:
        raise EcgFileError(path, "a DICOM file without a Waveform Sequence (no ECG waveform in it).")
    for index, group in enumerate(groups):
        label = str(group.get("MultiplexGroupLabel", "")).strip().upper()
        if group.get("WaveformOriginality", "ORIGINAL") == "ORIGINAL" and label not in DERIVED_GROUP_LABELS:
            return index
    return 0


def dicom_metadata(dataset, group) -> dict:
    channels = group.ChannelDefinitionSequence
    filters = {
        "high_pass_hz": channels[0].get("FilterLowFrequency"),
        "low_pass_hz": channels[0].get("FilterHighFrequency"),
        "notch_hz": channels[0].get("NotchFilterFrequency"),
    }
    statements = [
        str(item.UnformattedTextValue)
        for item in dataset.get("WaveformAnnotationSequence", [])
        if "UnformattedTextValue" in item
    ]
    device = " ".join(str(dataset.get(key, "")) for key in ("Manufacturer", "ManufacturerModelName")).strip()
    acquired = dataset.get("AcquisitionDateTime")
    return {
        "format": "dicom",
        "age": age_in_years(dataset.get("PatientAge")),
        "sex": sex_name(dataset.get("PatientSex")),
        "acquisition_time": str(acquired) if acquired else None,
        "device": device,
        "filters": {key: float(value) for key, value in filters.items() if value not in (None, "")},
        "statements": statements,
    }


def read_dicom(path: str | os.PathLike) -> EcgRecord:
    pydicom = require("pydicom", "DICOM ECG files")
    try:
        dataset = pydicom.dcmread(path)
    except Exception as error:  # noqa: BLE001 - pydicom raises many kinds for a damaged file
        raise EcgFileError(path, f"not a readable DICOM file ({type(error).__name__}: {error}).") from error
    index = rhythm_group(path, dataset)
    group = dataset.WaveformSequence[index]
    channels = group.get("ChannelDefinitionSequence") or []
    if len(channels) != group.get("NumberOfWaveformChannels", len(channels)):
        raise EcgFileError(
            path, f"{len(channels)} channel definitions for {group.NumberOfWaveformChannels} waveform channels."
        )
    expected = group.NumberOfWaveformSamples * group.NumberOfWaveformChannels * group.WaveformBitsAllocated // 8
    if len(group.get("WaveformData", b"")) < expected:
        raise EcgFileError(
            path,
            f"waveform data of {len(group.get('WaveformData', b''))} bytes, fewer than the {expected} its "
            f"{group.NumberOfWaveformChannels} channels x {group.NumberOfWaveformSamples} samples need (truncated?).",
        )
    leads = [channel_lead(path, channel, i) for i, channel in enumerate(channels)]
    # samples x channels in each channel's sensitivity unit (raw * sensitivity * correction + baseline)
    values = dataset.waveform_array(index)
    rows = []
    for column, channel in enumerate(channels):
        units = channel.get("ChannelSensitivityUnitsSequence")
        unit = units[0].CodeValue if units else None
        if unit is None:
            raise EcgFileError(path, f"channel {leads[column]} has no Channel Sensitivity Units (uV or mV).")
        rows.append(values[:, column] * millivolt_factor(path, unit, f"channel {leads[column]}"))
    return build_record(path, rows, float(group.SamplingFrequency), leads, dicom_metadata(dataset, group))


def write_dicom(record: EcgRecord, path: str | os.PathLike, microvolts_per_bit: float | None = None) -> None:
    """
    `record` (in mV, standard lead names) as a DICOM ECG waveform file: 16-bit signed samples at `microvolts_per_bit`
    (by default 1 uV, or coarser when the largest amplitude would not fit), SCP-ECG channel source codes, the
    12-lead ECG IOD within its limits (standard leads, 200-1000 Hz, up to 16384 samples) and the General ECG IOD
    otherwise.
    """
    pydicom = require("pydicom", "DICOM ECG files")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    unknown = [lead for lead in record.leads if lead not in CODE_OF_LEAD]
    if unknown:
        raise ValueError(
            f"{record.name}: leads {unknown} have no DICOM lead code; name them as standard leads "
            f"{list(STANDARD_LEAD_NAMES)} (lead aliases) before writing DICOM."
        )
    signal_uv = np.asarray(record.signal, dtype=np.float64) * 1000.0
    largest = float(np.abs(signal_uv).max(initial=0.0))
    step = microvolts_per_bit or max(1.0, float(np.ceil(largest / 32767.0)))
    digital = np.round(signal_uv / step).astype("<i2")
    # the 12-lead ECG IOD's limits (PS3.3 A.34.3.4): 200-1000 Hz, at most 16384 samples per channel
    twelve = 200 <= record.fs <= 1000 and digital.shape[1] <= 16384 and set(record.leads) <= set(STANDARD_LEAD_NAMES)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = TWELVE_LEAD_ECG_STORAGE if twelve else GENERAL_ECG_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    dataset.Modality = "ECG"
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    metadata = record.metadata
    dataset.Manufacturer = str(metadata.get("device", ""))[:64]
    if metadata.get("sex") in ("male", "female"):
        dataset.PatientSex = metadata["sex"][0].upper()
    if metadata.get("age") is not None:
        dataset.PatientAge = f"{int(metadata['age']):03d}Y"
    dataset.ContentDate = datetime.date.today().strftime("%Y%m%d")  # when this file was written
    if metadata.get("acquisition_time"):
        dataset.AcquisitionDateTime = "".join(ch for ch in str(metadata["acquisition_time"]) if ch.isdigit())[:14]

    group = Dataset()
    group.MultiplexGroupLabel = "RHYTHM"
    group.WaveformOriginality = "ORIGINAL"
    group.SamplingFrequency = f"{record.fs:g}"
    group.NumberOfWaveformChannels = len(record.leads)
    group.NumberOfWaveformSamples = digital.shape[1]
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    channels = []
    for lead in record.leads:
        source, unit, channel = Dataset(), Dataset(), Dataset()
        source.CodeValue, source.CodingSchemeDesignator = CODE_OF_LEAD[lead], "SCPECG"
        source.CodeMeaning = f"Lead {lead}"
        unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = "uV", "UCUM", "microvolt"
        channel.ChannelSourceSequence = [source]
        channel.ChannelSensitivity = f"{step:g}"
        channel.ChannelSensitivityUnitsSequence = [unit]
        channel.ChannelSensitivityCorrectionFactor = "1"
        channel.ChannelBaseline = "0"
        channel.WaveformBitsStored = 16
        channels.append(channel)
    group.ChannelDefinitionSequence = channels
    group.WaveformData = digital.T.tobytes()  # interleaved: sample 1 of every channel, then sample 2 ...
    dataset.WaveformSequence = [group]
    pydicom.dcmwrite(path, dataset, enforce_file_format=True)

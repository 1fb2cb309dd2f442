"""
Writers of ECG files for the format tests, where no reference writer exists: HL7 aECG and GE MUSE XML built to the
published layouts (the HL7 aECG Implementation Guide's `AnnotatedECG` / series / sequenceSet / `SLIST_PQ`; GE's
`RestingECG` / `Waveform` / `LeadData` with base64 little-endian 16-bit samples), and the plain array files. The real
published files are in `tests/data/ecg_files/` (see its README); these writers make the round-trip, every-format and
bad-file cases from real PhysioNet records.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import numpy as np

from ecg_pma.feature_extraction_ecg_pma import EcgRecord


DATA = Path(__file__).resolve().parent / "data" / "ecg_files"
MDC_CODES = {"aVR": "AVR", "aVL": "AVL", "aVF": "AVF"}


def published_file(name: str, directory: Path) -> Path:
    """A gzipped file of `tests/data/ecg_files`, decompressed into `directory` (its name without `.gz`)."""
    target = directory / name.removesuffix(".gz")
    target.write_bytes(gzip.decompress((DATA / name).read_bytes()))
    return target


def write_hl7_aecg(
    record: EcgRecord,
    path: Path,
    microvolts_per_digit: float = 1.0,
    lead_codes: list[str] | None = None,
    digits: list[np.ndarray] | None = None,
    with_series: bool = True,
) -> Path:
    """`record` (mV) as an HL7 aECG file: a rhythm series, a GLIST_TS time sequence, one SLIST_PQ per lead (origin
    0 uV, scale `microvolts_per_digit` uV). `lead_codes` / `digits` replace the codes / samples (bad files)."""
    codes = lead_codes or [f"MDC_ECG_LEAD_{MDC_CODES.get(lead, lead)}" for lead in record.leads]
    rows = digits or [np.round(row * 1000 / microvolts_per_digit).astype(int) for row in record.signal]
    sequences = "".join(
        f"""
        <component><sequence>
          <code code="{code}" codeSystem="2.16.840.1.113883.6.24" codeSystemName="MDC"/>
          <value xsi:type="SLIST_PQ">
            <origin value="0" unit="uV"/><scale value="{microvolts_per_digit:g}" unit="uV"/>
            <digits>{" ".join(str(int(value)) for value in row)}</digits>
          </value>
        </sequence></component>"""
        for code, row in zip(codes, rows)
    )
    series = f"""
  <component><series>
    <code code="RHYTHM" codeSystem="2.16.840.1.113883.5.4"/>
    <effectiveTime><low value="20240101120000"/></effectiveTime>
    <author><seriesAuthor><manufacturedSeriesDevice><manufacturerModelName>test writer</manufacturerModelName>
    </manufacturedSeriesDevice></seriesAuthor></author>
    <component><sequenceSet>
        <component><sequence>
          <code code="TIME_ABSOLUTE" codeSystem="2.16.840.1.113883.5.4"/>
          <value xsi:type="GLIST_TS"><head value="20240101120000"/><increment value="{1 / record.fs:.10g}" unit="s"/></value>
        </sequence></component>{sequences}
    </sequenceSet></component>
  </series></component>"""
    path.write_text(
        f"""<?xml version="1.0" encoding="UTF-8"?>
<AnnotatedECG xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <id root="2.16.840.1.113883.3.1"/>
  <code code="93000" codeSystem="2.16.840.1.113883.6.12"/>
  <effectiveTime><center value="20240101120000"/></effectiveTime>{series if with_series else ""}
</AnnotatedECG>
"""
    )
    return path


def write_ge_muse(
    record: EcgRecord,
    path: Path,
    microvolts_per_bit: float = 1.0,
    leads: list[str] | None = None,
    waveform_type: str = "Rhythm",
) -> Path:
    """`record` (mV) as GE MUSE XML: a `waveform_type` waveform with one LeadData per lead of `leads` (default all;
    MUSE itself stores I, II, V1-V6), samples in `microvolts_per_bit` steps, patient and test demographics."""
    index = dict(zip(record.leads, record.signal))
    lead_data = ""
    for lead in leads or record.leads:
        samples = np.round(index[lead] * 1000 / microvolts_per_bit).astype("<i2")
        lead_data += f"""
    <LeadData>
      <LeadByteCountTotal>{samples.nbytes}</LeadByteCountTotal>
      <LeadSampleCountTotal>{samples.size}</LeadSampleCountTotal>
      <LeadSampleSize>2</LeadSampleSize>
      <LeadAmplitudeUnitsPerBit>{microvolts_per_bit:g}</LeadAmplitudeUnitsPerBit>
      <LeadAmplitudeUnits>MICROVOLTS</LeadAmplitudeUnits>
      <LeadID>{lead}</LeadID>
      <WaveFormData>{base64.b64encode(samples.tobytes()).decode()}</WaveFormData>
    </LeadData>"""
    path.write_text(
        f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE RestingECG SYSTEM "restecg.dtd">
<RestingECG>
  <PatientDemographics><PatientAge>61</PatientAge><AgeUnits>YEARS</AgeUnits><Gender>FEMALE</Gender></PatientDemographics>
  <TestDemographics><AcquisitionDevice>MAC55</AcquisitionDevice><AcquisitionDate>01-02-2024</AcquisitionDate>
    <AcquisitionTime>09:03:32</AcquisitionTime></TestDemographics>
  <Diagnosis><DiagnosisStatement><StmtText>Sinus rhythm</StmtText></DiagnosisStatement></Diagnosis>
  <Waveform>
    <WaveformType>{waveform_type}</WaveformType>
    <SampleBase>{record.fs:g}</SampleBase><SampleExponent>0</SampleExponent>
    <HighPassFilter>16</HighPassFilter><LowPassFilter>150</LowPassFilter><ACFilter>60</ACFilter>{lead_data}
  </Waveform>
</RestingECG>
"""
    )
    return path


def write_arrays(record: EcgRecord, directory: Path, stem: str) -> dict[str, Path]:
    """The record as CSV (a header of lead names), .npy (leads, samples) with a sidecar JSON, and Parquet."""
    import pandas as pd

    table = pd.DataFrame(record.signal.T, columns=record.leads)
    csv, npy, parquet = (directory / f"{stem}.{kind}" for kind in ("csv", "npy", "parquet"))
    table.to_csv(csv, index=False, float_format="%.6f")
    np.save(npy, record.signal)
    (directory / f"{stem}.json").write_text(
        json.dumps({"sampling_rate": record.fs, "lead_names": record.leads, "units": "mV"})
    )
    table.to_parquet(directory / f"{stem}_table.parquet")
    (directory / f"{stem}_table.json").write_text(json.dumps({"sampling_rate": record.fs}))
    parquet = directory / f"{stem}_table.parquet"
    return {"csv": csv, "npy": npy, "parquet": parquet}

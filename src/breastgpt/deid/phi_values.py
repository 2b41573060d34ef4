"""Which source header values identify a person, and the normalised text forms a leak can take.

Values are normalised the same way as the text they are searched in: lower case, runs of whitespace, `^`
(DICOM name separator) and `_` (file-name separator) collapsed to one space.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from breastgpt.deid.dataset import WRITER_IMPLEMENTATION_UID, WRITER_IMPLEMENTATION_VERSION
from breastgpt.deid.profile import BASIC_PROFILE, DICOM_UID_ROOT, Action

# keyword → value type. Names of people found under any other public PN attribute count as "person_name".
IDENTIFYING_KEYWORDS: dict[str, str] = {
    "PatientName": "patient_name", "OtherPatientNames": "patient_name", "PatientBirthName": "patient_name",
    "PatientMotherBirthName": "patient_name", "ResponsiblePerson": "person_name",
    "PatientID": "patient_id", "OtherPatientIDs": "patient_id", "MedicalRecordLocator": "patient_id",
    "AdmissionID": "patient_id", "IssuerOfPatientID": "institution", "ClinicalTrialSubjectID": "patient_id",
    "PatientBirthDate": "birth_date",
    "AccessionNumber": "accession_number", "StudyID": "accession_number", "RequestedProcedureID": "accession_number",
    "PlacerOrderNumberImagingServiceRequest": "accession_number",
    "FillerOrderNumberImagingServiceRequest": "accession_number", "PerformedProcedureStepID": "accession_number",
    "InstitutionName": "institution", "InstitutionalDepartmentName": "institution", "StationName": "institution",
    "InstitutionAddress": "address", "PatientAddress": "address", "ReferringPhysicianAddress": "address",
    "PersonAddress": "address",
    "PatientTelephoneNumbers": "phone", "ReferringPhysicianTelephoneNumbers": "phone",
    "PersonTelephoneNumbers": "phone", "OrderCallbackPhoneNumber": "phone",
    "ReferringPhysicianName": "physician_name", "PerformingPhysicianName": "physician_name",
    "NameOfPhysiciansReadingStudy": "physician_name", "OperatorsName": "physician_name",
    "RequestingPhysician": "physician_name", "PhysiciansOfRecord": "physician_name",
    "ScheduledPerformingPhysicianName": "physician_name", "ConsultingPhysicianName": "physician_name",
    "DeviceSerialNumber": "device_serial",
    "StudyDate": "study_date", "SeriesDate": "study_date", "AcquisitionDate": "study_date",
    "ContentDate": "study_date",
}
# Every other attribute of the profile table that names an identifier (…ID, …IDs, …Identifier, …Number) and that
# the profile does not keep is collected as "identifier" when it holds text: derived from the table, so a row added
# there (Scheduled Procedure Step ID, Detector ID, Specimen Accession Number, …) is scanned for without a second list.
_IDENTIFIER_NAME = re.compile(r"(?<!U)(ID|IDs|Identifier|Number|Numbers)$")
_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "SH", "ST", "UC", "UT"})
IDENTIFIER_TAGS: frozenset[int] = frozenset(
    tag for tag, row in BASIC_PROFILE.items()
    if row.action is not Action.KEEP and _IDENTIFIER_NAME.search(row.keyword)
    and row.keyword not in IDENTIFYING_KEYWORDS)
# File meta (group 0002) values that name the sending site: collected unless they are what our writer puts there.
FILE_META_KEYWORDS: dict[str, str] = {
    "ImplementationVersionName": "implementation", "SourceApplicationEntityTitle": "ae_title",
    "SendingApplicationEntityTitle": "ae_title", "ReceivingApplicationEntityTitle": "ae_title",
    "ImplementationClassUID": "uid",
}
_DATE_KINDS = frozenset({"birth_date", "study_date"})
_SEPARATORS = re.compile(r"[\s^_]+")


@dataclass(frozen=True)
class PhiValue:
    kind: str
    text: str  # normalised


def normalise(text: str) -> str:
    return _SEPARATORS.sub(" ", text.lower()).strip()


def normalise_with_map(text: str) -> tuple[str, list[int]]:
    """Normalise `text` and return, for each output character, the index of the input character it came from."""
    chars: list[str] = []
    origin: list[int] = []
    in_separator = False
    for index, char in enumerate(text):
        if _SEPARATORS.fullmatch(char):
            if not in_separator and chars:
                chars.append(" ")
                origin.append(index)
            in_separator = True
            continue
        in_separator = False
        for lowered in char.lower():
            chars.append(lowered)
            origin.append(index)
    if chars and chars[-1] == " ":
        chars.pop()
        origin.pop()
    return "".join(chars), origin


# Kept on purpose and public: a value that only names the vendor (an institution field reading "TOSHIBA" next to
# Manufacturer "TOSHIBA_MEC") cannot be told apart from the vendor, so it is not collected.
VENDOR_KEYWORDS = ("Manufacturer", "ManufacturerModelName")


def values_from_dataset(dataset: Dataset) -> Iterator[PhiValue]:
    """Every identifying value in a source dataset, recursively through sequences (private tags skipped), and
    the file meta values that name the sending site."""
    vendor_text = " ".join(normalise(str(dataset.get(keyword, "") or "")) for keyword in VENDOR_KEYWORDS)
    for phi in _raw_values(dataset):
        if phi.kind in ("uid", "birth_date", "study_date") or not _is_vendor_word(phi.text, vendor_text):
            yield phi
    yield from _file_meta_values(getattr(dataset, "file_meta", None))


def _file_meta_values(meta: Dataset | None) -> Iterator[PhiValue]:
    ours = {WRITER_IMPLEMENTATION_UID, WRITER_IMPLEMENTATION_VERSION}
    for keyword, kind in FILE_META_KEYWORDS.items():
        value = str((meta.get(keyword) if meta is not None else None) or "").strip().strip("\x00")
        if value and value not in ours:
            yield from expand(kind, value)


def _is_vendor_word(text: str, vendor_text: str) -> bool:
    value = normalise(text)
    return bool(value) and re.search(rf"(?<![a-z0-9]){re.escape(value)}(?![a-z0-9])", vendor_text) is not None


def _raw_values(dataset: Dataset) -> Iterator[PhiValue]:
    for element in dataset.iterall():
        if element.tag.is_private or element.value in (None, "", b""):
            continue
        kind = IDENTIFYING_KEYWORDS.get(element.keyword)
        if kind is None and int(element.tag) in IDENTIFIER_TAGS and element.VR in _TEXT_VRS:
            kind = "identifier"
        if kind is None and element.VR == "PN":
            kind = "person_name"
        if kind is None and element.VR == "UI":
            kind = "uid"
        if kind is None:
            continue
        for value in _as_list(element.value):
            yield from expand(kind, str(value))


def expand(kind: str, value: str) -> Iterator[PhiValue]:
    """The text forms under which one value can leak (name components, date formats, digits-only phones)."""
    value = value.strip().strip("\x00")
    if not value:
        return
    if kind == "uid":
        if not value.startswith(DICOM_UID_ROOT):
            yield PhiValue("uid", value)
        return
    if kind in _DATE_KINDS:
        yield from (PhiValue(kind, form) for form in date_forms(value))
        return
    yield PhiValue(kind, normalise(value))
    if kind.endswith("_name"):
        yield from (PhiValue(kind, normalise(part)) for part in value.split("^")[:3] if part.strip())
    if kind == "phone":
        digits = re.sub(r"\D", "", value)
        if len(digits) >= 7:
            yield PhiValue(kind, digits)


def date_forms(value: str) -> list[str]:
    """YYYYMMDD and the common written forms of the same date; [] when the value is not a full date."""
    match = re.fullmatch(r"(\d{4})[-./]?(\d{2})[-./]?(\d{2})", value.strip())
    if not match:
        return []
    y, m, d = match.groups()
    return [f"{y}{m}{d}", f"{y}-{m}-{d}", f"{y}/{m}/{d}", f"{y}.{m}.{d}", f"{d}/{m}/{y}", f"{m}/{d}/{y}",
            f"{d}-{m}-{y}", f"{m}-{d}-{y}", f"{d}.{m}.{y}"]


def _as_list(value: object) -> list[object]:
    # Only multi-valued containers are split; PersonName and strings iterate over characters.
    return list(value) if isinstance(value, MultiValue | list | tuple) else [value]

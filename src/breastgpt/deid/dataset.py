"""Apply the basic confidentiality profile to a parsed dataset, in place, recursively into every sequence item.

Order of precedence for each element: private tags and curve/overlay groups are removed; an attribute listed
in `profile.BASIC_PROFILE` gets its row's action (dates turned into shifts when the modified-dates option is on);
anything else is handled by VR: person names emptied, UIDs outside the DICOM root replaced, free text and
unknown-VR elements removed, dates shifted or emptied. Everything else (pixel module, geometry, codes,
manufacturer and model, laterality, view) is kept. The file meta group keeps only `FILE_META_KEPT`; the
implementation that wrote the file is named as ours (`WRITER_IMPLEMENTATION_*`), never the source's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from breastgpt.deid.dates import UnparseableDateError, shift_value
from breastgpt.deid.profile import (
    CODE_BASIC_PROFILE,
    CODE_CLEAN_PIXEL_DATA,
    CODE_MODIFIED_DATES,
    CODE_PATIENT_CHARACTERISTICS,
    DICOM_UID_ROOT,
    NEVER_SHIFTED,
    Action,
    action_for,
    in_removed_group,
)
from breastgpt.deid.pseudonym import Pseudonymizer

DUMMY_TEXT = "ANONYMIZED"
# Non-zero-length dummies consistent with each VR (action D); text VRs not listed get DUMMY_TEXT.
_DUMMY_BY_VR: dict[str, object] = {
    "DA": "19000101", "DT": "19000101000000", "TM": "000000", "AS": "000D", "DS": "0", "IS": "0", "UI": "2.25.0",
    "UR": "urn:none", "US": 0, "SS": 0, "UL": 0, "SL": 0, "UV": 0, "SV": 0, "FL": 0.0, "FD": 0.0,
    "OB": b"\x00\x00", "OW": b"\x00\x00", "OD": bytes(8), "OF": bytes(4), "OL": bytes(4), "OV": bytes(8),
    "UN": b"\x00\x00",
}
_FREE_TEXT_VRS = frozenset({"LT", "ST", "UT", "UC"})
_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI",
                         "UR", "UT"})
_DATE_VRS = frozenset({"DA", "DT"})
# File meta elements kept: what a reader needs to decode the file. Everything else of group 0002 goes (source,
# sending and receiving AE titles and addresses, private information, the source's implementation version name,
# which sites set to their own names); the implementation elements are rewritten as ours.
FILE_META_KEPT = frozenset({0x00020001, 0x00020002, 0x00020003, 0x00020010})
WRITER_IMPLEMENTATION_UID = PYDICOM_IMPLEMENTATION_UID
WRITER_IMPLEMENTATION_VERSION = "BREASTGPT_DEID"


@dataclass(frozen=True)
class PatientContext:
    """Pseudonymous values for the patient whose dataset is being cleaned."""

    pseudonymizer: Pseudonymizer
    patient_key: str
    shift_days: int | None  # None: the modified-dates option is off and dates are emptied per the table
    max_age_years: int | None = 90  # ages at or above are written as this value (HIPAA safe harbour: 90+)


@dataclass
class ProfileReport:
    """What the profile did, by action code; `unparseable_dates` counts dates blanked because they were not dates."""

    actions: Counter = field(default_factory=Counter)
    unparseable_dates: int = 0


def deidentify_dataset(dataset: Dataset, context: PatientContext) -> ProfileReport:
    """Apply the profile to `dataset` (and its file meta) in place; returns counts of what was done."""
    report = ProfileReport()
    _clean_items(dataset, context, report)
    if isinstance(getattr(dataset, "file_meta", None), FileMetaDataset):
        _clean_file_meta(dataset)
    dataset.preamble = b"\x00" * 128  # a source preamble can hold arbitrary bytes
    return report


def write_markers(dataset: Dataset, *, dates_shifted: bool, pixels_cleaned: bool) -> None:
    """Record that and how the dataset was de-identified (0012,0062-0064)."""
    dataset.PatientIdentityRemoved = "YES"
    methods = ["BreastGPT PS3.15 E.1 basic profile", "retained: patient sex and age"]
    codes = [CODE_BASIC_PROFILE, CODE_PATIENT_CHARACTERISTICS]
    if dates_shifted:
        methods.append("dates shifted by a keyed per-patient offset")
        codes.append(CODE_MODIFIED_DATES)
    if pixels_cleaned:
        methods.append("pixels outside keep regions blacked out")
        codes.append(CODE_CLEAN_PIXEL_DATA)
    dataset.DeidentificationMethod = methods
    dataset.DeidentificationMethodCodeSequence = Sequence([_code_item(value, meaning) for value, meaning in codes])


def _code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _clean_items(dataset: Dataset, context: PatientContext, report: ProfileReport) -> None:
    for tag in list(dataset.keys()):
        element = dataset[tag]
        action = _decide(element, context)
        report.actions[action.value] += 1
        _apply(dataset, element, action, context, report)


def _decide(element: DataElement, context: PatientContext) -> Action:
    tag = element.tag
    # Group lengths (gggg,0000) would be stale once elements are removed; they are optional, so drop them.
    if tag.is_private or in_removed_group(tag) or tag.element == 0:
        return Action.REMOVE
    row = action_for(tag)
    if row is not None:
        if context.shift_days is not None and _is_date_like(element) and row.action is not Action.KEEP \
                and int(tag) not in NEVER_SHIFTED:
            return Action.CLEAN
        return row.action
    return _decide_by_vr(element, context)


def _decide_by_vr(element: DataElement, context: PatientContext) -> Action:
    """Attributes the table does not list: judge by what the VR can carry."""
    vr = element.VR
    if vr in _DATE_VRS:
        return Action.CLEAN if context.shift_days is not None else Action.ZERO
    if vr == "PN":
        return Action.ZERO
    if vr == "UI":
        return Action.REPLACE_UID
    if vr in _FREE_TEXT_VRS or vr == "UN":
        return Action.REMOVE
    return Action.KEEP


def _is_date_like(element: DataElement) -> bool:
    return element.VR in _DATE_VRS or element.VR == "TM"


def _apply(dataset: Dataset, element: DataElement, action: Action, context: PatientContext,
           report: ProfileReport) -> None:
    if action is Action.REMOVE:
        del dataset[element.tag]
    elif action is Action.ZERO:
        element.value = _empty_value(element.VR)
    elif action is Action.DUMMY:
        element.value = _dummy_value(element, context)
    elif action is Action.REPLACE_UID:
        element.value = _replace_uids(element.value, context.pseudonymizer)
    elif action is Action.CLEAN:
        _clean_date(element, context, report)
    elif element.VR == "SQ":
        for item in element.value:
            _clean_items(item, context, report)
    elif element.tag == 0x00101010:
        element.value = _cap_age(element.value, context.max_age_years)


def _empty_value(vr: str) -> object:
    if vr == "SQ":
        return Sequence()
    return "" if vr in _STRING_VRS else None


def _dummy_value(element: DataElement, context: PatientContext) -> object:
    if element.tag in (0x00100010, 0x00100020):
        return context.patient_key
    if element.VR == "SQ":
        return Sequence([Dataset()])  # one empty item: non-zero length, and nothing of the source's items
    return _DUMMY_BY_VR.get(element.VR, DUMMY_TEXT)


def _replace_uids(value: object, pseudonymizer: Pseudonymizer) -> object:
    if isinstance(value, MultiValue | list):
        return [_replace_uid(str(uid), pseudonymizer) for uid in value]
    return _replace_uid(str(value), pseudonymizer) if value else value


def _replace_uid(uid: str, pseudonymizer: Pseudonymizer) -> str:
    uid = uid.strip().rstrip("\x00")
    if not uid or uid.startswith(DICOM_UID_ROOT):
        return uid
    return pseudonymizer.uid(uid)


def _clean_date(element: DataElement, context: PatientContext, report: ProfileReport) -> None:
    """Shift DA/DT by the patient's offset; times are kept (whole-day shifts do not move them)."""
    if element.VR == "TM" or not element.value:
        return
    text = "\\".join(str(part) for part in element.value) if isinstance(element.value, MultiValue) \
        else str(element.value)
    try:
        element.value = shift_value(element.VR, text, context.shift_days or 0)
    except UnparseableDateError:
        report.unparseable_dates += 1
        element.value = ""


def _cap_age(value: object, max_age_years: int | None) -> object:
    text = str(value or "")
    if max_age_years is None or len(text) != 4 or not text[:3].isdigit() or text[3] != "Y":
        return value
    return f"{max_age_years:03d}Y" if int(text[:3]) >= max_age_years else value


def _clean_file_meta(dataset: Dataset) -> None:
    meta = dataset.file_meta
    for tag in [tag for tag in meta.keys() if int(tag) not in FILE_META_KEPT]:
        del meta[tag]
    meta.ImplementationClassUID = WRITER_IMPLEMENTATION_UID
    meta.ImplementationVersionName = WRITER_IMPLEMENTATION_VERSION
    if "SOPInstanceUID" in dataset:
        meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID

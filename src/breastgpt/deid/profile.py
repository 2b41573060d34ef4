"""The per-attribute action table of the DICOM Basic Application Level Confidentiality Profile, as data.

Source: DICOM PS3.15 Annex E, Table E.1-1 "Application Level Confidentiality Profile Attributes", edition 2021b
(as reproduced in the Aliza DICOM viewer manual), cross-checked against the Supplement 142 attribute listing.
Action codes (PS3.15 E.1.1):

- D  replace with a non-zero-length dummy value consistent with the VR
- Z  replace with a zero-length value
- X  remove
- K  keep (sequences are kept but their items are cleaned recursively)
- C  clean: replace with values of similar meaning that carry no identity (here: dates shifted per patient)
- U  replace with a non-zero-length UID that is consistent within the set of instances

The standard writes compound codes (Z/D, X/Z, X/Z/D, X/Z/U*) whose choice depends on the attribute's type in
the IOD. Each row keeps the standard's code for reference and the single action we apply. We resolve to the most
removing choice except where the pipeline needs the attribute's structure: sequences of references to other
images (X/Z/U*) are kept with their UIDs replaced, so derived images still point at their sources.

Options we apply on top (PS3.15 E.3, codes from CID 7050):
- Retain Longitudinal Temporal Information with Modified Dates (DCM 113107), when date shifting is on: every date
  attribute that the basic profile would remove or empty is shifted by the patient's offset instead (action C).
- Retain Patient Characteristics (DCM 113108), restricted to Patient's Sex and Patient's Age.
Attributes absent from this table are handled by VR in `breastgpt.deid.dataset` (names emptied, non-DICOM UIDs
replaced, free text removed, dates shifted or emptied).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Action(str, Enum):
    DUMMY = "D"
    ZERO = "Z"
    REMOVE = "X"
    KEEP = "K"
    CLEAN = "C"
    REPLACE_UID = "U"


@dataclass(frozen=True)
class ProfileRow:
    keyword: str
    standard: str  # the code as printed in Table E.1-1 (may be compound)
    action: Action


D, Z, X, K, C, U = (Action.DUMMY, Action.ZERO, Action.REMOVE, Action.KEEP, Action.CLEAN, Action.REPLACE_UID)

# tag: (keyword, standard code, our action). Ordered by keyword as in the standard's table.
_ROWS: dict[int, tuple[str, str, Action]] = {
    0x00080050: ("AccessionNumber", "Z", Z),
    0x00184000: ("AcquisitionComments", "X", X),
    0x00400555: ("AcquisitionContextSequence", "X", X),
    0x00080022: ("AcquisitionDate", "X/Z", Z),
    0x0008002A: ("AcquisitionDateTime", "X/D", X),
    0x00181400: ("AcquisitionDeviceProcessingDescription", "X/D", X),
    0x00189424: ("AcquisitionProtocolDescription", "X", X),
    0x00080032: ("AcquisitionTime", "X/Z", Z),
    0x00404035: ("ActualHumanPerformersSequence", "X", X),
    0x001021B0: ("AdditionalPatientHistory", "X", X),
    0x00380010: ("AdmissionID", "X", X),
    0x00380020: ("AdmittingDate", "X", X),
    0x00081084: ("AdmittingDiagnosesCodeSequence", "X", X),
    0x00081080: ("AdmittingDiagnosesDescription", "X", X),
    0x00380021: ("AdmittingTime", "X", X),
    0x00001000: ("AffectedSOPInstanceUID", "X", X),
    0x00102110: ("Allergies", "X", X),
    0x0040A078: ("AuthorObserverSequence", "X", X),
    0x00101081: ("BranchOfService", "X", X),
    0x00181007: ("CassetteID", "X", X),
    0x00400280: ("CommentsOnThePerformedProcedureStep", "X", X),
    0x00209161: ("ConcatenationUID", "U", U),
    0x00403001: ("ConfidentialityConstraintOnPatientDataDescription", "X", X),
    0x0008009C: ("ConsultingPhysicianName", "X", X),
    0x0008009D: ("ConsultingPhysicianIdentificationSequence", "X", X),
    0x00400512: ("ContainerIdentifier", "D", D),
    0x00700086: ("ContentCreatorIdentificationCodeSequence", "X", X),
    0x00700084: ("ContentCreatorName", "Z", Z),
    0x00080023: ("ContentDate", "Z/D", Z),
    0x0040A730: ("ContentSequence", "X", X),
    0x00080033: ("ContentTime", "Z/D", Z),
    0x0008010D: ("ContextGroupExtensionCreatorUID", "U", U),
    0x00180010: ("ContrastBolusAgent", "Z/D", Z),
    0x0018A003: ("ContributionDescription", "X", X),
    0x00102150: ("CountryOfResidence", "X", X),
    0x00089123: ("CreatorVersionUID", "U", U),
    0x00380300: ("CurrentPatientLocation", "X", X),
    0x00080025: ("CurveDate", "X", X),
    0x00080035: ("CurveTime", "X", X),
    0x0040A07C: ("CustodialOrganizationSequence", "X", X),
    0xFFFCFFFC: ("DataSetTrailingPadding", "X", X),
    0x00181200: ("DateOfLastCalibration", "X", X),
    0x0018700C: ("DateOfLastDetectorCalibration", "X", X),
    0x00082111: ("DerivationDescription", "X", X),
    0x0018700A: ("DetectorID", "X/D", X),
    0x00181000: ("DeviceSerialNumber", "X/Z/D", X),
    0x00181002: ("DeviceUID", "U", U),
    0x04000100: ("DigitalSignatureUID", "X", X),
    0xFFFAFFFA: ("DigitalSignaturesSequence", "X", X),
    0x00209164: ("DimensionOrganizationUID", "U", U),
    0x00380040: ("DischargeDiagnosisDescription", "X", X),
    0x4008011A: ("DistributionAddress", "X", X),
    0x40080119: ("DistributionName", "X", X),
    0x300A0013: ("DoseReferenceUID", "U", U),
    0x00102160: ("EthnicGroup", "X", X),
    0x00080058: ("FailedSOPInstanceUIDList", "U", U),
    0x0070031A: ("FiducialUID", "U", U),
    0x00402017: ("FillerOrderNumberImagingServiceRequest", "Z", Z),
    0x00209158: ("FrameComments", "X", X),
    0x00200052: ("FrameOfReferenceUID", "U", U),
    0x00181008: ("GantryID", "X", X),
    0x00181005: ("GeneratorID", "X", X),
    0x00700001: ("GraphicAnnotationSequence", "D", X),  # presentation-state content; not kept by us
    0x00404037: ("HumanPerformerName", "X", X),
    0x00404036: ("HumanPerformerOrganization", "X", X),
    0x00880200: ("IconImageSequence", "X", X),
    0x00084000: ("IdentifyingComments", "X", X),
    0x00204000: ("ImageComments", "X", X),
    0x00284000: ("ImagePresentationComments", "X", X),
    0x00402400: ("ImagingServiceRequestComments", "X", X),
    0x40080300: ("Impressions", "X", X),
    0x00080015: ("InstanceCoercionDateTime", "X", X),
    0x00080014: ("InstanceCreatorUID", "U", U),
    0x00080081: ("InstitutionAddress", "X", X),
    0x00080082: ("InstitutionCodeSequence", "X/Z/D", X),
    0x00080080: ("InstitutionName", "X/Z/D", X),
    0x00081040: ("InstitutionalDepartmentName", "X", X),
    0x00101050: ("InsurancePlanIdentification", "X", X),
    0x00401011: ("IntendedRecipientsOfResultsIdentificationSequence", "X", X),
    0x40080111: ("InterpretationApproverSequence", "X", X),
    0x4008010C: ("InterpretationAuthor", "X", X),
    0x40080115: ("InterpretationDiagnosisDescription", "X", X),
    0x40080202: ("InterpretationIDIssuer", "X", X),
    0x40080102: ("InterpretationRecorder", "X", X),
    0x4008010B: ("InterpretationText", "X", X),
    0x4008010A: ("InterpretationTranscriber", "X", X),
    0x00083010: ("IrradiationEventUID", "U", U),
    0x00380011: ("IssuerOfAdmissionID", "X", X),
    0x00080051: ("IssuerOfAccessionNumberSequence", "X", X),
    0x00100021: ("IssuerOfPatientID", "X", X),
    0x00380061: ("IssuerOfServiceEpisodeID", "X", X),
    0x00281214: ("LargePaletteColorLookupTableUID", "U", U),
    0x001021D0: ("LastMenstrualDate", "X", X),
    0x04000404: ("MAC", "X", X),
    0x00020003: ("MediaStorageSOPInstanceUID", "U", U),
    0x00102000: ("MedicalAlerts", "X", X),
    0x00101090: ("MedicalRecordLocator", "X", X),
    0x00101080: ("MilitaryRank", "X", X),
    0x04000550: ("ModifiedAttributesSequence", "X", X),
    0x00203406: ("ModifiedImageDescription", "X", X),
    0x00203401: ("ModifyingDeviceID", "X", X),
    0x00081060: ("NameOfPhysiciansReadingStudy", "X", X),
    0x00401010: ("NamesOfIntendedRecipientsOfResults", "X", X),
    0x00102180: ("Occupation", "X", X),
    0x00081072: ("OperatorIdentificationSequence", "X/D", X),
    0x00081070: ("OperatorsName", "X/Z/D", X),
    0x00402010: ("OrderCallbackPhoneNumber", "X", X),
    0x00402008: ("OrderEnteredBy", "X", X),
    0x00402009: ("OrderEntererLocation", "X", X),
    0x04000561: ("OriginalAttributesSequence", "X", X),
    0x00101000: ("OtherPatientIDs", "X", X),
    0x00101002: ("OtherPatientIDsSequence", "X", X),
    0x00101001: ("OtherPatientNames", "X", X),
    0x00080024: ("OverlayDate", "X", X),
    0x00080034: ("OverlayTime", "X", X),
    0x0040A07A: ("ParticipantSequence", "X", X),
    0x00101040: ("PatientAddress", "X", X),
    0x00104000: ("PatientComments", "X", X),
    0x00100020: ("PatientID", "Z", D),  # replaced by the pseudonymous patient key
    0x00102203: ("PatientSexNeutered", "X/Z", X),
    0x00380500: ("PatientState", "X", X),
    0x00401004: ("PatientTransportArrangements", "X", X),
    0x00101010: ("PatientAge", "X", K),  # Retain Patient Characteristics option
    0x00100030: ("PatientBirthDate", "Z", Z),
    0x00101005: ("PatientBirthName", "X", X),
    0x00100032: ("PatientBirthTime", "X", X),
    0x00380400: ("PatientInstitutionResidence", "X", X),
    0x00100050: ("PatientInsurancePlanCodeSequence", "X", X),
    0x00101060: ("PatientMotherBirthName", "X", X),
    0x00100010: ("PatientName", "Z", D),  # replaced by the pseudonymous patient key
    0x00100101: ("PatientPrimaryLanguageCodeSequence", "X", X),
    0x00100102: ("PatientPrimaryLanguageModifierCodeSequence", "X", X),
    0x001021F0: ("PatientReligiousPreference", "X", X),
    0x00100040: ("PatientSex", "Z", K),  # Retain Patient Characteristics option
    0x00101020: ("PatientSize", "X", X),
    0x00102154: ("PatientTelephoneNumbers", "X", X),
    0x00101030: ("PatientWeight", "X", X),
    0x00101100: ("ReferencedPatientPhotoSequence", "X", X),
    0x00400243: ("PerformedLocation", "X", X),
    0x00400254: ("PerformedProcedureStepDescription", "X", X),
    0x00400250: ("PerformedProcedureStepEndDate", "X", X),
    0x00400251: ("PerformedProcedureStepEndTime", "X", X),
    0x00400253: ("PerformedProcedureStepID", "X", X),
    0x00400244: ("PerformedProcedureStepStartDate", "X", X),
    0x00400245: ("PerformedProcedureStepStartTime", "X", X),
    0x00400241: ("PerformedStationAETitle", "X", X),
    0x00404030: ("PerformedStationGeographicLocationCodeSequence", "X", X),
    0x00400242: ("PerformedStationName", "X", X),
    0x00404028: ("PerformedStationNameCodeSequence", "X", X),
    0x00081052: ("PerformingPhysicianIdentificationSequence", "X", X),
    0x00081050: ("PerformingPhysicianName", "X", X),
    0x00401102: ("PersonAddress", "X", X),
    0x00401101: ("PersonIdentificationCodeSequence", "D", X),
    0x0040A123: ("PersonName", "D", D),
    0x00401103: ("PersonTelephoneNumbers", "X", X),
    0x40080114: ("PhysicianApprovingInterpretation", "X", X),
    0x00081062: ("PhysiciansReadingStudyIdentificationSequence", "X", X),
    0x00081048: ("PhysiciansOfRecord", "X", X),
    0x00081049: ("PhysiciansOfRecordIdentificationSequence", "X", X),
    0x00287FE0: ("PixelDataProviderURL", "X", X),
    0x00402016: ("PlacerOrderNumberImagingServiceRequest", "Z", Z),
    0x00181004: ("PlateID", "X", X),
    0x00400012: ("PreMedication", "X", X),
    0x001021C0: ("PregnancyStatus", "X", X),
    0x00081032: ("ProcedureCodeSequence", "X/Z", X),
    0x00181030: ("ProtocolName", "X/D", X),
    0x00402001: ("ReasonForTheImagingServiceRequest", "X", X),
    0x00321030: ("ReasonForStudy", "X", X),
    0x04000402: ("ReferencedDigitalSignatureSequence", "X", X),
    0x30060024: ("ReferencedFrameOfReferenceUID", "U", U),
    0x00404023: ("ReferencedGeneralPurposeScheduledProcedureStepTransactionUID", "U", U),
    0x00081140: ("ReferencedImageSequence", "X/Z/U*", K),  # kept: UIDs inside are replaced
    0x00380004: ("ReferencedPatientAliasSequence", "X", X),
    0x00081120: ("ReferencedPatientSequence", "X", X),
    0x00081111: ("ReferencedPerformedProcedureStepSequence", "X/Z/D", X),
    0x04000403: ("ReferencedSOPInstanceMACSequence", "X", X),
    0x00081155: ("ReferencedSOPInstanceUID", "U", U),
    0x00041511: ("ReferencedSOPInstanceUIDInFile", "U", U),
    0x00081110: ("ReferencedStudySequence", "X/Z", X),
    0x00080092: ("ReferringPhysicianAddress", "X", X),
    0x00080096: ("ReferringPhysicianIdentificationSequence", "X", X),
    0x00080090: ("ReferringPhysicianName", "Z", Z),
    0x00080094: ("ReferringPhysicianTelephoneNumbers", "X", X),
    0x00102152: ("RegionOfResidence", "X", X),
    0x300600C2: ("RelatedFrameOfReferenceUID", "U", U),
    0x00400275: ("RequestAttributesSequence", "X", X),
    0x00321070: ("RequestedContrastAgent", "X", X),
    0x00401400: ("RequestedProcedureComments", "X", X),
    0x00321060: ("RequestedProcedureDescription", "X/Z", X),
    0x00401001: ("RequestedProcedureID", "X", X),
    0x00401005: ("RequestedProcedureLocation", "X", X),
    0x00001001: ("RequestedSOPInstanceUID", "U", U),
    0x00321032: ("RequestingPhysician", "X", X),
    0x00321033: ("RequestingService", "X", X),
    0x00102299: ("ResponsibleOrganization", "X", X),
    0x00102297: ("ResponsiblePerson", "X", X),
    0x40084000: ("ResultsComments", "X", X),
    0x40080118: ("ResultsDistributionListSequence", "X", X),
    0x40080042: ("ResultsIDIssuer", "X", X),
    0x300E0008: ("ReviewerName", "X/Z", X),
    0x00404034: ("ScheduledHumanPerformersSequence", "X", X),
    0x0038001E: ("ScheduledPatientInstitutionResidence", "X", X),
    0x0040000B: ("ScheduledPerformingPhysicianIdentificationSequence", "X", X),
    0x00400006: ("ScheduledPerformingPhysicianName", "X", X),
    0x00400004: ("ScheduledProcedureStepEndDate", "X", X),
    0x00400005: ("ScheduledProcedureStepEndTime", "X", X),
    0x00400007: ("ScheduledProcedureStepDescription", "X", X),
    0x00400011: ("ScheduledProcedureStepLocation", "X", X),
    0x00400002: ("ScheduledProcedureStepStartDate", "X", X),
    0x00400003: ("ScheduledProcedureStepStartTime", "X", X),
    0x00400001: ("ScheduledStationAETitle", "X", X),
    0x00404027: ("ScheduledStationGeographicLocationCodeSequence", "X", X),
    0x00400010: ("ScheduledStationName", "X", X),
    0x00404025: ("ScheduledStationNameCodeSequence", "X", X),
    0x00321020: ("ScheduledStudyLocation", "X", X),
    0x00321021: ("ScheduledStudyLocationAETitle", "X", X),
    0x00080021: ("SeriesDate", "X/D", X),
    0x0008103E: ("SeriesDescription", "X", X),
    0x0020000E: ("SeriesInstanceUID", "U", U),
    0x00080031: ("SeriesTime", "X/D", X),
    0x00380062: ("ServiceEpisodeDescription", "X", X),
    0x00380060: ("ServiceEpisodeID", "X", X),
    0x001021A0: ("SmokingStatus", "X", X),
    0x00080018: ("SOPInstanceUID", "U", U),
    0x00082112: ("SourceImageSequence", "X/Z/U*", K),  # kept: UIDs inside are replaced
    0x00380050: ("SpecialNeeds", "X", X),
    0x00400551: ("SpecimenIdentifier", "D", D),
    0x00400554: ("SpecimenUID", "U", U),
    0x00081010: ("StationName", "X/Z/D", X),
    0x00880140: ("StorageMediaFileSetUID", "U", U),
    0x00880130: ("StorageMediaFileSetID", "X", X),
    0x00324000: ("StudyComments", "X", X),
    0x00080020: ("StudyDate", "Z", Z),
    0x00081030: ("StudyDescription", "X", X),
    0x00200010: ("StudyID", "Z", Z),
    0x00320012: ("StudyIDIssuer", "X", X),
    0x0020000D: ("StudyInstanceUID", "U", U),
    0x00080030: ("StudyTime", "Z", Z),
    0x00200200: ("SynchronizationFrameOfReferenceUID", "U", U),
    0x0040DB0D: ("TemplateExtensionCreatorUID", "U", U),
    0x0040DB0C: ("TemplateExtensionOrganizationUID", "U", U),
    0x40004000: ("TextComments", "X", X),
    0x20300020: ("TextString", "X", X),
    0x00080201: ("TimezoneOffsetFromUTC", "X", X),
    0x00880910: ("TopicAuthor", "X", X),
    0x00880912: ("TopicKeywords", "X", X),
    0x00880906: ("TopicSubject", "X", X),
    0x00880904: ("TopicTitle", "X", X),
    0x00081195: ("TransactionUID", "U", U),
    0x0040A124: ("UID", "U", U),
    0x0040A088: ("VerifyingObserverIdentificationCodeSequence", "Z", X),
    0x0040A075: ("VerifyingObserverName", "D", D),
    0x0040A073: ("VerifyingObserverSequence", "D", X),
    0x0040A027: ("VerifyingOrganization", "X", X),
    0x00384000: ("VisitComments", "X", X),
    0x00120010: ("ClinicalTrialSponsorName", "D", D),
    0x00120020: ("ClinicalTrialProtocolID", "D", D),
    0x00120021: ("ClinicalTrialProtocolName", "Z", Z),
    0x00120030: ("ClinicalTrialSiteID", "Z", Z),
    0x00120031: ("ClinicalTrialSiteName", "Z", Z),
    0x00120040: ("ClinicalTrialSubjectID", "D", D),
    0x00120042: ("ClinicalTrialSubjectReadingID", "D", D),
    0x00120050: ("ClinicalTrialTimePointID", "Z", Z),
    0x00120051: ("ClinicalTrialTimePointDescription", "Z", Z),
}

BASIC_PROFILE: dict[int, ProfileRow] = {tag: ProfileRow(*row) for tag, row in _ROWS.items()}
"""Tag (as a 32-bit int) → row of PS3.15 Table E.1-1 with the action we apply."""

# Whole repeating groups the profile removes: curves (50xx) and overlays (60xx; overlay data and comments can
# carry burned-in names, and the pipeline does not use overlays).
REMOVED_GROUP_RANGES: tuple[tuple[int, int], ...] = ((0x5000, 0x50FF), (0x6000, 0x60FF))

# Date attributes never shifted even with the modified-dates option: the birth date re-identifies on its own and
# the patient's age (kept) carries what the analyses need.
NEVER_SHIFTED: frozenset[int] = frozenset({0x00100030, 0x00100032, 0x001021D0})

# The DICOM root: UIDs under it name standard things (SOP classes, transfer syntaxes, coding schemes), not people.
DICOM_UID_ROOT = "1.2.840.10008."

# CID 7050 codes written into De-identification Method Code Sequence (0012,0064).
CODE_BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
CODE_CLEAN_PIXEL_DATA = ("113101", "Clean Pixel Data Option")
CODE_MODIFIED_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
CODE_PATIENT_CHARACTERISTICS = ("113108", "Retain Patient Characteristics Option")


def action_for(tag: int) -> ProfileRow | None:
    """The table row for a public tag, or None when the standard's table does not list it."""
    return BASIC_PROFILE.get(int(tag))


def in_removed_group(tag: int) -> bool:
    group = int(tag) >> 16
    return any(low <= group <= high for low, high in REMOVED_GROUP_RANGES)

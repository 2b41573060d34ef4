"""Keyed pseudonyms: stable, keyed, namespaced, well-formed."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from breastgpt.deid import Pseudonymizer
from breastgpt.deid.pseudonym import MAX_SHIFT_DAYS, SECRET_ENV_VAR

SECRET = b"0123456789abcdef0123456789abcdef"


def test_same_input_same_key_and_format() -> None:
    one, two = Pseudonymizer(SECRET), Pseudonymizer(SECRET)
    key = one.patient_key("vindr", "P001")
    assert key == two.patient_key("vindr", "P001")
    assert re.fullmatch(r"P[A-Z2-7]{16}", key)
    assert re.fullmatch(r"S[A-Z2-7]{16}", one.study_key("vindr", "1.2.3"))
    assert one.patient_key("vindr", " P001 ") == key  # surrounding blanks are not identity


def test_keys_depend_on_secret_source_and_kind() -> None:
    one, other = Pseudonymizer(SECRET), Pseudonymizer(SECRET[::-1])
    assert one.patient_key("vindr", "P001") != other.patient_key("vindr", "P001")
    assert one.patient_key("vindr", "P001") != one.patient_key("embed", "P001")
    assert one.patient_key("vindr", "P001")[1:] != one.study_key("vindr", "P001")[1:]
    # length-prefixed parts: moving characters between source and id changes the key
    assert one.patient_key("ab", "c") != one.patient_key("a", "bc")


def test_uid_is_stable_valid_and_not_namespaced() -> None:
    p = Pseudonymizer(SECRET)
    uid = p.uid("1.2.826.0.1.3680043.99.1.1")
    assert uid == p.uid("1.2.826.0.1.3680043.99.1.1\x00")  # DICOM pads UIDs with NUL
    assert uid != p.uid("1.2.826.0.1.3680043.99.1.2")
    assert re.fullmatch(r"2\.25\.(0|[1-9][0-9]*)", uid) and len(uid) <= 64
    assert int(uid[5:]) < 2**128


@settings(max_examples=200, deadline=None)
@given(source=st.text(min_size=1, max_size=8).filter(str.strip), patient=st.text(min_size=1, max_size=12).filter(str.strip))
def test_date_shift_in_range_and_stable(source: str, patient: str) -> None:
    p = Pseudonymizer(SECRET)
    shift = p.date_shift_days(source, patient)
    assert -MAX_SHIFT_DAYS <= shift <= -1
    assert shift == Pseudonymizer(SECRET).date_shift_days(source, patient)


def test_date_shifts_spread_over_the_range() -> None:
    p = Pseudonymizer(SECRET)
    shifts = {p.date_shift_days("s", f"patient-{i}") for i in range(200)}
    assert len(shifts) > 180 and min(shifts) < -3000 and max(shifts) > -700


@pytest.mark.parametrize("secret", [b"", b"short", b"x" * 15])
def test_short_secret_is_refused_with_guidance(secret: bytes) -> None:
    with pytest.raises(ValueError, match=r"at least 16 are required.*secrets\.token_hex"):
        Pseudonymizer(secret)


def test_text_secret_is_refused() -> None:
    with pytest.raises(TypeError, match="must be bytes"):
        Pseudonymizer("a text secret of enough length")  # type: ignore[arg-type]


def test_empty_identifier_is_refused() -> None:
    with pytest.raises(ValueError, match="patient_id is empty"):
        Pseudonymizer(SECRET).patient_key("vindr", "  ")


def test_secret_from_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv(SECRET_ENV_VAR, SECRET.decode())
    from_env = Pseudonymizer.from_env()
    secret_file = tmp_path / "secret.txt"
    secret_file.write_bytes(SECRET + b"\n")
    assert from_env.patient_key("s", "1") == Pseudonymizer.from_file(secret_file).patient_key("s", "1")
    monkeypatch.delenv(SECRET_ENV_VAR)
    with pytest.raises(ValueError, match=SECRET_ENV_VAR):
        Pseudonymizer.from_env()


def test_repr_does_not_show_the_secret() -> None:
    p = Pseudonymizer(SECRET)
    assert SECRET.decode() not in repr(p) and p.fingerprint() in repr(p)
    assert p.fingerprint() != Pseudonymizer(SECRET[::-1]).fingerprint()

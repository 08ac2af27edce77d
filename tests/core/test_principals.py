import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.principals import (
    InvalidPrincipal,
    encode_principal,
    parse_principal,
    validate_renter_principal,
)

# Well-known principals: the anonymous caller, the management canister, the ICP ledger.
LEDGER = "ryjl3-tyaaa-aaaaa-aaaba-cai"


def test_known_principals_round_trip() -> None:
    assert encode_principal(b"\x04") == "2vxsx-fae"
    assert encode_principal(b"") == "aaaaa-aa"
    assert parse_principal(LEDGER) == bytes.fromhex("00000000000000020101")


@given(st.binary(min_size=1, max_size=29))
def test_every_encoded_principal_parses_back(raw: bytes) -> None:
    assert parse_principal(encode_principal(raw)) == raw


@pytest.mark.parametrize(
    "text",
    [
        "",
        "RYJL3-TYAAA-AAAAA-AAABA-CAI",  # upper case is not canonical
        "ryjl3-tyaaa-aaaaa-aaaba-caj",  # checksum broken by one character
        "ryjl3tyaaaaaaaaaaabacai",  # groups missing
        "ryjl3-tyaaa-aaaaa-aaaba-ca1",  # '1' is not base32
        encode_principal(bytes(30)),  # longer than 29 bytes
    ],
)
def test_malformed_principals_are_rejected(text: str) -> None:
    with pytest.raises(InvalidPrincipal):
        parse_principal(text)


@pytest.mark.parametrize("text", ["2vxsx-fae", "aaaaa-aa"])
def test_anonymous_and_management_are_never_renters(text: str) -> None:
    parse_principal(text)
    with pytest.raises(InvalidPrincipal):
        validate_renter_principal(text)

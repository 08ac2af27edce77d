import pytest
from cryptography.fernet import Fernet

from app.core.crypto import Keyring, KeyringError
from app.core.key_tokens import digest_api_key, generate_api_key


def test_newest_key_encrypts_and_old_keys_still_decrypt() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = Keyring.parse(f"k1:{old}").encrypt("s3cret")
    keyring = Keyring.parse(f"k2:{new},k1:{old}")
    assert keyring.primary_key_id == "k2"
    assert keyring.decrypt(token) == "s3cret"
    rotated = keyring.rotate(token)
    assert Keyring.parse(f"k2:{new}").decrypt(rotated) == "s3cret"


def test_unknown_key_and_bad_keyring_are_errors() -> None:
    token = Keyring.parse(Fernet.generate_key().decode()).encrypt("x")
    with pytest.raises(KeyringError):
        Keyring.parse(Fernet.generate_key().decode()).decrypt(token)
    with pytest.raises(KeyringError):
        Keyring.parse("k1:not-a-key")
    with pytest.raises(KeyringError):
        Keyring.parse(" , ")


def test_api_keys_have_the_documented_shape_and_entropy() -> None:
    key = generate_api_key()
    scheme, prefix, secret = key.plaintext.split("_", 2)
    assert scheme == "bmk" and prefix == key.prefix and len(prefix) == 8
    assert len(secret) >= 43  # 32 random bytes in urlsafe base64
    assert key.digest == digest_api_key(key.plaintext) and len(key.digest) == 64
    assert generate_api_key().plaintext != key.plaintext

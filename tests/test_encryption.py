"""age encryption of archives (backups_app.encryption), checked against the real `age` command."""

import hashlib
import io
import json
import os
import subprocess
import sys
import threading

import pytest
from django.core.checks import run_checks
from pyrage import x25519

from backups_app import encryption
from backups_app.errors import BackupError

from .conftest import ROOT

BLOCK = hashlib.sha256(b"not compressible").digest() * (1 << 15)  # 1 MiB that zstd would not shrink


def write_identity_file(path, *identities, comments=True):
    lines = []
    for identity in identities:
        if comments:
            lines += ["# created: 2026-11-26T12:00:00Z", f"# public key: {identity.to_public()}"]
        lines += [str(identity), ""]
    path.write_text("\n".join(lines))
    return path


def encrypt_bytes(data: bytes, *public_keys) -> bytes:
    target = io.BytesIO()
    with encryption.encrypting(target, [str(key) for key in public_keys]) as writer:
        writer.write(data)
    return target.getvalue()


def decrypt_bytes(data: bytes, **kwargs) -> bytes:
    with encryption.decrypting(io.BytesIO(data), **kwargs) as reader:
        return reader.read()


@pytest.fixture
def identity(tmp_path, settings):
    """A key pair, its private key in the identity file that the settings name."""
    key = x25519.Identity.generate()
    settings.BACKUP_AGE_IDENTITY_FILE = str(write_identity_file(tmp_path / "identity.txt", key))
    return key


def test_round_trip_of_a_large_stream_keeps_memory_flat(tmp_path):
    """96 MiB through encryption to a file and back, in a process of its own whose peak memory (Linux VmHWM,
    reset before the stream) is the stream's."""
    key = x25519.Identity.generate()
    key_file = write_identity_file(tmp_path / "key.txt", key)
    script = f"""
import hashlib, json
from django.conf import settings
settings.configure(BACKUP_AGE_IDENTITY_FILE={str(key_file)!r})
import django; django.setup()
from backups_app import encryption
BLOCK = hashlib.sha256(b"not compressible").digest() * (1 << 15)
def status(field):  # kB -> bytes
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(field + ":"))
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # start the peak (VmHWM) from here
written, read = hashlib.sha256(), hashlib.sha256()
before = status("VmRSS")
with open({str(tmp_path / "big.age")!r}, "wb") as target:
    with encryption.encrypting(target, [{str(key.to_public())!r}]) as writer:
        for number in range(96):
            chunk = BLOCK[number:] + BLOCK[:number]
            written.update(chunk)
            writer.write(chunk)
with open({str(tmp_path / "big.age")!r}, "rb") as source, encryption.decrypting(source) as reader:
    while chunk := reader.read(1 << 20):
        read.update(chunk)
print(json.dumps({{"growth": status("VmHWM") - before, "same": written.digest() == read.digest()}}))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["same"]
    assert os.path.getsize(tmp_path / "big.age") > 96 << 20
    assert outcome["growth"] < 24 << 20, outcome  # the stream is 96 MiB: memory is not proportional to it


def test_the_age_command_decrypts_ours_and_we_decrypt_its(tmp_path, identity):
    data = BLOCK * 3 + b"tail"
    ours = tmp_path / "ours.dump.zst.age"
    ours.write_bytes(encrypt_bytes(data, identity.to_public()))
    decrypted = subprocess.run(["age", "-d", "-i", str(tmp_path / "identity.txt"), str(ours)],
                               capture_output=True, check=True).stdout
    assert decrypted == data

    theirs = subprocess.run(["age", "-r", str(identity.to_public())], input=data, capture_output=True,
                            check=True).stdout
    assert encryption.is_encrypted(theirs[:64])
    assert decrypt_bytes(theirs) == data


def test_a_key_made_by_age_keygen_works_both_ways(tmp_path, settings):
    key_file = tmp_path / "keygen.txt"
    subprocess.run(["age-keygen", "-o", str(key_file)], capture_output=True, check=True)
    public_key = subprocess.run(["age-keygen", "-y", str(key_file)], capture_output=True, text=True,
                                check=True).stdout.strip()
    settings.BACKUP_AGE_RECIPIENTS = public_key
    settings.BACKUP_AGE_IDENTITY_FILE = str(key_file)
    assert encryption.recipients() == [public_key]
    assert decrypt_bytes(encrypt_bytes(b"pagila", *encryption.recipients())) == b"pagila"


def test_several_keys_in_one_identity_file_restore_old_and_new_backups(tmp_path, settings):
    old_key, new_key = x25519.Identity.generate(), x25519.Identity.generate()
    old_backup = encrypt_bytes(b"made before the key change", old_key.to_public())
    new_backup = encrypt_bytes(b"made after it", new_key.to_public())
    settings.BACKUP_AGE_IDENTITY_FILE = str(write_identity_file(tmp_path / "keys.txt", new_key, old_key))
    assert decrypt_bytes(old_backup) == b"made before the key change"
    assert decrypt_bytes(new_backup) == b"made after it"
    # The same file serves the age command.
    (tmp_path / "old.age").write_bytes(old_backup)
    assert subprocess.run(["age", "-d", "-i", str(tmp_path / "keys.txt"), str(tmp_path / "old.age")],
                          capture_output=True, check=True).stdout == b"made before the key change"


def test_a_key_that_does_not_match_names_the_recipients_and_never_a_private_key(tmp_path, identity):
    other = x25519.Identity.generate()
    data = encrypt_bytes(b"secret rows", other.to_public())
    with pytest.raises(BackupError) as error:
        decrypt_bytes(data, archive_name="default/x.dump.zst.age", encrypted_to=[str(other.to_public())])
    message = str(error.value)
    assert message == (
        f"Archive default/x.dump.zst.age is encrypted, but none of the keys in {tmp_path / 'identity.txt'} can "
        f"decrypt it; it was encrypted to {other.to_public()} (that file holds the keys of {identity.to_public()})."
    )
    assert "AGE-SECRET-KEY" not in message.upper()


def test_without_an_identity_file_the_message_says_which_setting_to_set(settings):
    settings.BACKUP_AGE_IDENTITY_FILE = ""
    data = encrypt_bytes(b"x", x25519.Identity.generate().to_public())
    with pytest.raises(BackupError, match=r"^Archive a\.age is encrypted; set BACKUP_AGE_IDENTITY_FILE to the file "
                                          r"with its private key\.$"):
        decrypt_bytes(data, archive_name="a.age")


def test_an_unreadable_or_wrong_identity_file_is_named_without_its_content(tmp_path, settings):
    data = encrypt_bytes(b"x", x25519.Identity.generate().to_public())
    settings.BACKUP_AGE_IDENTITY_FILE = str(tmp_path / "missing.txt")
    with pytest.raises(BackupError, match=r"^BACKUP_AGE_IDENTITY_FILE .*missing\.txt cannot be read \(No such file "
                                          r"or directory\); make it a file this user can read\.$"):
        decrypt_bytes(data)
    typo = str(x25519.Identity.generate())[:-3] + "qqq"
    (tmp_path / "typo.txt").write_text(f"# a comment\n{typo}\n")
    settings.BACKUP_AGE_IDENTITY_FILE = str(tmp_path / "typo.txt")
    with pytest.raises(BackupError, match=r"^Line 2 of BACKUP_AGE_IDENTITY_FILE .*typo\.txt is not an age private "
                                          r"key") as error:
        decrypt_bytes(data)
    assert typo[20:] not in str(error.value)
    (tmp_path / "empty.txt").write_text("# only comments\n")
    settings.BACKUP_AGE_IDENTITY_FILE = str(tmp_path / "empty.txt")
    with pytest.raises(BackupError, match="holds no private key"):
        decrypt_bytes(data)


@pytest.mark.parametrize("damage", ["flip a byte", "cut short"])
def test_damaged_ciphertext_raises_and_never_ends_like_a_complete_stream(identity, damage):
    data = bytearray(encrypt_bytes(BLOCK * 2, identity.to_public()))
    if damage == "flip a byte":
        data[-5000] ^= 1
    else:
        del data[-5000:]
    with encryption.decrypting(io.BytesIO(bytes(data)), archive_name="x.age") as reader:
        with pytest.raises(BackupError, match=r"^Archive x\.age is damaged: its encrypted data does not decrypt"):
            while reader.read(1 << 16):
                pass


def test_a_file_that_is_not_age_is_refused(identity):
    with pytest.raises(BackupError, match="is not a readable age file"):
        decrypt_bytes(b"PGDMP not encrypted at all" * 10)
    assert not encryption.is_encrypted(b"PGDMP")
    assert not encryption.is_encrypted(b"")


def test_an_exception_in_the_block_propagates_and_leaves_no_complete_stream(identity):
    target = io.BytesIO()
    with pytest.raises(ZeroDivisionError):
        with encryption.encrypting(target, [str(identity.to_public())]) as writer:
            writer.write(BLOCK * 2)
            1 / 0
    assert target.getvalue().startswith(encryption.HEADER)  # part was written ...
    with pytest.raises(BackupError, match="is damaged"):  # ... but it does not decrypt as if whole
        decrypt_bytes(target.getvalue())
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("age-")]


def test_a_failing_target_stops_the_writer_with_the_targets_own_error(identity):
    class DiskFull(io.RawIOBase):
        written = 0

        def writable(self):
            return True

        def write(self, data):
            self.written += len(data)
            if self.written > 300_000:
                raise OSError(28, "No space left on device")
            return len(data)

    with pytest.raises(OSError, match="No space left on device"):
        with encryption.encrypting(DiskFull(), [str(identity.to_public())]) as writer:
            for _ in range(10):
                writer.write(BLOCK)
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("age-")]


def test_closing_a_decryption_half_way_stops_its_thread(identity):
    data = encrypt_bytes(BLOCK * 8, identity.to_public())
    reader = encryption.decrypting(io.BytesIO(data))
    assert reader.read(1000) == BLOCK[:1000]
    reader.close()
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("age-")]


def test_closing_the_writer_finishes_the_stream_but_not_the_target(identity):
    target = io.BytesIO()
    with encryption.encrypting(target, [str(identity.to_public())]) as writer:
        writer.write(b"abc")
        writer.close()
        assert decrypt_bytes(target.getvalue()) == b"abc"
    assert not target.closed


def test_recipients_are_read_from_the_setting(settings):
    keys = [str(x25519.Identity.generate().to_public()) for _ in range(3)]
    settings.BACKUP_AGE_RECIPIENTS = ""
    assert encryption.recipients() == []
    settings.BACKUP_AGE_RECIPIENTS = f" {keys[0]},{keys[1]}\n{keys[2]} {keys[0]} "
    assert encryption.recipients() == keys
    settings.BACKUP_AGE_RECIPIENTS = keys[:2]
    assert encryption.recipients() == keys[:2]


def test_an_invalid_recipient_is_one_sentence_naming_the_setting(settings):
    settings.BACKUP_AGE_RECIPIENTS = "age1notakey"
    with pytest.raises(BackupError, match=r"^BACKUP_AGE_RECIPIENTS has age1notakey, which is not an age public key; "
                                          r"a valid one starts with age1 and has 62 characters"):
        encryption.recipients()
    secret = str(x25519.Identity.generate())
    settings.BACKUP_AGE_RECIPIENTS = secret
    with pytest.raises(BackupError, match="holds a private key") as error:
        encryption.recipients()
    assert secret[16:] not in str(error.value)


def test_system_checks_report_bad_keys_and_unusable_identity_files(tmp_path, settings):
    settings.BACKUP_AGE_RECIPIENTS = "ssh-ed25519 AAAA"
    settings.BACKUP_AGE_IDENTITY_FILE = str(tmp_path / "nowhere.txt")
    found = {message.id: message.msg for message in run_checks()}
    assert "entry 1, which is not an age public key" in found["backups_app.E030"]
    assert "nowhere.txt cannot be read" in found["backups_app.E031"]

    key, other = x25519.Identity.generate(), x25519.Identity.generate()
    settings.BACKUP_AGE_RECIPIENTS = str(other.to_public())
    settings.BACKUP_AGE_IDENTITY_FILE = str(write_identity_file(tmp_path / "key.txt", key))
    ids = {message.id for message in run_checks()}
    assert "backups_app.W030" in ids and not {"backups_app.E030", "backups_app.E031"} & ids
    settings.BACKUP_AGE_RECIPIENTS = f"{other.to_public()} {key.to_public()}"
    assert not {"backups_app.E030", "backups_app.E031", "backups_app.W030"} & {m.id for m in run_checks()}

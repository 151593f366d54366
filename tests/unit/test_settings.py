"""Settings: defaults < file < environment; one clear line naming a wrong key."""

from pathlib import Path

import pytest

from hub.settings import SettingsError, env_name, load


def test_defaults_bind_loopback_and_standard_ports():
    s = load(environ={})
    assert s.bind == "127.0.0.1"
    assert (s.http.port, s.dicom.port, s.hl7.port) == (8042, 4242, 2575)
    assert s.ae_title == "RISHUB"
    assert s.effective_database_url.startswith("sqlite:///")
    assert s.http.open is False


def test_file_holds_only_changed_keys_and_env_wins(tmp_path: Path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('ae_title = "FILEAE"\n[http]\nport = 9000\n[modalities.CT1]\naet = "CT1"\nhost = "10.0.0.5"\n')
    s = load(cfg, environ={"RISHUB_HTTP_PORT": "9100", "RISHUB_DICOM_PORT": "11112", "RISHUB_BIND": "0.0.0.0"})
    assert s.ae_title == "FILEAE"
    assert s.http.port == 9100
    assert s.dicom.port == 11112
    assert s.bind == "0.0.0.0"
    assert s.hl7.port == 2575  # default fills the rest
    assert s.modalities["CT1"].port == 104
    assert s.modalities["CT1"].allow_store is True


@pytest.mark.parametrize(
    "name,value,key",
    [
        ("RISHUB_HTTP_PORT", "abc", "RISHUB_HTTP_PORT"),
        ("RISHUB_DICOM_PORT", "70000", "dicom.port"),
        ("RISHUB_AE_TITLE", "A" * 17, "ae_title"),
        ("RISHUB_STORAGE_DUPLICATE_POLICY", "maybe", "storage.duplicate_policy"),
        ("RISHUB_DATABASE_URL", "mysql://x", "database_url"),
        ("RISHUB_HTTP_OPEN", "perhaps", "RISHUB_HTTP_OPEN"),
        ("RISHUB_MODALITIES", "{bad json", "RISHUB_MODALITIES"),
    ],
)
def test_wrong_env_value_names_the_key(name: str, value: str, key: str):
    with pytest.raises(SettingsError) as exc:
        load(environ={name: value})
    message = str(exc.value)
    assert key in message
    assert "\n" not in message


def test_unknown_key_in_file_is_named(tmp_path: Path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[http]\nprot = 1\n")
    with pytest.raises(SettingsError, match=r"http\.prot: unknown setting"):
        load(cfg, environ={})


def test_modality_without_host_is_named(tmp_path: Path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[modalities.X]\naet = "X"\n')
    with pytest.raises(SettingsError, match=r"modalities\.X\.host: missing"):
        load(cfg, environ={})


def test_modalities_from_env_json():
    s = load(environ={"RISHUB_MODALITIES": '{"PACS": {"aet": "PACS", "host": "127.0.0.1", "port": 11112}}'})
    assert s.modalities["PACS"].aet == "PACS"
    assert s.modalities["PACS"].port == 11112


def test_env_names_cover_the_documented_keys():
    assert env_name("data_dir") == "RISHUB_DATA_DIR"
    assert env_name("http.port") == "RISHUB_HTTP_PORT"
    assert env_name("auth.jwt.issuer") == "RISHUB_AUTH_JWT_ISSUER"


def test_reference_config_file_loads_to_the_defaults():
    ref = Path(__file__).resolve().parents[2] / "config" / "rishub.toml"
    assert load(ref, environ={}) == load(environ={})


def test_missing_config_file_is_one_line(tmp_path: Path):
    with pytest.raises(SettingsError, match="not found"):
        load(tmp_path / "nope.toml", environ={})

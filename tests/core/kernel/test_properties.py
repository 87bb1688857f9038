"""Global properties: config.toml, ZSTACK_LITE_* overrides, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.kernel import properties
from core.kernel.properties import PropertyError, config_path, define, load
from tests.conftest import write_config


@pytest.fixture
def scratch_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test define() properties without leaking them into other tests."""
    monkeypatch.setattr(properties, "_DEFINITIONS", dict(properties._DEFINITIONS))


def test_defaults_when_the_file_sets_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("")
    props = load(path, env={})
    assert props["core.data_dir"] == Path("/var/lib/zstack-lite")
    assert props["core.db_url"] == ""
    assert props["core.log_level"] == "INFO"
    assert props["api.timeout"] == 300.0
    assert props["plugins.enabled"] == ["*"]
    assert props["plugins.disabled"] == []
    assert props["chains"] == {}
    assert props.source == path


def test_default_db_url_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    props = load(write_config(tmp_path), env={})
    assert props.db_url == f"sqlite:///{tmp_path / 'data' / 'zstack.db'}"
    other = load(write_config(tmp_path, 'db_url = "sqlite:///elsewhere.db"\n'), env={})
    assert other.db_url == "sqlite:///elsewhere.db"


def test_file_values_are_typed(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        '[api]\ntimeout = 5\n[plugins]\nenabled = ["zone", "tag"]\ndisabled = ["vm"]\n'
        '[chains]\nmy-chain = ["a.B", "c.D"]\n',
        data_dir=str(tmp_path / "abs"),
    )
    props = load(path, env={})
    assert props["api.timeout"] == 5.0
    assert isinstance(props["api.timeout"], float)
    assert props["plugins.enabled"] == ["zone", "tag"]
    assert props["plugins.disabled"] == ["vm"]
    # a table-typed property keeps its table instead of being flattened into keys
    assert props["chains"] == {"my-chain": ["a.B", "c.D"]}
    assert props.data_dir == tmp_path / "abs"
    assert isinstance(props.data_dir, Path)


def test_relative_paths_are_resolved_against_the_config_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "etc"
    monkeypatch.chdir(tmp_path)  # not the config's directory
    props = load(write_config(conf_dir, data_dir="lab/data"), env={})
    assert props.data_dir == conf_dir / "lab" / "data"
    assert props.data_dir.is_absolute()
    up = load(write_config(conf_dir, data_dir="../var"), env={})
    assert up.data_dir == tmp_path / "var"


def test_relative_path_from_the_environment_is_resolved_against_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_config(tmp_path / "etc")
    props = load(path, env={"ZSTACK_LITE_CORE_DATA_DIR": "from-env"})
    assert props.data_dir == tmp_path / "etc" / "from-env"


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[api]\ntimeout = 5\n")
    env = {
        "ZSTACK_LITE_CORE_DATA_DIR": str(tmp_path / "env-data"),
        "ZSTACK_LITE_API_TIMEOUT": "7.5",
        "ZSTACK_LITE_PLUGINS_ENABLED": "zone, tag,,kvm ",
        "ZSTACK_LITE_PLUGINS_DISABLED": "",
        "ZSTACK_LITE_CHAINS": 'x = ["a.B"]',
        "ZSTACK_LITE_CONFIG": "/ignored/because/it/names/the/file",
        "UNRELATED": "x",
    }
    props = load(path, env=env)
    assert props.data_dir == tmp_path / "env-data"
    assert props["api.timeout"] == 7.5
    assert props["plugins.enabled"] == ["zone", "tag", "kvm"]
    assert props["plugins.disabled"] == []
    assert props["chains"] == {"x": ["a.B"]}


def test_env_names_are_prefix_key_upper_dots_to_underscores() -> None:
    defs = properties.definitions()
    assert defs["core.data_dir"].env_name == "ZSTACK_LITE_CORE_DATA_DIR"
    assert defs["api.timeout"].env_name == "ZSTACK_LITE_API_TIMEOUT"
    assert defs["plugins.enabled"].env_name == "ZSTACK_LITE_PLUGINS_ENABLED"


def test_overrides_beat_env_and_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[api]\ntimeout = 5\n")
    props = load(path, env={"ZSTACK_LITE_API_TIMEOUT": "6"}, overrides={"api.timeout": 9})
    assert props["api.timeout"] == 9.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("0", False),
        ("False", False),
        ("no", False),
        ("off", False),
    ],
)
def test_bool_from_env(
    tmp_path: Path, scratch_definitions: None, text: str, expected: bool
) -> None:
    define("test.flag", bool, False)
    define("test.count", int, 1)
    path = write_config(tmp_path)
    props = load(path, env={"ZSTACK_LITE_TEST_FLAG": text, "ZSTACK_LITE_TEST_COUNT": "42"})
    assert props["test.flag"] is expected
    assert props["test.count"] == 42


def test_bad_bool_from_env_names_the_variable(tmp_path: Path, scratch_definitions: None) -> None:
    define("test.flag", bool, False)
    with pytest.raises(PropertyError, match=r"ZSTACK_LITE_TEST_FLAG.*maybe.*boolean"):
        load(write_config(tmp_path), env={"ZSTACK_LITE_TEST_FLAG": "maybe"})


def test_bool_in_file_must_be_a_toml_boolean(tmp_path: Path, scratch_definitions: None) -> None:
    define("test.flag", bool, False)
    assert load(write_config(tmp_path, "[test]\nflag = true\n"), env={})["test.flag"] is True
    with pytest.raises(PropertyError, match=r"test\.flag must be true or false"):
        load(write_config(tmp_path, '[test]\nflag = "true"\n'), env={})


def test_required_property_missing(tmp_path: Path, scratch_definitions: None) -> None:
    define("test.needed", str)
    with pytest.raises(PropertyError, match=r"required global property test\.needed is missing"):
        load(write_config(tmp_path), env={})
    props = load(write_config(tmp_path, '[test]\nneeded = "here"\n'), env={})
    assert props["test.needed"] == "here"


def test_env_name_clash_is_refused(scratch_definitions: None) -> None:
    define("test.a_b", str, "")
    with pytest.raises(PropertyError, match="share env name ZSTACK_LITE_TEST_A_B"):
        define("test_a.b", str, "")


def test_unknown_key_in_file_is_named(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[api]\ntimeout = 5\ntimeout_typo = 3\n")
    with pytest.raises(PropertyError, match=r"unknown global property api\.timeout_typo"):
        load(path, env={})
    top = tmp_path / "top.toml"
    top.write_text('stray = "x"\n')
    with pytest.raises(PropertyError, match="unknown global property stray"):
        load(top, env={})


def test_unknown_env_var_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PropertyError, match="ZSTACK_LITE_CORE_DATADIR"):
        load(write_config(tmp_path), env={"ZSTACK_LITE_CORE_DATADIR": "/x"})


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('[api]\ntimeout = "soon"\n', "api.timeout"),
        ("[api]\ntimeout = true\n", "api.timeout"),
        ('[plugins]\nenabled = "zone"\n', "plugins.enabled"),
        ("[plugins]\nenabled = [1, 2]\n", "plugins.enabled"),
        ("[core]\nlog_level = 3\n", "core.log_level"),
        ('chains = "x"\n', "chains"),
    ],
)
def test_wrong_type_names_the_key(tmp_path: Path, body: str, key: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(body)
    with pytest.raises(PropertyError, match=f"global property {key} must be"):
        load(path, env={})


def test_wrong_type_from_env_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(PropertyError, match=r"global property api\.timeout must be a number"):
        load(write_config(tmp_path), env={"ZSTACK_LITE_API_TIMEOUT": "soon"})


def test_empty_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PropertyError, match=r"core\.data_dir must be a path"):
        load(write_config(tmp_path, data_dir=""), env={})


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(PropertyError, match=f"config file {missing} does not exist"):
        load(missing, env={})


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[core\ndata_dir = \n")
    with pytest.raises(PropertyError, match="is not valid TOML"):
        load(path, env={})


def test_unknown_property_read_is_an_error(tmp_path: Path) -> None:
    props = load(write_config(tmp_path), env={})
    with pytest.raises(PropertyError, match="no global property nope"):
        props["nope"]
    assert props.get("nope", 3) == 3


def test_config_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = tmp_path / "explicit.toml"
    from_env = tmp_path / "env.toml"
    monkeypatch.delenv("ZSTACK_LITE_CONFIG", raising=False)
    assert config_path() == properties.REPO_ROOT / "config.toml"
    assert config_path(explicit) == explicit
    monkeypatch.setenv("ZSTACK_LITE_CONFIG", str(from_env))
    assert config_path() == from_env
    assert config_path(explicit) == explicit  # --config beats the environment
    monkeypatch.setenv("ZSTACK_LITE_CONFIG", "")
    assert config_path() == properties.REPO_ROOT / "config.toml"


def test_load_reads_the_file_named_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = write_config(tmp_path / "a", data_dir="data-a")
    b = write_config(tmp_path / "b", data_dir="data-b")
    monkeypatch.setenv("ZSTACK_LITE_CONFIG", str(a))
    assert load(env={}).data_dir == tmp_path / "a" / "data-a"
    assert load(b, env={}).data_dir == tmp_path / "b" / "data-b"


def test_repository_config_is_valid() -> None:
    props = load(properties.DEFAULT_CONFIG, env={})
    assert props["plugins.enabled"] == ["*"]

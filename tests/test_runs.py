import json
from dataclasses import dataclass, field

import pytest

from vlm2vla.config import ConfigError
from vlm2vla.runs import Run


@dataclass(frozen=True)
class Cfg:
    run_dir: str = "x"
    lr: float = 0.1


def test_manifest_records_config_versions_and_metrics(tmp_path):
    run = Run.open(tmp_path / "r", "collect", Cfg())
    run.finish(metrics={"success_rate": 0.5}, outputs={"dataset": tmp_path / "r" / "dataset"})
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["stage"] == "collect" and manifest["status"] == "complete"
    assert manifest["config"] == {"run_dir": "x", "lr": 0.1}
    assert manifest["metrics"] == {"success_rate": 0.5}
    assert "torch" in manifest["versions"] and "python" in manifest["versions"]
    assert (tmp_path / "r" / "config.yaml").is_file()


def test_resume_requires_same_config(tmp_path):
    Run.open(tmp_path / "r", "eval", Cfg())
    again = Run.open(tmp_path / "r", "eval", Cfg())
    assert again.manifest["resumed"] == 1
    with pytest.raises(ConfigError, match="lr: 0.1 -> 0.2"):
        Run.open(tmp_path / "r", "eval", Cfg(lr=0.2))
    with pytest.raises(ConfigError, match="holds a 'eval' run"):
        Run.open(tmp_path / "r", "collect", Cfg())
    fresh = Run.open(tmp_path / "r", "eval", Cfg(lr=0.2), overwrite=True)
    assert "resumed" not in fresh.manifest


@dataclass(frozen=True)
class Inner:
    scale: float = 1.0


@dataclass(frozen=True)
class CfgWithNewFields:
    run_dir: str = "x"
    lr: float = 0.1
    gate_lr_scale: float = 1.0
    inner: Inner = field(default_factory=Inner)


def test_a_field_added_after_the_run_started_resumes_at_its_default_only(tmp_path):
    Run.open(tmp_path / "r", "eval", Cfg())  # saved before the code grew two fields
    again = Run.open(tmp_path / "r", "eval", CfgWithNewFields())
    assert again.manifest["resumed"] == 1
    with pytest.raises(ConfigError, match="gate_lr_scale: None -> 30.0"):
        Run.open(tmp_path / "r", "eval", CfgWithNewFields(gate_lr_scale=30.0))
    with pytest.raises(ConfigError, match=r"inner: None -> \{'scale': 2.0\}"):
        Run.open(tmp_path / "r", "eval", CfgWithNewFields(inner=Inner(scale=2.0)))
    # a field the code dropped is still a difference: nothing says the old value was harmless
    Run.open(tmp_path / "s", "eval", CfgWithNewFields())
    with pytest.raises(ConfigError, match="gate_lr_scale: 1.0 -> None"):
        Run.open(tmp_path / "s", "eval", Cfg())


def test_failure_is_recorded(tmp_path):
    run = Run.open(tmp_path / "r", "eval", Cfg())
    run.fail(KeyboardInterrupt())
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["status"] == "interrupted"


def test_only_the_main_process_writes(tmp_path, monkeypatch):
    Run.open(tmp_path / "r", "eval", Cfg()).finish(metrics={"a": 1})
    before = (tmp_path / "r" / "manifest.json").read_text()
    monkeypatch.setenv("RANK", "1")
    # another rank neither deletes (overwrite), nor checks the config, nor writes
    run = Run.open(tmp_path / "r", "eval", Cfg(lr=0.5), overwrite=True)
    run.update(metrics={"b": 2})
    run.fail(RuntimeError("x"))
    assert (tmp_path / "r" / "manifest.json").read_text() == before


def test_a_run_that_failed_before_writing_output_reruns_with_a_new_config(tmp_path):
    run = Run.open(tmp_path / "r", "eval", Cfg())
    (tmp_path / "r" / "videos").mkdir()
    (tmp_path / "r" / "episodes.jsonl").touch()  # opened, nothing written
    run.fail(ValueError("bad input"))
    fresh = Run.open(tmp_path / "r", "eval", Cfg(lr=0.2))
    assert fresh.manifest["config"]["lr"] == 0.2 and "resumed" not in fresh.manifest
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["status"] == "running"
    # once it has written output, a changed config is refused again: resuming would mix two experiments
    (tmp_path / "r" / "episodes.jsonl").write_text('{"episode": 0}\n')
    fresh.fail(RuntimeError("crash"))
    with pytest.raises(ConfigError, match="lr: 0.2 -> 0.3"):
        Run.open(tmp_path / "r", "eval", Cfg(lr=0.3))


def test_a_running_or_complete_run_is_not_restarted(tmp_path):
    Run.open(tmp_path / "r", "eval", Cfg())  # status "running": maybe another process is on it
    with pytest.raises(ConfigError, match="different config"):
        Run.open(tmp_path / "r", "eval", Cfg(lr=0.2))


def test_cli_rerun_after_an_input_error_needs_no_overwrite(tmp_path, caplog):
    from vlm2vla.cli import main

    args = ["eval", f"run_dir={tmp_path / 'ev'}", "tasks=[reach]", "episodes_per_task=1", "sim.image_size=32",
            "sim.max_episode_steps=5", "video_episodes=0", "progress=false", "num_envs=1"]
    assert main([*args, "policy.type=vla"]) == 2  # no policy.path: refused before the first episode
    assert "policy.type=vla needs policy.path" in caplog.text
    assert main([*args, "policy.type=random"]) == 0
    assert json.loads((tmp_path / "ev" / "results.json").read_text())["policy"]["type"] == "random"

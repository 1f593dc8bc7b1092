"""End-to-end trainer runs on a tiny Idefics3: learning, exact resume, LoRA, freezing, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from training_helpers import load_weights, run_training, train_config

from vlm2vla.runs import Run
from vlm2vla.training import driver, next_token
from vlm2vla.training.driver import StepStats, Trainer
from vlm2vla.training.metrics import read_metrics


@pytest.fixture(scope="module")
def reference(tmp_path_factory, model_dir, data_dir):
    """An uninterrupted 8-step run (checkpoints at 4 and 8) that resumed runs must reproduce."""
    cfg = train_config(tmp_path_factory.mktemp("ref") / "run", model_dir, data_dir / "pool")
    run_training(cfg)
    return cfg


def _losses(run_dir) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir / "metrics.jsonl")]


def _assert_same_run(run_dir, reference_dir) -> None:
    ours_losses, ref_losses = _losses(run_dir), _losses(reference_dir)
    assert [s for s, _ in ours_losses] == [s for s, _ in ref_losses]
    assert [v for _, v in ours_losses] == pytest.approx([v for _, v in ref_losses], rel=1e-6)
    ours, ref = load_weights(run_dir / "model"), load_weights(reference_dir / "model")
    assert ours.keys() == ref.keys()
    for key in ref:
        torch.testing.assert_close(ours[key], ref[key], rtol=0, atol=1e-6, msg=key)


def test_loss_falls_and_outputs_are_written(tmp_path, model_dir, data_dir):
    cfg = train_config(tmp_path / "run", model_dir, data_dir / "pool", max_steps=30, batch_size=8, log_interval=5,
                       save_interval=0)
    metrics = run_training(cfg)
    losses = [loss for _, loss in _losses(tmp_path / "run")]
    assert losses[-1] < 0.6 * losses[0]
    evals = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert evals["before"]["step"] == 0 and evals["after"]["step"] == 30
    assert evals["after"]["loss"] < evals["before"]["loss"]
    assert set(evals["after"]["per_source"]) == {"colour", "size"}
    assert metrics["heldout"]["loss_after"] == evals["after"]["loss"]
    record = read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]
    assert {"step", "loss", "lr", "samples_per_s", "data_wait_frac"} <= set(record)
    assert (tmp_path / "run" / "model" / "config.json").is_file()
    from vlm2vla.backbones import VLMBackbone

    VLMBackbone.from_pretrained(str(tmp_path / "run" / "model"))  # later stages load it like this
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "complete"


def test_stop_then_resume_matches_uninterrupted_run(tmp_path, reference, model_dir, data_dir):
    cfg = train_config(tmp_path / "run", model_dir, data_dir / "pool")
    assert run_training(cfg, stop_after=4) == {"step": 4, "stopped_early": True}
    assert not (tmp_path / "run" / "model").exists()
    run_training(cfg)
    _assert_same_run(tmp_path / "run", Path(reference.run_dir))


def test_resume_with_data_loader_workers_matches_uninterrupted_run(tmp_path, reference, model_dir, data_dir):
    # The default (num_workers=2): worker processes load and collate, the sampler alone decides the order, so
    # a run split in two with workers reproduces the reference run without them.
    cfg = train_config(tmp_path / "run", model_dir, data_dir / "pool", num_workers=2)
    assert run_training(cfg, stop_after=4) == {"step": 4, "stopped_early": True}
    run_training(cfg)
    _assert_same_run(tmp_path / "run", Path(reference.run_dir))


def test_exception_mid_run_resumes_from_last_checkpoint(tmp_path, reference, model_dir, data_dir, monkeypatch):
    cfg = train_config(tmp_path / "run", model_dir, data_dir / "pool")
    real_step = Trainer.train_step

    def failing_step(self: Trainer, stats: StepStats) -> None:
        if self.step == 6:
            raise KeyboardInterrupt  # as if the job were killed after step 6 (checkpoint at 4)
        real_step(self, stats)

    monkeypatch.setattr(Trainer, "train_step", failing_step)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg)
    assert max(s for s, _ in _losses(tmp_path / "run")) == 6  # logged past the checkpoint
    monkeypatch.setattr(Trainer, "train_step", real_step)
    run_training(cfg)
    _assert_same_run(tmp_path / "run", Path(reference.run_dir))


def test_crash_while_saving_keeps_previous_checkpoint_and_resumes(tmp_path, reference, model_dir, data_dir,
                                                                  monkeypatch):
    cfg = train_config(tmp_path / "run", model_dir, data_dir / "pool")
    real_save = next_token.NextTokenTask.save_model

    def crash_at_step_8(task, path):
        if "step-00000008" in str(path):
            raise OSError("killed mid-save")
        real_save(task, path)

    monkeypatch.setattr(next_token.NextTokenTask, "save_model", crash_at_step_8)
    with pytest.raises(OSError):
        run_training(cfg)
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == [".tmp-step-00000008", "step-00000004"]
    monkeypatch.setattr(next_token.NextTokenTask, "save_model", real_save)
    run_training(cfg)
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-00000004", "step-00000008"]
    _assert_same_run(tmp_path / "run", Path(reference.run_dir))


def test_gradient_accumulation_matches_a_larger_batch(tmp_path, reference, model_dir, data_dir):
    cfg = train_config(tmp_path / "run", model_dir, data_dir / "pool", batch_size=2, grad_accum=2)
    run_training(cfg)
    ours, ref = load_weights(tmp_path / "run" / "model"), load_weights(Path(reference.run_dir) / "model")
    for key in ref:
        torch.testing.assert_close(ours[key], ref[key], rtol=1e-4, atol=1e-5, msg=key)


def _changed_after_steps(cfg, steps: int = 2) -> tuple[set[str], set[str]]:
    """(names of parameters that changed, names of trainable parameters) after a few steps."""
    run = Run.open(cfg.run_dir, "pretrain", cfg)
    session = driver.build(next_token.NextTokenTask(cfg, run), cfg, run)
    backbone = session.task.backbone
    before = {n: p.detach().clone() for n, p in backbone.named_parameters()}
    for _ in range(steps):
        session.trainer.train_step(StepStats())
    changed = {n for n, p in backbone.named_parameters() if not torch.equal(p, before[n])}
    return changed, {n for n, p in backbone.named_parameters() if p.requires_grad}


def test_lora_trains_only_adapter_weights(tmp_path, model_dir, data_dir):
    cfg = train_config(tmp_path / "run", model_dir, data_dir / "pool", **{"lora.enabled": True, "lora.r": 4})
    changed, trainable = _changed_after_steps(cfg)
    assert changed and changed == trainable
    assert all("lora_" in n for n in changed)
    assert all(".text_model." in n for n in changed)  # language model only, by default
    assert {n.split(".")[-4] for n in changed} <= {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                   "up_proj", "down_proj"}


def test_lora_run_saves_adapter_and_a_merged_loadable_model(tmp_path, model_dir, data_dir):
    cfg = train_config(tmp_path / "run", model_dir, data_dir / "pool", max_steps=2, save_interval=0,
                       **{"lora.enabled": True, "lora.r": 4, "eval.at_start": False})
    run_training(cfg)
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
    merged = load_weights(tmp_path / "run" / "model")
    assert not any("lora_" in k for k in merged)
    from peft import PeftModel
    from PIL import Image

    from vlm2vla.backbones import ChatExample, VLMBackbone

    # The merged model computes what the base model plus the saved adapter computes, and not what the base does.
    merged_vlm = VLMBackbone.from_pretrained(str(tmp_path / "run" / "model"))
    base = VLMBackbone.from_pretrained(str(model_dir))
    base_logits_fn = base.model
    examples = [ChatExample(images=[Image.new("RGB", (32, 32), (220, 30, 30))],
                            messages=[{"role": "user", "content": "<image>What colour is the square?"},
                                      {"role": "assistant", "content": "red"}])]
    batch = base.collate(examples)
    with torch.no_grad():
        base_logits = base(batch).logits
        base.model = PeftModel.from_pretrained(base_logits_fn, str(tmp_path / "run" / "adapter")).eval()
        adapted = base(batch).logits
        ours = merged_vlm(batch).logits
    torch.testing.assert_close(ours, adapted, rtol=1e-4, atol=1e-4)
    assert (ours - base_logits).abs().max() > 1e-3


def test_frozen_groups_do_not_change(tmp_path, model_dir, data_dir):
    cfg = train_config(tmp_path / "run", model_dir, data_dir / "pool", freeze=["vision", "connector"])
    changed, trainable = _changed_after_steps(cfg)
    assert not any(n.startswith(("model.model.vision_model", "model.model.connector")) for n in trainable)
    assert changed == trainable and any(".text_model." in n for n in changed)


def test_unloadable_model_id_fails_with_a_plain_message(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = train_config(tmp_path / "run", "no-such-owner/no-such-vlm", data_dir / "pool")
    with pytest.raises(ValueError, match="no-such-owner/no-such-vlm.*not cached locally"):
        run_training(cfg)


def test_missing_or_empty_data_names_the_path(tmp_path, model_dir):
    missing = tmp_path / "nowhere" / "pool.parquet"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        run_training(train_config(tmp_path / "a", model_dir, missing))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match=str(empty)):
        run_training(train_config(tmp_path / "b", model_dir, empty))
    with pytest.raises(FileNotFoundError, match="No pool.parquet in"):
        run_training(train_config(tmp_path / "c", model_dir, tmp_path))


def test_tiny_default_is_built_from_the_data_and_robot_instructions(tmp_path, data_dir):
    cfg = train_config(tmp_path / "run", "tiny", data_dir / "pool", max_steps=1, save_interval=0, tiny_image_size=32,
                       **{"eval.at_start": False})
    run_training(cfg)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run" / "tiny_init")
    vocab = tokenizer.get_vocab()
    assert any("colour" in t for t in vocab) and any("drawer" in t for t in vocab)  # pool text, Meta-World
    assert (tmp_path / "run" / "model" / "config.json").is_file()


def test_cli_reports_bad_input_plainly(tmp_path, model_dir, caplog):
    from vlm2vla.cli import main

    missing = tmp_path / "no_pool"
    code = main(["pretrain", f"run_dir={tmp_path / 'run'}", f"model={model_dir}", f"data={missing}"])
    assert code == 2
    assert str(missing) in caplog.text and "Traceback" not in caplog.text


def test_rerunning_a_finished_run_changes_nothing(reference):
    run_dir = Path(reference.run_dir)
    before = {p: p.read_bytes() for p in (run_dir / "metrics.jsonl", run_dir / "eval.json",
                                          run_dir / "model" / "model.safetensors")}
    run_training(reference)
    assert all(p.read_bytes() == data for p, data in before.items())


def test_metrics_log_survives_a_torn_last_line(tmp_path):
    from vlm2vla.training.metrics import MetricsWriter

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 10, "loss": 2.0}\n{"step": 20, "loss": 1.5}\n{"step": 30, "lo')  # killed mid-append
    assert [r["step"] for r in read_metrics(path)] == [10, 20]
    MetricsWriter(path).truncate_after(20)
    assert [r["step"] for r in read_metrics(path)] == [10, 20]
    assert path.read_text().endswith("\n")

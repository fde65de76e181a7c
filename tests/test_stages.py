"""Training stages of the encoder-decoder generator: losses fall, runs resume exactly."""

import json
from pathlib import Path

import pytest
import torch

from metastyle import checkpoint
from metastyle.config import load_config
from metastyle.errors import UserError
from metastyle.images import load_tensor
from metastyle.stages import (CHECKPOINT, StageConfig, StageRun, StyleTargets, stage_losses,
                              train_stage)


def _config(corpus, stage, steps, *extra):
    return load_config(None, [f'stage="{stage}"', f'data.manifest="{corpus / "manifest.tsv"}"',
                              "data.crop=16", "data.style_size=32", "generator.width=8",
                              'loss.encoder="random"', "batch=2", f"train.steps={steps}",
                              "train.log_every=1", "train.checkpoint_every=1",
                              "train.sample_every=3", *extra], root=StageConfig)


def _student(teacher):
    """The overrides that make a tiny config a distill run of ``teacher``."""
    return [f'teacher="{teacher}"', "generator.student_width=0.25"]


def _weights(run_dir):
    tensors, meta = checkpoint.read(run_dir / CHECKPOINT)
    return {k: v for k, v in tensors.items() if k.startswith("model/")}, meta


@pytest.mark.parametrize("stage", ["autoencoder", "joint", "distill"])
def test_a_resumed_stage_ends_exactly_where_a_straight_one_does(tiny_corpus, tmp_path, stage,
                                                                request):
    extra = _student(request.getfixturevalue("stylenet_base")) if stage == "distill" else []
    train_stage(_config(tiny_corpus, stage, 4, *extra), tmp_path / "straight", progress=False)
    train_stage(_config(tiny_corpus, stage, 2, *extra), tmp_path / "resumed", progress=False)
    train_stage(_config(tiny_corpus, stage, 4, *extra), tmp_path / "resumed", resume=True,
                progress=False)
    straight, meta = _weights(tmp_path / "straight")
    resumed, _ = _weights(tmp_path / "resumed")
    assert meta["step"] == 4 and meta["stage"] == stage
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    logs = [(tmp_path / d / "metrics.jsonl").read_text().splitlines()
            for d in ("straight", "resumed")]
    totals = [[json.loads(line)["total"] for line in log] for log in logs]
    assert totals[0] == totals[1] and len(totals[0]) == 4
    assert (tmp_path / "straight" / "samples" / "step000003.jpg").is_file()


def test_a_run_resumed_with_rate_zero_stops_moving(tiny_corpus, tmp_path):
    """The config's rate is in force after a resume: a run resumed at lr 0 keeps its weights
    (the checkpoint's own rate would have moved them)."""
    train_stage(_config(tiny_corpus, "autoencoder", 2, "lr=0.003"), tmp_path / "run",
                progress=False)
    before, _ = _weights(tmp_path / "run")
    train_stage(_config(tiny_corpus, "autoencoder", 4, "lr=0"), tmp_path / "run", resume=True,
                progress=False)
    after, meta = _weights(tmp_path / "run")
    assert meta["step"] == 4 and all(torch.equal(before[k], after[k]) for k in before)


def test_a_joint_run_grows_a_skip_and_starts_where_its_init_stylizes(stylenet_base,
                                                                    tiny_corpus, tmp_path):
    """A relu2_1 skip grown onto a file with the relu3_1 skip only: at lr 0 the grown model
    paints exactly what its init paints, and training moves the new skip's weights."""
    init, _ = checkpoint.load_generator(stylenet_base)
    grow = [f'init="{stylenet_base}"', "init_grows=true", 'generator.skips=["relu3_1", "relu2_1"]']
    train_stage(_config(tiny_corpus, "joint", 1, *grow, "lr=0"), tmp_path / "still",
                progress=False)
    grown, _ = checkpoint.load_generator(tmp_path / "still" / CHECKPOINT)
    style, photo = (load_tensor(next((tiny_corpus / kind).glob("*.png")))[..., :32, :32]
                    for kind in ("style", "content"))
    init.set_style(style)
    grown.set_style(style)
    with torch.no_grad():
        torch.testing.assert_close(grown(photo), init(photo), atol=1e-5, rtol=0)
    train_stage(_config(tiny_corpus, "joint", 2, *grow, "lr=0.01"), tmp_path / "moving",
                progress=False)
    weights, meta = _weights(tmp_path / "moving")
    assert meta["generator"]["skips"] == ["relu3_1", "relu2_1"]
    new_channels = weights["model/decoder.levels.1.0.conv.weight"][:, -128:]
    assert new_channels.abs().sum() > 0
    with pytest.raises(UserError, match="does not grow into"):
        train_stage(_config(tiny_corpus, "joint", 1, f'init="{stylenet_base}"', "init_grows=true",
                            "generator.width=16", 'generator.skips=["relu3_1", "relu2_1"]'),
                    tmp_path / "wider", progress=False)


def test_the_autoencoder_learns_to_reconstruct(tiny_corpus, tmp_path):
    config = _config(tiny_corpus, "autoencoder", 30, "lr=0.003")
    model = StageRun(config).model  # the seeded init the run starts from
    photos = torch.cat([load_tensor(p)[..., :32, :32] for p in sorted(
        (tiny_corpus / "content").glob("*.png"))])

    def error():
        with torch.no_grad():
            return stage_losses(model, config, photos, None)["total"].item()

    before = error()
    train_stage(config, tmp_path / "run", progress=False)
    model.load_state_dict(checkpoint.read_training(tmp_path / "run" / CHECKPOINT).model)
    assert error() < 0.85 * before


def test_the_joint_stage_starts_from_the_autoencoder(tiny_corpus, tmp_path):
    train_stage(_config(tiny_corpus, "autoencoder", 2), tmp_path / "ae", progress=False)
    ae, _ = _weights(tmp_path / "ae")
    config = _config(tiny_corpus, "joint", 1, f'init="{tmp_path / "ae" / CHECKPOINT}"', "lr=0")
    train_stage(config, tmp_path / "joint", progress=False)
    joint, _ = _weights(tmp_path / "joint")
    assert all(torch.equal(ae[k], joint[k]) for k in ae)  # lr 0: the init itself, one step on


def test_a_mismatched_init_and_a_second_start_are_one_line_errors(tiny_corpus, tmp_path):
    train_stage(_config(tiny_corpus, "autoencoder", 1), tmp_path / "ae", progress=False)
    wide = _config(tiny_corpus, "joint", 1, f'init="{tmp_path / "ae" / CHECKPOINT}"',
                   "generator.width=16")
    with pytest.raises(UserError, match="does not match"):
        train_stage(wide, tmp_path / "joint", progress=False)
    with pytest.raises(UserError, match="already has a checkpoint"):
        train_stage(_config(tiny_corpus, "autoencoder", 1), tmp_path / "ae", progress=False)
    with pytest.raises(UserError, match="stage"):
        train_stage(_config(tiny_corpus, "bogus", 1), tmp_path / "bogus", progress=False)


def test_a_stage_can_start_from_an_exported_model_file(tiny_corpus, tmp_path):
    from metastyle.stages import export_stage

    train_stage(_config(tiny_corpus, "autoencoder", 2), tmp_path / "ae", progress=False)
    export_stage(tmp_path / "ae", tmp_path / "ae.safetensors")
    exported, meta = checkpoint.read(tmp_path / "ae.safetensors")
    assert all(v.dtype == torch.float16 for v in exported.values())
    config = _config(tiny_corpus, "joint", 1, f'init="{tmp_path / "ae.safetensors"}"', "lr=0")
    train_stage(config, tmp_path / "joint", progress=False)
    joint, _ = _weights(tmp_path / "joint")
    assert all(torch.equal(exported[k].float(), joint[f"model/{k}"]) for k in exported)



def test_the_structure_term_compares_the_outputs_layout_with_the_photos(tiny_corpus):
    plain = _config(tiny_corpus, "joint", 1, "loss.structure_weight=0")
    weighted = _config(tiny_corpus, "joint", 1, "loss.structure_weight=2.0")
    model = StageRun(weighted).model
    photos = torch.cat([load_tensor(p)[..., :16, :16] for p in sorted(
        (tiny_corpus / "content").glob("*.png"))[:2]])
    targets = StyleTargets(model.encoder, plain.loss.layers, 32)
    styles = [targets(p) for p in sorted((tiny_corpus / "style").glob("*.png"))[:2]]
    with torch.no_grad():
        without = stage_losses(model, plain, photos, styles)
        with_it = stage_losses(model, weighted, photos, styles)
        assert "structure" not in without and with_it["structure"] > 0.05
        assert torch.isclose(with_it["total"] - without["total"], 2.0 * with_it["structure"])
        # a decoder that gives back the photo has its layout; the mirrored photo has not
        model.decode = lambda features: photos
        assert stage_losses(model, weighted, photos, styles)["structure"] < 1e-6
        model.decode = lambda features: photos.flip(-1)
        assert stage_losses(model, weighted, photos, styles)["structure"] > 0.05


def test_distill_steps_bring_the_student_to_the_teachers_outputs(tiny_corpus, stylenet_base):
    config = _config(tiny_corpus, "distill", 1, *_student(stylenet_base), "lr=0.003")
    run = StageRun(config)
    teacher = {k: v.clone() for k, v in run.teacher.model.state_dict().items()}
    photos = torch.cat([load_tensor(p)[..., :16, :16] for p in sorted(
        (tiny_corpus / "content").glob("*.png"))[:2]])
    styles = sorted((tiny_corpus / "style").glob("*.png"))[:2]

    def step():
        terms = run.teacher.losses(run.model, config.loss, photos, styles, 0.8)
        run.optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        run.optimizer.step()
        return {k: v.item() for k, v in terms.items()}

    first = step()
    assert {"pixel", "feature", "lift", "feature/relu1_1", "lift/relu4_1"} <= set(first)
    for _ in range(40):
        last = step()
    assert all(last[k] < 0.8 * first[k] for k in ("total", "pixel", "feature", "lift"))
    # the teacher is frozen: only the student learns
    taught = {id(p) for group in run.optimizer.param_groups for p in group["params"]}
    assert all(not p.requires_grad and p.grad is None and id(p) not in taught
               for p in run.teacher.model.parameters())
    assert all(torch.equal(v, teacher[k]) for k, v in run.teacher.model.state_dict().items())


def test_the_distill_recipe_and_its_one_line_errors(tiny_corpus, stylenet_base, base_model,
                                                    tmp_path):
    recipe = load_config(Path(__file__).parents[1] / "experiments/stylenet/distill.toml",
                         root=StageConfig)
    assert recipe.stage == "distill" and recipe.generator.student_width == 0.25
    assert recipe.generator.width == 64 and Path(recipe.teacher).name == "stylenet.safetensors"
    with pytest.raises(UserError, match="only the distill stage trains a student"):
        StageRun(_config(tiny_corpus, "joint", 1, *_student(stylenet_base)))
    with pytest.raises(UserError, match="student_width"):
        _config(tiny_corpus, "distill", 1, "generator.student_width=2")
    with pytest.raises(UserError, match="teacher must be an encoder-decoder"):
        StageRun(_config(tiny_corpus, "distill", 1, *_student(base_model)))
    # the student transforms the teacher's layers, its codes come from the teacher's style size
    with pytest.raises(UserError, match="distill with the teacher's depth and skips"):
        StageRun(_config(tiny_corpus, "distill", 1, *_student(stylenet_base),
                         "generator.skips=[]"))
    with pytest.raises(UserError, match="reads style images at 32 px"):
        StageRun(_config(tiny_corpus, "distill", 1, *_student(stylenet_base),
                         "data.style_size=48"))
    train_stage(_config(tiny_corpus, "distill", 1, *_student(stylenet_base)), tmp_path / "run",
                progress=False)
    tensors, meta = checkpoint.read(stylenet_base)
    checkpoint.write(stylenet_base, {k: v + 1 for k, v in tensors.items()}, meta)
    with pytest.raises(UserError, match="not the teacher this run started with"):
        train_stage(_config(tiny_corpus, "distill", 2, *_student(stylenet_base)),
                    tmp_path / "run", resume=True, progress=False)

